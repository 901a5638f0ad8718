"""Spatial statistics on masked maps: cluster size/mass and TFCE.

Arrays only. ``values`` is a (n_voxels,) map of the voxels inside a 3D boolean
``mask`` (``volume = zeros(mask.shape); volume[mask] = values``). Neighbourhoods
follow :func:`scipy.ndimage.generate_binary_structure` (``connectivity`` 1, 2
or 3 for 6, 18 or 26 neighbours; 1 is nilearn's choice).

Conventions follow ``nilearn.mass_univariate`` so that the numbers agree (the
tests assert it):

* clusters are sets of connected voxels with ``value > threshold`` (strict);
  for a two-sided test positive and negative clusters are formed separately
  from ``|value| > threshold``; mass = sum(|value| - threshold);
* TFCE uses the thresholds of nilearn's ``_return_score_threshs`` and, as
  fslmaths and nilearn, does not multiply by ``dh``; for a two-sided test the
  negative side is enhanced separately and returned negative.

TFCE algorithm (exact, not an approximation)
--------------------------------------------
nilearn labels the whole volume once per threshold (100 thresholds x 2 signs).
Here each voxel is first linked to its steepest-ascent neighbour; following the
links partitions the map into *basins*, one per local maximum. Every voxel of a
basin with value >= h is joined to the basin's peak by voxels >= h, so the
clusters at threshold h are unions of basins, joined where a voxel pair across
two basins has both values >= h. The graph of basins (a few thousand nodes) is
replicated once per threshold and labelled by a single
``connected_components`` call; the TFCE of a voxel is then a running sum over
the thresholds of its basin. Because TFCE grows towards a basin's peak, the
maximum of the map is the maximum over peaks (used by :func:`max_tfce`).
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse, stats
from scipy.sparse.csgraph import connected_components

#: Accepted values of ``tail``.
TAILS = ("two-sided", "positive", "negative")


@dataclass(frozen=True)
class VoxelGraph:
    """Neighbourhood of the voxels of a mask (built by :func:`voxel_graph`).

    Attributes
    ----------
    mask : ndarray of bool, 3D
    structure : ndarray of bool (3, 3, 3)
        Connectivity structure, as for :func:`scipy.ndimage.label`.
    forward : tuple of int
        Columns of ``neighbours`` whose offsets are lexicographically positive:
        they list every pair of neighbouring voxels once.
    neighbours : ndarray of int (n_voxels, n_neighbours)
        Masked index of every neighbour; ``n_voxels`` where there is none.
    """

    mask: np.ndarray
    structure: np.ndarray
    forward: tuple
    neighbours: np.ndarray

    @property
    def n_voxels(self):
        """Number of voxels in the mask."""
        return self.neighbours.shape[0]


def check_tail(tail):
    """Return ``tail`` if it is one of :data:`TAILS`, else raise ValueError."""
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")
    return tail


def tail_signs(tail):
    """Signs whose multiple of the map is enhanced: (+1,), (-1,) or (+1, -1)."""
    return {"positive": (1.0,), "negative": (-1.0,), "two-sided": (1.0, -1.0)}[
        check_tail(tail)
    ]


def voxel_graph(mask, connectivity=1):
    """Neighbour pairs and neighbour table of the voxels of ``mask``.

    Parameters
    ----------
    mask : array of bool, 3D
    connectivity : {1, 2, 3}
        Squared distance of the farthest neighbour (6, 18, 26 neighbours).

    Returns
    -------
    VoxelGraph
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D, got shape {mask.shape}")
    structure = ndimage.generate_binary_structure(3, connectivity)
    n_vox = int(mask.sum())
    index = np.full(mask.shape, n_vox, dtype=np.int64)
    index[mask] = np.arange(n_vox)
    padded = np.pad(index, 1, constant_values=n_vox)
    offsets = np.argwhere(structure) - 1
    offsets = offsets[np.any(offsets != 0, axis=1)]
    coords = np.argwhere(mask) + 1
    neighbours = np.empty((n_vox, len(offsets)), dtype=np.int64)
    for col, off in enumerate(offsets):
        c = coords + off
        neighbours[:, col] = padded[c[:, 0], c[:, 1], c[:, 2]]
    forward = tuple(
        col for col, off in enumerate(offsets) if tuple(off) > (0, 0, 0)
    )
    return VoxelGraph(mask, structure, forward, neighbours)


