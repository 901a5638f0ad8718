"""Cluster tables: the clusters of a thresholded map with their peaks (nilearn's table)."""

import warnings

import numpy as np
import pandas as pd

CLUSTER_COLUMNS = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]


def cluster_table(thresholded_img, z_threshold, cluster_size, two_sided):
    """Clusters with their peaks and sub-peaks in MNI mm (nilearn's table)."""
    from nilearn.reporting import get_clusters_table

    if not np.any(np.asanyarray(thresholded_img.dataobj)):
        return pd.DataFrame(columns=CLUSTER_COLUMNS)
    with warnings.catch_warnings():
        # A map with clusters of one sign only is not worth a warning.
        warnings.filterwarnings("ignore", message="No clusters found", category=UserWarning)
        return get_clusters_table(
            thresholded_img,
            stat_threshold=z_threshold,
            cluster_threshold=cluster_size,
            two_sided=two_sided,
        )


def values_at_peaks(table, img):
    """The values of ``img`` at every row's peak (X, Y, Z in mm, on ``img``'s grid)."""
    if table.empty:
        return np.zeros(0)
    mm = table[["X", "Y", "Z"]].to_numpy(dtype=float)
    ijk = np.rint(np.c_[mm, np.ones(len(mm))] @ np.linalg.inv(img.affine).T)[:, :3]
    i, j, k = ijk.astype(int).T
    return np.asanyarray(img.dataobj)[i, j, k].astype(float)
