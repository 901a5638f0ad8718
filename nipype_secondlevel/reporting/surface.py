"""Cluster tables and pictures of maps on a surface or CIFTI domain.

A domain (:class:`~..io.surfaces.SurfaceDomain`, :class:`~..io.cifti.CiftiDomain`)
gives the elements' neighbours, structures, areas and coordinates; the maps here are
(n_elements,) arrays over it, 0 where nothing is shown.
"""

import numpy as np
import pandas as pd

from ..io.files import save_figure
from .figures import _pyplot

#: Views of each hemisphere in the pictures, one row per hemisphere.
VIEWS = ("lateral", "medial")
#: Where a surface cluster table's peaks are, said in its sidecar. No surface atlas is
#: available offline: nilearn's package data holds fsaverage5's meshes and sulcal,
#: curvature, thickness and area maps, no parcellation (Destrieux and Desikan-Killiany
#: are downloads), so the peaks are not labelled with regions.
PEAK_LOCATION = {
    "Atlas": None,
    "PeakLocation": "no surface atlas is available offline (nilearn ships no surface "
                    "parcellation; Destrieux and Desikan-Killiany are downloads), so peaks "
                    "are not labelled with regions: Peak is the peak's vertex index in its "
                    "hemisphere's mesh (a CIFTI voxel's i,j,k), X, Y, Z its position in mm "
                    "on the surfaces of SpatialReference (fsaverage5: the midthickness, "
                    "fsaverage's MNI305-like coordinates; a CIFTI voxel: by its affine)",
}


def surface_clusters(values, domain, threshold, two_sided=True):
    """Clusters of a map on a domain: connected elements with s * value > threshold.

    Positive and negative clusters are formed separately (s = +1, and s = -1 when
    ``two_sided``); elements are connected along ``domain.edges()``.

    Returns
    -------
    list of int arrays
        The elements of every cluster.
    """
    from scipy import sparse
    from scipy.sparse import csgraph

    values = np.asarray(values, dtype=float)
    edges = domain.edges()
    clusters = []
    for sign in (1.0, -1.0) if two_sided else (1.0,):
        above = sign * values > threshold
        keep = edges[above[edges[:, 0]] & above[edges[:, 1]]]
        adjacency = sparse.coo_matrix((np.ones(len(keep)), (keep[:, 0], keep[:, 1])),
                                      shape=(values.size, values.size))
        _, labels = csgraph.connected_components(adjacency, directed=False)
        inside = np.flatnonzero(above)
        _, first, members = np.unique(labels[inside], return_index=True, return_inverse=True)
        clusters.extend(inside[members == k] for k in range(len(first)))
    return clusters