def to_volume(values, mask, fill=0.0):
    """Scatter masked ``values`` (n_voxels,) into a volume of ``mask.shape``."""
    volume = np.full(mask.shape, fill, dtype=np.asarray(values).dtype)
    volume[mask] = values
    return volume


def tfce_thresholds(max_value, dh="auto"):
    """Thresholds h_1 < ... < h_K of the TFCE sum, as nilearn.

    h_k = k * max_value / K ; K = 100 if dh == "auto" else round(max_value / dh),
    clamped to [10, 1000] (nilearn's ``_return_score_threshs``, without its
    warnings).

    Parameters
    ----------
    max_value : float
        Largest value of the map being enhanced (the largest |value| for a
        two-sided test).
    dh : "auto" or float
        Approximate step between thresholds.

    Returns
    -------
    ndarray (K,)
    """
    n_steps = 100 if dh == "auto" else round(max_value / float(dh))
    n_steps = int(min(max(n_steps, 10), 1000))
    return np.linspace(0, max_value, n_steps + 1)[1:]


def _levels(values, thresholds):
    """Number of thresholds reached by every value: searchsorted(h, x, "right").

    level = floor(x K / h_K), then corrected by one step against the thresholds
    (exactly equal to ``np.searchsorted(thresholds, values, side="right")``).
    """
    n_levels = thresholds.size
    approx = np.floor(values * (n_levels / thresholds[-1]))
    level = np.clip(approx, 0, n_levels).astype(np.int64)
    upper = np.append(thresholds, np.inf)
    lower = np.concatenate([[-np.inf], thresholds])
    level += values >= upper[level]
    level -= values < lower[level]
    return level


def _basins(values, neighbours):
    """Label every voxel with the local maximum its steepest ascent reaches.

    parent(v) = argmax of the neighbours of v if that value > value(v), else v

    Parameters
    ----------
    values : ndarray (n,)
    neighbours : ndarray of int (n, n_neighbours)
        Neighbour indices, ``n`` where there is none.

    Returns
    -------
    basin : ndarray of int (n,)
        Basin index 0..n_basins-1 of every voxel.
    peaks : ndarray of int (n_basins,)
        Index of the peak of every basin.
    """
    n = values.size
    padded = np.append(values, -np.inf)
    neighbour_values = padded[neighbours]
    best = np.argmax(neighbour_values, axis=1)
    rows = np.arange(n)
    higher = neighbour_values[rows, best] > values
    parent = np.where(higher, neighbours[rows, best], rows)
    while True:  # pointer jumping: O(log(longest ascent path)) passes
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand
    peaks = np.flatnonzero(parent == rows)
    lookup = np.empty(n, dtype=np.int64)
    lookup[peaks] = np.arange(peaks.size)
    return lookup[parent], peaks


