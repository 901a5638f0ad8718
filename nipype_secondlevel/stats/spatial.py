"""Spatial statistics on masked maps: cluster size/mass and TFCE.

Arrays only. ``values`` is a (n_elements,) map over the elements of a
:class:`NeighbourGraph`: the voxels inside a 3D boolean ``mask``
(:func:`voxel_graph`; ``volume = zeros(mask.shape); volume[mask] = values``),
or the vertices of a mesh and the voxels of CIFTI grayordinates given as an
edge list (:func:`graph_from_edges`). Voxel neighbourhoods follow
:func:`scipy.ndimage.generate_binary_structure` (``connectivity`` 1, 2 or 3
for 6, 18 or 26 neighbours; 1 is nilearn's choice); vertices are neighbours
when they share an edge of the mesh.

Conventions follow ``nilearn.mass_univariate`` so that the numbers agree (the
tests assert it):

* clusters are sets of connected elements with ``value > threshold`` (strict);
  for a two-sided test positive and negative clusters are formed separately
  from ``|value| > threshold``; mass = sum(|value| - threshold);
* TFCE uses the thresholds of nilearn's ``_return_score_threshs`` and, as
  fslmaths and nilearn, does not multiply by ``dh``; for a two-sided test the
  negative side is enhanced separately and returned negative. The extent of a
  cluster (its size, and the extent term of TFCE) is its number of elements, or,
  when the graph has ``weights``, the sum of its elements' weights: on a mesh the
  vertex areas in mm^2, as PALM's ``-s`` surface (``-s surface 1``: the count).
  Masses are not weighted (PALM's ``palm_clusterm`` neither).

Algorithm (exact, not an approximation)
---------------------------------------
nilearn labels the whole volume once per threshold (100 thresholds x 2 signs).
Here one union-find adds the elements in decreasing order of level, over the
basins of the map's local peaks, and accumulates every cluster's contributions
as it grows (:mod:`.spatial_kernels`); clusters at one threshold are one
union-find over the elements. The kernels read only the neighbour table, so
they run unchanged on any graph.
"""

from dataclasses import dataclass

import numpy as np

#: Accepted values of ``tail``.
TAILS = ("two-sided", "positive", "negative")
#: TFCE's extent and height exponents (Smith & Nichols 2009, as nilearn and FSL).
TFCE_E, TFCE_H = 0.5, 2.0
#: TFCE's exponents on a surface: PALM's ``-tfce2D`` (E = 1, H = 2; palm_takeargs.m),
#: the values of Smith & Nichols (2009) for 2D data, which FSL and PALM use on meshes.
TFCE_SURFACE_E, TFCE_SURFACE_H = 1.0, 2.0


@dataclass(frozen=True)
class NeighbourGraph:
    """Neighbourhood of the elements of a map (voxels, vertices, grayordinates).

    Attributes
    ----------
    neighbours : ndarray of int32 (n_elements, max_degree)
        Index of every neighbour of each element, padded with the sentinel
        ``n_elements`` ("no neighbour").
    forward : ndarray of int32 (n_elements, max_forward)
        Part of ``neighbours``, padded the same way, such that every pair of
        neighbouring elements is listed once.
    weights : ndarray of float (n_elements,) or None
        The extent of each element (a vertex's area in mm^2): a cluster's size is the
        sum of its elements' weights; None: its number of elements.
    """

    neighbours: np.ndarray
    forward: np.ndarray
    weights: np.ndarray = None

    @property
    def n_elements(self):
        """Number of elements (voxels, vertices) of the graph."""
        return self.neighbours.shape[0]


@dataclass(frozen=True)
class VoxelGraph(NeighbourGraph):
    """Neighbourhood of the voxels of a mask (built by :func:`voxel_graph`).

    Attributes
    ----------
    neighbours, forward, weights
        As :class:`NeighbourGraph` (no weights); the columns of ``forward`` are those of
        ``neighbours`` whose offsets are lexicographically positive.
    mask : ndarray of bool, 3D
    structure : ndarray of bool (3, 3, 3)
        Connectivity structure, as for :func:`scipy.ndimage.label`.
    """

    mask: np.ndarray = None
    structure: np.ndarray = None


