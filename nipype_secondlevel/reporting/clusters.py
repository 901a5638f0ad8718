"""Cluster tables: the clusters of a thresholded map with their peaks (nilearn's table)."""

import warnings

import numpy as np
import pandas as pd

CLUSTER_COLUMNS = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]


def cluster_table(thresholded_img, z_threshold, cluster_size, two_sided):
    """Clusters with their peaks and sub-peaks in MNI mm: nilearn's ``get_clusters_table``.

    The table is nilearn's, row for row (same clusters, order, ids, peaks and sub-peaks),
    but nilearn's sub-peaks are searched on each cluster's bounding box rather than on the
    whole volume (its filters and labelling run once per cluster over the whole grid: 174 s
    for a noisy 2 mm map of 584 clusters; here each cluster costs its own size), and a
    cluster of one voxel is its own peak, with no sub-peaks, without calling nilearn.
    """
    from nilearn.image import threshold_img

    if not np.any(np.asanyarray(thresholded_img.dataobj)):
        return pd.DataFrame(columns=CLUSTER_COLUMNS)
    if z_threshold < 0 and not two_sided:  # nilearn's lower-tail conventions: its own call
        return _nilearn_table(thresholded_img, z_threshold, cluster_size, two_sided)
    img = threshold_img(thresholded_img, threshold=z_threshold,
                        cluster_threshold=cluster_size, two_sided=two_sided)
    data = np.asanyarray(img.dataobj)
    data = np.where(np.isfinite(data), data, 0).astype(data.dtype, copy=False)
    rows = []
    for sign in (1, -1) if two_sided else (1,):
        rows += _sign_rows(img, data * sign, sign, z_threshold, offset=len(rows))
    if not rows:
        return pd.DataFrame(columns=CLUSTER_COLUMNS)
    return pd.DataFrame(columns=CLUSTER_COLUMNS, data=rows)


def _nilearn_table(img, z_threshold, cluster_size, two_sided):
    from nilearn.reporting import get_clusters_table

    with warnings.catch_warnings():
        # A map with clusters of one sign only is not worth a warning.
        warnings.filterwarnings("ignore", message="No clusters found", category=UserWarning)
        return get_clusters_table(img, stat_threshold=z_threshold,
                                  cluster_threshold=cluster_size, two_sided=two_sided)


def _sign_rows(img, signed, sign, z_threshold, offset):
    """nilearn's rows of the clusters of ``signed > z_threshold`` (one sign of the map),
    in its order (descending peak), each cluster's peaks from nilearn on its box."""
    from nilearn.image import coord_transform
    from scipy import ndimage

    labels, n = ndimage.label(signed > z_threshold, ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return []
    ids = np.arange(1, n + 1)
    peaks = np.array(ndimage.maximum(signed, labels, ids), dtype=signed.dtype)
    boxes = ndimage.find_objects(labels)
    voxel_mm3 = np.int64(int(np.prod(img.header.get_zooms())))  # nilearn's size of one
    rows = []
    for number, index in enumerate((-peaks).argsort(), start=offset + 1):
        if all(s.stop - s.start == 1 for s in boxes[index]):  # one voxel: its own peak
            ijk = [np.array([s.start]) for s in boxes[index]]
            xyz = coord_transform(*ijk, img.affine)
            rows.append([number, *(c[0] for c in xyz), peaks[index] * sign, voxel_mm3])
            continue
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, size))
                    for s, size in zip(boxes[index], signed.shape))
        corner = np.array([s.start for s in box], dtype=float)
        crop = np.where(labels[box] == index + 1, signed[box], 0).astype(signed.dtype)
        affine = img.affine.copy()
        affine[:3, 3] = img.affine[:3, :3] @ corner + img.affine[:3, 3]
        table = _nilearn_table(img.__class__(crop, affine, img.header), z_threshold, 0, False)
        mm = table[["X", "Y", "Z"]].to_numpy(dtype=float)
        ijk = np.rint(np.c_[mm, np.ones(len(mm))] @ np.linalg.inv(affine).T)[:, :3] + corner
        xyz = np.asarray(coord_transform(ijk[:, 0], ijk[:, 1], ijk[:, 2], img.affine)).T
        for row, (cluster_id, value, size) in enumerate(zip(  # numpy's scalars, as nilearn's
                *(table[c].to_numpy() for c in ("Cluster ID", "Peak Stat", "Cluster Size (mm3)")))):
            label = number if row == 0 else f"{number}{str(cluster_id)[-1]}"
            rows.append([label, *xyz[row], value * sign, size])
    return rows


def values_at_peaks(table, img):
    """The values of ``img`` at every row's peak (X, Y, Z in mm, on ``img``'s grid)."""
    if table.empty:
        return np.zeros(0)
    mm = table[["X", "Y", "Z"]].to_numpy(dtype=float)
    ijk = np.rint(np.c_[mm, np.ones(len(mm))] @ np.linalg.inv(img.affine).T)[:, :3]
    i, j, k = ijk.astype(int).T
    return np.asanyarray(img.dataobj)[i, j, k].astype(float)