def _tfce_one_side(values, level, graph, thresholds, E, H, voxel_map):
    """TFCE of the positive part of ``values`` at the given thresholds.

    tfce(v) = sum_k [value(v) >= h_k] * size(cluster of v at h_k)^E * h_k^H

    ``level`` is :func:`_levels` of ``values`` (0 for values <= 0).

    Returns
    -------
    peak_max : float
        Largest TFCE value in the map (0 if no voxel reaches h_1).
    tfce : ndarray (n_voxels,) or None
        Voxel-wise TFCE if ``voxel_map``.
    """
    n_levels = thresholds.size
    active = np.flatnonzero(level > 0)
    if active.size == 0:
        return 0.0, (np.zeros(graph.n_voxels) if voxel_map else None)
    # work on the active voxels only: an inactive neighbour is lower than any
    # active voxel, so it never lies on an ascent path
    n = active.size
    local = np.full(graph.n_voxels + 1, n, dtype=np.int64)
    local[active] = np.arange(n)
    neighbours = local[graph.neighbours[active]]
    values, level = values[active], level[active]
    basin, peaks = _basins(values, neighbours)
    n_basins = peaks.size
    peak_level = level[peaks]
    # voxels of each basin reaching each level (count of level >= k)
    counts = np.bincount(
        basin * (n_levels + 1) + level, minlength=n_basins * (n_levels + 1)
    ).reshape(n_basins, n_levels + 1)
    size_ge = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    # nodes (basin b, level k) for k = 1..peak_level[b], stored basin-major
    offset = np.concatenate([[0], np.cumsum(peak_level)])
    n_nodes = int(offset[-1])
    node_basin = np.repeat(np.arange(n_basins), peak_level)
    node_level = np.arange(n_nodes) - offset[node_basin]  # k - 1
    node_size = size_ge[node_basin, node_level + 1]
    # saddles between basins: highest level at which a neighbour pair across
    # the two basins is active
    forward = neighbours[:, graph.forward]
    b_nb = np.append(basin, -1)[forward]
    src, col = np.nonzero((b_nb != basin[:, None]) & (b_nb >= 0))
    dst = forward[src, col]
    saddle = np.minimum(level[src], level[dst])
    lo = np.minimum(basin[src], basin[dst])
    hi = np.maximum(basin[src], basin[dst])
    key = np.sort((lo * n_basins + hi) * (n_levels + 1) + saddle)
    pair = key // (n_levels + 1)
    last = np.ones(pair.size, dtype=bool)  # highest saddle of every pair
    last[:-1] = pair[1:] != pair[:-1]
    pair, saddle = pair[last], key[last] % (n_levels + 1)
    lo, hi = pair // n_basins, pair % n_basins
    # one edge per pair and level 1..saddle, between the nodes of that level
    start = np.repeat(np.cumsum(saddle) - saddle, saddle)
    k0 = np.arange(start.size) - start
    rows = np.repeat(offset[lo], saddle) + k0
    cols = np.repeat(offset[hi], saddle) + k0
    adjacency = sparse.coo_array(
        (np.ones(rows.size, dtype=np.int8), (rows, cols)),
        shape=(n_nodes, n_nodes),
    ).tocsr()
    _, labels = connected_components(adjacency, directed=False)
    cluster_size = np.bincount(labels, weights=node_size)
    contribution = cluster_size[labels] ** E * thresholds[node_level] ** H
    per_peak = np.add.reduceat(contribution, offset[:-1][peak_level > 0])
    peak_max = float(per_peak.max())
    if not voxel_map:
        return peak_max, None
    running = np.concatenate([[0.0], np.cumsum(contribution)])
    first = offset[basin]
    tfce = np.zeros(graph.n_voxels)
    tfce[active] = running[first + level] - running[first]
    return peak_max, tfce


def _tfce_sides(values, graph, tail, dh, E, H, voxel_map):
    values = np.asarray(values, dtype=float)
    signs = tail_signs(tail)
    max_value = max(float(np.max(s * values)) for s in signs)
    if not max_value > 0:
        return 0.0, (np.zeros(values.shape) if voxel_map else None)
    thresholds = tfce_thresholds(max_value, dh)
    abs_level = _levels(np.abs(values), thresholds)
    best, tfce = 0.0, (np.zeros(values.shape) if voxel_map else None)
    for sign in signs:
        level = np.where(sign * values > 0, abs_level, 0)
        peak_max, side = _tfce_one_side(
            sign * values, level, graph, thresholds, E, H, voxel_map
        )
        best = max(best, peak_max)
        if voxel_map:  # only a two-sided map carries the sign
            tfce += (sign if tail == "two-sided" else 1.0) * side
    return best, tfce