def graph_from_edges(edges, n_elements, weights=None):
    """Neighbour table of ``n_elements`` elements joined by ``edges``.

    Parameters
    ----------
    edges : array of int (n_edges, 2)
        Pairs of neighbouring elements (0 <= index < n_elements), in any
        order; repeated pairs and either orientation are allowed, self-loops
        are dropped.
    n_elements : int
    weights : array of float (n_elements,) or None
        Extent of each element (e.g. vertex areas), finite and >= 0; None: clusters
        are measured by their number of elements.

    Returns
    -------
    NeighbourGraph
        Row ``i`` of ``neighbours`` lists the neighbours of ``i`` in increasing
        order; ``forward`` the neighbours ``j > i``.
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    n = int(n_elements)
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"edges must join elements 0..{n - 1}")
    edges = np.unique(np.sort(edges[edges[:, 0] != edges[:, 1]], axis=1), axis=0)
    both = np.concatenate([edges, edges[:, ::-1]])
    both = both[np.lexsort((both[:, 1], both[:, 0]))]
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=float)
        if weights.shape != (n,) or not np.all(np.isfinite(weights) & (weights >= 0)):
            raise ValueError(f"weights must be {n} finite values >= 0")
    return NeighbourGraph(_padded(both, n), _padded(edges, n), weights)


def _padded(pairs, n):
    """Rows ``pairs[:, 0]`` holding ``pairs[:, 1]`` (sorted by row), padded with n."""
    degree = np.bincount(pairs[:, 0], minlength=n)
    table = np.full((n, max(int(degree.max(initial=0)), 1)), n, dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(degree)[:-1]])
    column = np.arange(len(pairs)) - starts[pairs[:, 0]]
    table[pairs[:, 0], column] = pairs[:, 1]
    return table


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
    """Neighbour table of the voxels of ``mask``.

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
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, connectivity)
    n_vox = int(mask.sum())
    index = np.full(mask.shape, n_vox, dtype=np.int32)  # half the memory traffic of int64
    index[mask] = np.arange(n_vox)
    padded = np.pad(index, 1, constant_values=n_vox)
    offsets = np.argwhere(structure) - 1
    offsets = offsets[np.any(offsets != 0, axis=1)]
    coords = np.argwhere(mask) + 1
    neighbours = np.empty((n_vox, len(offsets)), dtype=np.int32)
    for col, off in enumerate(offsets):
        c = coords + off
        neighbours[:, col] = padded[c[:, 0], c[:, 1], c[:, 2]]
    forward = [col for col, off in enumerate(offsets) if tuple(off) > (0, 0, 0)]
    return VoxelGraph(neighbours, np.ascontiguousarray(neighbours[:, forward]), mask=mask,
                      structure=structure)


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


# ------------------------------------------------------------ TFCE


def _tops(maps, tail):
    """Largest value enhanced in every row: max(s * row) over the signs of the tail."""
    signs = tail_signs(tail)
    if maps.shape[1] == 0:
        return np.zeros(maps.shape[0])
    tops = [maps.max(axis=1) if s > 0 else -maps.min(axis=1) for s in signs]
    return np.maximum.reduce(tops)


def tfce_map(values, graph, tail="two-sided", dh="auto", E=TFCE_E, H=TFCE_H):
    """Threshold-free cluster enhancement of a masked map.

    tfce(v) = sum_{h_k <= value(v)} size(cluster of v at h_k)^E * h_k^H

    (size: the cluster's elements, or the sum of their ``graph.weights``)

    Equal to nilearn's ``calculate_tfce`` (Smith & Nichols 2009, NeuroImage
    44:83-98, without the factor dh as in fslmaths), computed exactly but
    without labelling the volume once per threshold (see the module notes).

    Parameters
    ----------
    values : array (n_elements,)
        Statistic map of the elements of ``graph``.
    graph : NeighbourGraph
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
    ndarray (n_elements,)
    """
    values = np.ascontiguousarray(values, dtype=float)
    top = float(_tops(values[None], tail)[0])
    if not top > 0:
        return np.zeros(values.shape)
    signs = tail_signs(tail)
    from . import spatial_kernels  # numba's: imported by what runs a kernel

    return spatial_kernels.tfce_pass(
        values, graph.neighbours, graph.forward, tfce_thresholds(top, dh), 1.0 in signs,
        -1.0 in signs, float(E), float(H), True, graph.weights)[1]


