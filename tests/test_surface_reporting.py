"""Cluster tables and pictures on the surface: clusters by a breadth-first search over the
faces, areas from the triangles, pictures equal to nilearn's drawing of the GIFTI files."""

from collections import deque

import matplotlib
import numpy as np
import pytest
from matplotlib.image import imread
from surface_data import cifti_layout, smooth_sample

from nipype_secondlevel.io import cifti, meshes, surfaces
from nipype_secondlevel.reporting import surface

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def domain():
    return surfaces.SurfaceDomain.fsaverage5()


@pytest.fixture(scope="module")
def z_map(domain):
    values = smooth_sample(domain.coordinates(), 1, seed=11, effect=6.0, centre=2000)[0]
    return np.where(domain.support(), values, 0.0)


def _bfs_clusters(values, threshold, faces_by_hemi, sizes):
    """Clusters by breadth-first search over the triangles' edges, each sign on its own."""
    neighbours = [set() for _ in range(sum(sizes))]
    offset = 0
    for faces, size in zip(faces_by_hemi, sizes):
        for a, b, c in faces + offset:
            for u, v in ((a, b), (b, c), (c, a)):
                neighbours[u].add(v)
                neighbours[v].add(u)
        offset += size
    clusters = []
    for sign in (1, -1):
        seen = set()
        for start in np.flatnonzero(sign * values > threshold):
            if start in seen:
                continue
            seen.add(start)
            queue, members = deque([start]), []
            while queue:
                v = queue.popleft()
                members.append(v)
                for u in neighbours[v]:
                    if u not in seen and sign * values[u] > threshold:
                        seen.add(u)
                        queue.append(u)
            clusters.append(sorted(members))
    return clusters


def _triangle_area(p, q, r):
    a, b, c = np.linalg.norm(q - p), np.linalg.norm(r - q), np.linalg.norm(p - r)
    s = (a + b + c) / 2
    return np.sqrt(max(s * (s - a) * (s - b) * (s - c), 0.0))


def test_the_cluster_table_has_the_breadth_first_clusters_their_peaks_and_areas(domain, z_map):
    threshold = 1.5
    table = surface.surface_cluster_table(z_map, domain, threshold)
    mids = [meshes.fsaverage5_mesh(h) for h in ("left", "right")]
    clusters = _bfs_clusters(z_map, threshold, [m.faces for m in mids], [10242, 10242])
    assert len(table) == len(clusters) > 10
    by_peak = {}
    for members in clusters:
        members = np.array(members)
        by_peak[members[np.argmax(np.abs(z_map[members]))]] = members
    coordinates = np.concatenate([m.coordinates for m in mids])
    faces = np.concatenate([mids[0].faces, mids[1].faces + 10242])
    for _, row in table.iterrows():
        hemi_offset = 0 if row["Structure"] == "left" else 10242
        peak = int(row["Peak"]) + hemi_offset
        members = by_peak[peak]
        assert row["Size"] == len(members) and row["Peak Stat"] == z_map[peak]
        member_set = set(members.tolist())
        area = sum(_triangle_area(*coordinates[f]) / 3 * sum(int(v) in member_set for v in f)
                   for f in faces if any(int(v) in member_set for v in f))
        assert row["Area (mm2)"] == pytest.approx(area, rel=1e-9)
        np.testing.assert_allclose(row[["X", "Y", "Z"]].to_numpy(float), coordinates[peak])
    assert list(table["Cluster ID"]) == list(range(1, len(table) + 1))
    assert np.all(np.diff(np.abs(table["Peak Stat"].to_numpy(float))) <= 0)
    assert (np.sign(table["Peak Stat"]) < 0).any()
    assert len(surface.surface_cluster_table(z_map, domain, threshold, two_sided=False)) == \
        (table["Peak Stat"] > 0).sum()
    assert surface.surface_cluster_table(z_map, domain, 100.0).empty


def test_a_cifti_cluster_table_gives_voxel_volumes():
    layout = cifti_layout()
    domain = cifti.CiftiDomain(layout, {h: meshes.fsaverage5_mesh(h) for h in ("left", "right")})
    values = np.zeros(domain.n_elements)
    thalamus = np.flatnonzero(domain.structures == "THALAMUS_LEFT")
    values[thalamus] = 4.0
    values[thalamus[5]] = 5.0
    table = surface.surface_cluster_table(values, domain, 3.0)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["Structure"] == "THALAMUS_LEFT" and row["Size"] == 24
    assert row["Volume (mm3)"] == pytest.approx(24 * 8.0) and row["Area (mm2)"] == 0
    assert row["Peak"] == ",".join(map(str, layout.voxel[thalamus[5]]))


def test_the_picture_is_nilearns_drawing_of_the_written_gifti_files(tmp_path, domain, z_map):
    from nilearn.datasets import load_fsaverage, load_fsaverage_data
    from nilearn.plotting import plot_surf_stat_map
    from nilearn.surface import SurfaceImage

    ours = surface.plot_surface_map(z_map, domain, tmp_path / "ours.png", threshold=2.5,
                                    title="z")
    left, right = domain.write(z_map, tmp_path, "z")
    img = SurfaceImage(mesh=load_fsaverage("fsaverage5")["inflated"],
                       data={"left": left, "right": right})
    sulcal = load_fsaverage_data("fsaverage5", data_type="sulcal")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(8.0, 7.2), subplot_kw={"projection": "3d"})
    vmax = float(np.abs(z_map).max())
    for row, hemi in enumerate(("left", "right")):
        for col, view in enumerate(("lateral", "medial")):
            plot_surf_stat_map(img.mesh.parts[hemi], np.asarray(img.data.parts[hemi]),
                               hemi=hemi, view=view, bg_map=np.asarray(sulcal.data.parts[hemi]),
                               threshold=2.5, vmax=vmax, symmetric_cbar=True, colorbar=col == 1,
                               axes=axes[row, col], title=f"{hemi} {view}", figure=fig)
    fig.suptitle("z")
    fig.savefig(tmp_path / "nilearn.png", dpi=100)
    plt.close(fig)
    a, b = imread(ours), imread(tmp_path / "nilearn.png")
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 1e-6
    assert np.std(a) > 0.05  # not blank