def tfce_map(values, graph, tail="two-sided", dh="auto", E=0.5, H=2.0):
    """Threshold-free cluster enhancement of a masked map.

    tfce(v) = sum_{h_k <= value(v)} size(cluster of v at h_k)^E * h_k^H

    Equal to nilearn's ``calculate_tfce`` (Smith & Nichols 2009, NeuroImage
    44:83-98, without the factor dh as in fslmaths), computed exactly but
    without labelling the volume once per threshold (see the module notes).

    Parameters
    ----------
    values : array (n_voxels,)
        Statistic map of the voxels of ``graph.mask``.
    graph : VoxelGraph
    tail : {"two-sided", "positive", "negative"}
        "two-sided" enhances positive and negative values separately (the
        negative part comes back negative), with thresholds up to max |value|;
        "negative" enhances -values and returns them positive.
    dh : "auto" or float
        Threshold step, see :func:`tfce_thresholds`.
    E, H : float
        Extent and height exponents.

    Returns
    -------
    ndarray (n_voxels,)
    """
    return _tfce_sides(values, graph, tail, dh, E, H, voxel_map=True)[1]


def max_tfce(values, graph, tail="two-sided", dh="auto", E=0.5, H=2.0):
    """Largest |TFCE| of the map, i.e. ``max(abs(tfce_map(...)))``, faster.

    Parameters and definitions as :func:`tfce_map`.

    Returns
    -------
    float
    """
    return _tfce_sides(values, graph, tail, dh, E, H, voxel_map=False)[0]


def _cluster_labels_one_side(values, graph, threshold):
    volume = to_volume(values > threshold, graph.mask, fill=False)
    labels, n_clusters = ndimage.label(volume, graph.structure)
    return labels[graph.mask], n_clusters


def cluster_maps(values, graph, threshold, tail="two-sided"):
    """Size and mass of the cluster of every voxel (0 outside clusters).

    cluster = connected voxels with s * value > threshold (s = +1 or -1) ;
    mass = sum over the cluster of (|value| - threshold)

    Parameters
    ----------
    values : array (n_voxels,)
    graph : VoxelGraph
    threshold : float
        Cluster-forming threshold on the statistic (>= 0).
    tail : {"two-sided", "positive", "negative"}

    Returns
    -------
    size, mass : ndarrays (n_voxels,)
    """
    values = np.asarray(values, dtype=float)
    size = np.zeros(values.shape, dtype=np.int64)
    mass = np.zeros(values.shape)
    for sign in tail_signs(tail):
        signed = sign * values
        labels, n_clusters = _cluster_labels_one_side(signed, graph, threshold)
        if n_clusters == 0:
            continue
        inside = labels > 0
        sizes = np.bincount(labels, minlength=n_clusters + 1)
        masses = np.bincount(
            labels[inside], weights=signed[inside] - threshold,
            minlength=n_clusters + 1,
        )
        size[inside] = sizes[labels[inside]]
        mass[inside] = masses[labels[inside]]
    return size, mass


def max_cluster_measures(values, graph, threshold, tail="two-sided"):
    """Largest cluster size and largest cluster mass of the map.

    Definitions as :func:`cluster_maps`; both are 0 when no voxel passes.

    Returns
    -------
    max_size : int
    max_mass : float
    """
    size, mass = cluster_maps(values, graph, threshold, tail)
    return (int(size.max()) if size.size else 0,
            float(mass.max()) if mass.size else 0.0)


def cluster_forming_threshold(p, dof, tail="two-sided"):
    """t threshold of an uncorrected cluster-forming p value, as nilearn.

    t = isf(p / 2, dof) for a two-sided test, isf(p, dof) otherwise
    """
    p = float(p) / (2.0 if check_tail(tail) == "two-sided" else 1.0)
    return float(stats.t.isf(p, dof))
