"""Tests of the spatial statistics of permutation inference: clusters and TFCE.

Every result is compared with an independent reference: scipy.ndimage.label
or nilearn. (The permutation tests themselves: test_permutation_exact.py.)
"""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from nipype_secondlevel.stats import spatial


def _sphere_mask(shape=(14, 15, 13), radius=6.0):
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    return ((grid - centre) ** 2).sum(0) <= radius**2


def _smooth_maps(rng, n, mask, sigma=1.2, effect=0.0):
    maps = np.stack([
        ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma)[mask]
        for _ in range(n)
    ])
    return maps / maps.std() + effect


# ------------------------------------------------------------ TFCE, clusters


@pytest.mark.parametrize("tail", ["two-sided", "positive"])
@pytest.mark.parametrize("dh", ["auto", 0.05])
@pytest.mark.parametrize("connectivity", [1, 3])
def test_tfce_equals_nilearn(tail, dh, connectivity):
    from nilearn.mass_univariate._utils import calculate_tfce

    rng = np.random.default_rng(7)
    mask = _sphere_mask((20, 22, 18), 8.5)
    values = _smooth_maps(rng, 1, mask, sigma=1.0)[0] * 3
    graph = spatial.voxel_graph(mask, connectivity)
    ours = spatial.tfce_map(values, graph, tail, dh=dh)
    volume = np.zeros(mask.shape + (1,))
    volume[mask, 0] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = calculate_tfce(
            volume, ndimage.generate_binary_structure(3, connectivity),
            dh=dh, two_sided_test=(tail == "two-sided"),
        )[..., 0][mask]
    np.testing.assert_allclose(ours, reference, rtol=1e-9,
                               atol=1e-9 * np.abs(reference).max())
    assert np.abs(reference).max() > 0
    assert spatial.max_tfce(values, graph, tail, dh=dh) == pytest.approx(
        np.abs(reference).max(), rel=1e-12)
    if tail == "two-sided":
        assert (ours < 0).any() and (ours > 0).any()


@pytest.mark.parametrize("connectivity", [1, 3])
def test_tfce_equals_nilearn_on_plateaus_and_white_noise(connectivity):
    # unsmoothed noise (many small peaks) rounded to steps of 0.5: plateaus of
    # equal values and values equal to thresholds, where ascents and saddles tie
    from nilearn.mass_univariate._utils import calculate_tfce

    rng = np.random.default_rng(17)
    mask = _sphere_mask((16, 17, 15), 7.5)
    values = np.round(rng.standard_normal(mask.sum()) * 4) / 2
    volume = np.zeros(mask.shape + (1,))
    volume[mask, 0] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = calculate_tfce(volume, ndimage.generate_binary_structure(3, connectivity),
                                   two_sided_test=True)[..., 0][mask]
    graph = spatial.voxel_graph(mask, connectivity)
    np.testing.assert_allclose(spatial.tfce_map(values, graph), reference, rtol=1e-9,
                               atol=1e-9 * np.abs(reference).max())
    assert spatial.max_tfce(values, graph) == pytest.approx(np.abs(reference).max(), rel=1e-12)
    assert len(np.unique(values)) < 40 and (reference < 0).any()


def test_tfce_negative_tail_is_positive_tail_of_minus_map():
    rng = np.random.default_rng(8)
    mask = _sphere_mask()
    values = _smooth_maps(rng, 1, mask)[0]
    graph = spatial.voxel_graph(mask)
    np.testing.assert_array_equal(
        spatial.tfce_map(values, graph, "negative"),
        spatial.tfce_map(-values, graph, "positive"),
    )


@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_cluster_measures_equal_ndimage_label(tail):
    rng = np.random.default_rng(9)
    mask = _sphere_mask((18, 18, 18), 8)
    values = _smooth_maps(rng, 1, mask, sigma=1.0)[0] * 2
    threshold = 1.5
    graph = spatial.voxel_graph(mask, connectivity=1)
    size, mass = spatial.cluster_maps(values, graph, threshold, tail)
    # independent reference: label each sign's suprathreshold volume
    ref_size, ref_mass = np.zeros(mask.sum()), np.zeros(mask.sum())
    signs = {"two-sided": (1, -1), "positive": (1,), "negative": (-1,)}[tail]
    for sign in signs:
        volume = np.zeros(mask.shape)
        volume[mask] = sign * values
        labels, n = ndimage.label(volume > threshold)  # default = 6-conn
        for k in range(1, n + 1):
            voxels = (labels == k)[mask]
            ref_size[voxels] = voxels.sum()
            ref_mass[voxels] = (sign * values[voxels] - threshold).sum()
    np.testing.assert_array_equal(size, ref_size)
    np.testing.assert_allclose(mass, ref_mass, rtol=1e-12)
    assert ref_size.max() > 1
    max_size, max_mass = spatial.max_cluster_measures(values, graph,
                                                      threshold, tail)
    assert max_size == ref_size.max()
    assert max_mass == pytest.approx(ref_mass.max(), rel=1e-12)