def surface_cluster_table(values, domain, threshold, two_sided=True, min_size=1):
    """The clusters of a map with their peaks, largest peak |value| first.

    Columns: ``Cluster ID``, ``Structure`` (hemisphere, or CIFTI structure),
    ``Peak`` (vertex index in its hemisphere's mesh, or voxel "i,j,k"), ``Peak Stat``,
    ``Size`` (elements), ``Area (mm2)`` (sum of its vertex areas), ``Volume (mm3)``
    (its voxels; only for domains with voxels), ``X``, ``Y``, ``Z`` (the peak's
    position on the mesh, in mm).

    Parameters
    ----------
    values : array (n_elements,)
    domain : SurfaceDomain or CiftiDomain
    threshold : float
        Clusters are formed from |value| > threshold (value > threshold one-sided).
    two_sided : bool
    min_size : int
        Clusters of fewer elements are left out.

    Returns
    -------
    pandas.DataFrame
    """
    values = np.asarray(values, dtype=float)
    clusters = [c for c in surface_clusters(values, domain, threshold, two_sided)
                if c.size >= min_size]
    has_voxels = not np.all(domain.is_vertex)
    columns = ["Cluster ID", "Structure", "Peak", "Peak Stat", "Size", "Area (mm2)",
               *(["Volume (mm3)"] if has_voxels else []), "X", "Y", "Z"]
    if not clusters:
        return pd.DataFrame(columns=columns)
    peaks = np.array([c[np.argmax(np.abs(values[c]))] for c in clusters])
    order = np.argsort(-np.abs(values[peaks]), kind="stable")
    areas, xyz = domain.vertex_areas(), domain.coordinates()
    rows = []
    for rank, k in enumerate(order, start=1):
        members, peak = clusters[k], peaks[k]
        row = {"Cluster ID": rank, "Structure": domain.structures[peak],
               "Peak": domain.local_index[peak], "Peak Stat": values[peak],
               "Size": members.size, "Area (mm2)": areas[members].sum()}
        if has_voxels:
            row["Volume (mm3)"] = np.count_nonzero(~domain.is_vertex[members]) \
                * domain.voxel_volume
        row.update(zip("XYZ", xyz[peak]))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def plot_surface_map(values, domain, path, threshold=None, title=None, vmax=None):
    """Save the lateral and medial views of both hemispheres of a map as PNG.

    One row per hemisphere, nilearn's ``plot_surf_stat_map`` in each panel (the same
    colour scale everywhere, up to ``vmax``, default max |value|), on the domain's
    picture meshes (fsaverage5: inflated, over its sulcal depth). A CIFTI map shows its
    cortex only.
    """
    plt = _pyplot()
    from nilearn.plotting import plot_surf_stat_map

    maps = domain.surface_maps(values)
    if vmax is None:
        vmax = max(float(np.max(np.abs(v), initial=0.0)) for _, v in maps.values()) or 1.0
    backgrounds = _backgrounds(domain)
    fig, axes = plt.subplots(len(maps), len(VIEWS), figsize=(4.0 * len(VIEWS), 3.6 * len(maps)),
                             subplot_kw={"projection": "3d"}, squeeze=False)
    for row, (hemi, (mesh, on_mesh)) in enumerate(maps.items()):
        for col, view in enumerate(VIEWS):
            plot_surf_stat_map((mesh.coordinates, mesh.faces), on_mesh, hemi=hemi, view=view,
                               bg_map=backgrounds.get(hemi), threshold=threshold, vmax=vmax,
                               symmetric_cbar=True, colorbar=col == len(VIEWS) - 1,
                               axes=axes[row, col],
                               title=f"{hemi} {view}", figure=fig)
    if title:
        fig.suptitle(title)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def surface_viewer_html(values, domain, threshold=None, title=None, width=700, height=500):
    """The report's interactive viewer of a map on both hemispheres: nilearn's
    ``view_surf`` (its plotly JavaScript inline, nothing fetched) in an iframe.

    The hemispheres of the domain's picture meshes (the cortex of CIFTI) are drawn as one
    mesh, set apart along x where they overlap (inflated surfaces), over fsaverage5's
    sulcal depth; values with ``|value| < threshold`` are hidden, as in the pictures (the
    zeros when ``threshold`` is None).
    """
    from nilearn.plotting import view_surf

    from .viewer import framed, offline_page

    maps = domain.surface_maps(values)
    parts = [(mesh.coordinates.copy(), mesh.faces, on_mesh)
             for mesh, on_mesh in maps.values()]
    if len(parts) == 2 and parts[0][0][:, 0].max() > parts[1][0][:, 0].min():
        parts[0][0][:, 0] -= parts[0][0][:, 0].max() + 5.0  # left to x < -5 mm
        parts[1][0][:, 0] -= parts[1][0][:, 0].min() - 5.0  # right to x > 5 mm
    offsets = np.cumsum([0] + [len(xyz) for xyz, _, _ in parts])
    coordinates = np.concatenate([xyz for xyz, _, _ in parts])
    faces = np.concatenate([f + offset for (_, f, _), offset in zip(parts, offsets)])
    shown = np.concatenate([v for _, _, v in parts])
    backgrounds = _backgrounds(domain)
    background = (np.concatenate([backgrounds[h] for h in maps]) if backgrounds else None)
    top = float(np.max(np.abs(shown), initial=0.0))
    view = view_surf((coordinates, faces), shown, bg_map=background,
                     threshold=threshold or 1e-6, vmax=max(top, 1.5 * (threshold or 0), 1e-3),
                     symmetric_cmap=True, title=title, title_fontsize=16)
    view.resize(width, height)
    caption = (f"{' and '.join(maps)} hemisphere{'s' * (len(maps) > 1)}: the map of the "
               "pictures above, " + (f"|z| > {threshold:.2f}" if threshold else "nothing "
                                     "survives") + ". Drag to turn, scroll to zoom.")
    return framed(offline_page(view), width, height, title or "interactive surface viewer",
                  caption)


def _backgrounds(domain):
    """Sulcal depth under fsaverage5's pictures (shipped with nilearn); none elsewhere."""
    if domain.space != "fsaverage5":
        return {}
    from nilearn.datasets import load_fsaverage_data

    sulcal = load_fsaverage_data("fsaverage5", data_type="sulcal")
    return {hemi: np.asarray(sulcal.data.parts[hemi]) for hemi in ("left", "right")}
