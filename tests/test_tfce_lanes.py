"""The largest TFCE of many maps, several maps at once (``spatial_lanes``): bit for bit
the per-map kernel's (``spatial_kernels.tfce_pass``) on every map, and equal to a
brute-force TFCE written here (scipy.ndimage.label at every threshold)."""

import numpy as np
import pytest
from scipy import ndimage

from nipype_secondlevel.stats import spatial, spatial_kernels, spatial_lanes

SIGNS = {"two-sided": (1, -1), "positive": (1,), "negative": (-1,)}


def _sphere_mask(shape=(11, 12, 10), radius=4.8):
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    return ((grid - centre) ** 2).sum(0) <= radius**2


@pytest.fixture(scope="module")
def maps():
    """7 smooth maps of different heights in a small sphere (7: one group of lanes and
    a group with lanes to spare), the fourth all zeros (no levels)."""
    rng = np.random.default_rng(5)
    mask = _sphere_mask()
    maps = np.stack([ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)[mask]
                     for _ in range(7)])
    maps *= (3 + np.arange(7))[:, None] / maps.std()
    maps[3] = 0.0
    return mask, maps


def _top(values, tail):
    return max(np.max(s * values) for s in SIGNS[tail])


def _brute_max_tfce(volume, mask, tail, E=spatial.TFCE_E, H=spatial.TFCE_H):
    """max over voxels of sum over h_k <= s * value of size(component of the voxel in
    {s * x >= h_k})^E h_k^H, s each sign of the tail, 6-connectivity."""
    top = _top(volume[mask], tail)
    if not top > 0:
        return 0.0
    best = 0.0
    for sign in SIGNS[tail]:
        total = np.zeros(volume.shape)
        for h in spatial.tfce_thresholds(top):
            labels, _ = ndimage.label(mask & (sign * volume >= h))
            sizes = np.bincount(labels.ravel())
            inside = labels > 0
            total[inside] += sizes[labels[inside]] ** E * h ** H
        best = max(best, total.max())
    return best


def _per_map(maps, graph, tail, E=spatial.TFCE_E, H=spatial.TFCE_H):
    """The per-map kernel's largest TFCE of every map."""
    out = []
    for values in maps:
        top = _top(values, tail)
        out.append(spatial_kernels.tfce_pass(
            values, graph.neighbours, graph.forward, spatial.tfce_thresholds(top),
            1 in SIGNS[tail], -1 in SIGNS[tail], E, H, False, graph.weights)[0]
            if top > 0 else 0.0)
    return np.array(out)


@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_lanes_give_the_per_map_kernels_bits_and_the_brute_force_maxima(maps, tail):
    mask, values = maps
    graph = spatial.voxel_graph(mask)
    ours = spatial.tfce_maxima(values, graph, tail)
    assert spatial_lanes.LANES < len(values) and len(values) % spatial_lanes.LANES
    np.testing.assert_array_equal(ours, _per_map(values, graph, tail))
    volume = np.zeros(mask.shape)
    for m, row in enumerate(values):
        volume[mask] = row
        assert ours[m] == pytest.approx(_brute_max_tfce(volume, mask, tail), rel=1e-12)
    assert ours[3] == 0.0 and (np.delete(ours, 3) > 0).all()
    # a map alone in its group of lanes, and the maps in another order: the same bits
    np.testing.assert_array_equal(spatial.tfce_maxima(values[5:6], graph, tail), ours[5:6])
    np.testing.assert_array_equal(spatial.tfce_maxima(values[::-1], graph, tail), ours[::-1])


def test_lanes_on_a_weighted_graph_give_the_per_map_kernels_bits():
    """A mesh-like graph (irregular degrees, the sentinel in most rows) with element
    areas: the weighted events see the same joins and saddles in the same order."""
    rng = np.random.default_rng(2)
    edges = rng.integers(0, 400, size=(1100, 2))
    graph = spatial.graph_from_edges(edges, 400, weights=rng.uniform(0.5, 2.0, 400))
    values = rng.standard_normal((6, 400)) * 2
    E, H = spatial.TFCE_SURFACE_E, spatial.TFCE_SURFACE_H
    for tail in ("two-sided", "negative"):
        ours = spatial.tfce_maxima(values, graph, tail, E=E, H=H)
        np.testing.assert_array_equal(ours, _per_map(values, graph, tail, E, H))
        assert (ours > 0).all()