def max_tfce(values, graph, tail="two-sided", dh="auto", E=TFCE_E, H=TFCE_H):
    """Largest |TFCE| of the map, i.e. ``max(abs(tfce_map(...)))``, faster.

    Parameters and definitions as :func:`tfce_map`.

    Returns
    -------
    float
    """
    return float(tfce_maxima(np.asarray(values, dtype=float)[None], graph, tail, dh, E, H)[0])


def tfce_maxima(maps, graph, tail="two-sided", dh="auto", E=TFCE_E, H=TFCE_H):
    """Largest |TFCE| of every row of ``maps``, ``[max_tfce(row, ...) for row in maps]``.

    One kernel call for all the rows, which shares its work arrays.

    Parameters
    ----------
    maps : array (n_maps, n_elements)
    graph, tail, dh, E, H
        As :func:`tfce_map`.

    Returns
    -------
    ndarray (n_maps,)
    """
    maps = np.ascontiguousarray(maps, dtype=float)
    tops = _tops(maps, tail)
    steps = [tfce_thresholds(top, dh) if top > 0 else np.zeros(0) for top in tops]
    thresholds = np.zeros((len(steps), max((t.size for t in steps), default=0)))
    for row, t in zip(thresholds, steps):
        row[:t.size] = t
    signs = tail_signs(tail)
    from . import spatial_lanes  # numba's: imported by what runs a kernel

    return spatial_lanes.tfce_max_batch(
        maps, graph.neighbours, graph.forward, thresholds,
        np.array([t.size for t in steps], dtype=np.int64), 1.0 in signs, -1.0 in signs,
        float(E), float(H), graph.weights)


# ------------------------------------------------------------ clusters


def cluster_maps(values, graph, threshold, tail="two-sided"):
    """Size and mass of the cluster of every element (0 outside clusters).

    cluster = connected elements with s * value > threshold (s = +1 or -1) ;
    size = its number of elements, or the sum of their ``graph.weights`` ;
    mass = sum over the cluster of (|value| - threshold)

    Parameters
    ----------
    values : array (n_elements,)
    graph : NeighbourGraph
    threshold : float
        Cluster-forming threshold on the statistic (>= 0).
    tail : {"two-sided", "positive", "negative"}

    Returns
    -------
    size, mass : ndarrays (n_elements,)
        ``size`` of int without weights, of float with them.
    """
    signs = tail_signs(tail)
    from . import spatial_kernels  # numba's: imported by what runs a kernel

    return spatial_kernels.cluster_pass(np.ascontiguousarray(values, dtype=float),
                                        graph.forward, float(threshold), 1.0 in signs,
                                        -1.0 in signs, graph.weights)


def max_cluster_measures(values, graph, threshold, tail="two-sided"):
    """Largest cluster size and largest cluster mass of the map.

    Definitions as :func:`cluster_maps`; both are 0 when no element passes.

    Returns
    -------
    max_size : int, or float with ``graph.weights``
    max_mass : float
    """
    sizes, masses = cluster_maxima(np.asarray(values, dtype=float)[None], graph, threshold,
                                   tail)
    return sizes[0].item(), float(masses[0])


def cluster_maxima(maps, graph, threshold, tail="two-sided"):
    """Largest cluster size and mass of every row of ``maps`` (n_maps, n_elements),
    as :func:`max_cluster_measures`, in one kernel call.

    Returns
    -------
    sizes : ndarray of int (n_maps,), of float with ``graph.weights``
    masses : ndarray (n_maps,)
    """
    signs = tail_signs(tail)
    from . import spatial_kernels  # numba's: imported by what runs a kernel

    return spatial_kernels.cluster_max_batch(np.ascontiguousarray(maps, dtype=float),
                                             graph.forward, float(threshold), 1.0 in signs,
                                             -1.0 in signs, graph.weights)


def cluster_forming_threshold(p, dof, tail="two-sided", statistic="t"):
    """Threshold of an uncorrected cluster-forming p value, as nilearn; inf when p is
    too small for a float (see :func:`~nipype_secondlevel.design.contrasts.cluster_forming_value`).

    t = isf(p / 2, dof) for a two-sided test, isf(p, dof) otherwise ;
    F (clusters of its z, positive side): z = isf_normal(p)
    """
    from scipy import stats

    if statistic != "t":
        return float(stats.norm.isf(p))
    p = float(p) / (2.0 if check_tail(tail) == "two-sided" else 1.0)
    return float(stats.t.isf(p, dof))
