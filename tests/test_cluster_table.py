"""The cluster table is nilearn's ``get_clusters_table`` row for row (ids, order, peaks,
sub-peaks, sizes, dtypes), whatever the map: many clusters of noise, both signs, a
cluster-size threshold, plateaus (the centre-of-mass rule), clusters on the grid's edge,
an oblique affine."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.reporting import get_clusters_table
from scipy import ndimage

from nipype_secondlevel.reporting.clusters import cluster_table


def noise_map(shape, affine, seed, dtype=np.float32):
    data = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.0)
    return nib.Nifti1Image((data / data.std()).astype(dtype), affine)


def nilearn(img, threshold, size, two_sided):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_clusters_table(img, stat_threshold=threshold, cluster_threshold=size,
                                  two_sided=two_sided)


OBLIQUE = np.array([[2.9, 0.3, 0.0, -70.0], [-0.2, 3.1, 0.1, -100.0],
                    [0.0, 0.1, 2.5, -40.0], [0, 0, 0, 1.0]])


@pytest.mark.parametrize("threshold, size, two_sided, affine, dtype", [
    (1.5, 0, True, np.diag([3.0, 3.0, 3.0, 1.0]), np.float32),
    (1.0, 0, False, np.diag([-2.0, 2.0, 2.0, 1.0]), np.float64),
    (1.2, 5, True, OBLIQUE, np.float32),
])
def test_the_table_is_nilearns_row_for_row(threshold, size, two_sided, affine, dtype):
    img = noise_map((24, 22, 20), affine, seed=3, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = cluster_table(img, threshold, size, two_sided)
    expected = nilearn(img, threshold, size, two_sided)
    assert len(expected) > 60  # many clusters, several with sub-peaks
    pd.testing.assert_frame_equal(ours, expected, check_exact=True)
    assert list(map(type, ours["Cluster ID"])) == list(map(type, expected["Cluster ID"]))


def test_plateaus_and_clusters_on_the_edge_are_nilearns():
    data = np.zeros((12, 10, 8), dtype=np.float32)
    data[0:3, 0:3, 0:2] = 4.0  # a constant cluster in the grid's corner
    data[6:11, 4:9, 3] = 3.0  # a ring: its centre of mass outside the cluster
    data[8, 6, 3] = 0.0
    data[5:7, 0, 7] = -5.0  # a negative plateau on two faces of the grid
    data[11, 9, 0] = 6.0
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = cluster_table(img, 2.0, 0, True)
    pd.testing.assert_frame_equal(ours, nilearn(img, 2.0, 0, True), check_exact=True)
