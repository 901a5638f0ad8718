"""The surface domain: GIFTI pairs in and out, fsaverage5's mesh and medial wall, vertex
areas, and the one-line refusals, against nibabel, nilearn and computations written here."""

import os

import nibabel as nib
import nilearn
import numpy as np
import pytest
from scipy import sparse
from scipy.sparse import csgraph
from surface_data import N_VERTICES, write_gifti, write_pair

from nipype_secondlevel.io import meshes, surfaces
from nipype_secondlevel.io.errors import InputError

FSAVERAGE5_DIR = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data",
                              "fsaverage5")


@pytest.fixture(scope="module")
def domain():
    return surfaces.SurfaceDomain.fsaverage5()


def _raises_one_line(match, call, *args, **kwargs):
    with pytest.raises(InputError, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_gifti_pair_is_read_as_both_hemispheres_and_written_back(tmp_path, domain):
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((2, N_VERTICES)).astype(np.float32)
    pair = write_pair(tmp_path, "01", left, right)
    values = surfaces.surface_domain([pair]).read(pair)
    np.testing.assert_array_equal(values, np.concatenate([left, right]))
    out = tmp_path / "out"
    out.mkdir()
    written = domain.write(values, out, "contrast-a_stat-z_statmap", "z of a")
    assert [os.path.basename(p) for p in written] == [
        "hemi-L_contrast-a_stat-z_statmap.func.gii", "hemi-R_contrast-a_stat-z_statmap.func.gii"]
    for path, hemi, expected in zip(written, ("CortexLeft", "CortexRight"), (left, right)):
        img = nib.load(path)
        assert img.meta["AnatomicalStructurePrimary"] == hemi
        assert img.darrays[0].meta["Name"] == "z of a"
        np.testing.assert_array_equal(img.darrays[0].data, expected)
    # nilearn reads the written pair as a SurfaceImage on fsaverage5.
    from nilearn.datasets import load_fsaverage
    from nilearn.surface import SurfaceImage

    img = SurfaceImage(mesh=load_fsaverage("fsaverage5")["pial"],
                       data={"left": written[0], "right": written[1]})
    np.testing.assert_array_equal(np.asarray(img.data.parts["right"]).ravel(), right)
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in written)


def test_the_other_hemisphere_of_a_bids_name_is_found(tmp_path):
    left, right = write_pair(tmp_path, "01", np.ones(N_VERTICES), np.ones(N_VERTICES))
    assert surfaces.hemisphere_pair(right) == (left, right)
    assert surfaces.space_of(left) == "fsaverage5"
    assert surfaces.space_of("sub-1_hemi-L_space-fsLR_den-32k_x.func.gii") == "fsLR_den-32k"
    os.unlink(right)
    _raises_one_line("hemi-R twin .* is missing", surfaces.hemisphere_pair, left)
    _raises_one_line("must say its hemisphere", surfaces.hemisphere_pair,
                     tmp_path / "sub-01_lh.func.gii")


def test_bad_surface_inputs_are_refused_in_one_line(tmp_path):
    ones = np.ones(N_VERTICES)
    good = write_pair(tmp_path, "01", ones, ones)
    short = write_pair(tmp_path, "02", ones[:-2], ones)
    message = _raises_one_line("10240 vertices", surfaces.surface_domain, [good, short])
    assert str(short[0]) in message
    other_space = write_pair(tmp_path, "03", ones, ones, space="fsaverage6")
    _raises_one_line("several spaces: fsaverage5 .*fsaverage6", surfaces.surface_domain,
                     [good, other_space])
    _raises_one_line("named for the other hemisphere", surfaces.surface_domain,
                     [(good[1], good[0])])
    two = tmp_path / "sub-04_hemi-L_space-fsaverage5_stat-effect_statmap.func.gii"
    arrays = [nib.gifti.GiftiDataArray(ones.astype(np.float32)) for _ in range(2)]
    nib.save(nib.GiftiImage(darrays=arrays), two)
    _raises_one_line("holds 2 maps where one is expected", surfaces.surface_domain,
                     [(two, good[1])])
    small = write_pair(tmp_path, "05", np.ones(642), np.ones(642), space="fsaverage3")
    _raises_one_line("give the surfaces", surfaces.surface_domain, [small])
    broken = tmp_path / "sub-06_hemi-L_space-fsaverage5_x.func.gii"
    broken.write_text("<GIFTI")
    _raises_one_line("not a readable GIFTI map", surfaces.surface_domain, [(broken, good[1])])


def test_the_users_surfaces_give_the_mesh_and_must_match_the_maps(tmp_path):
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    coords = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=float)
    surf = tmp_path / "tetra.surf.gii"
    nib.save(nib.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(coords.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE")]), surf)
    mesh = meshes.load_surface(surf)
    pair = write_pair(tmp_path, "01", np.arange(4.0), -np.arange(4.0), space="tetra")
    domain = surfaces.surface_domain([pair], {"left": mesh, "right": mesh})
    assert domain.n_elements == 8 and domain.support().all()
    assert len(domain.edges()) == 12
    np.testing.assert_array_equal(domain.coordinates()[4:], coords)
    wrong = write_pair(tmp_path, "02", np.ones(5), np.ones(5), space="tetra")
    _raises_one_line("has 4 vertices, the left maps 5", surfaces.surface_domain, [wrong],
                     {"left": mesh, "right": mesh})
    _raises_one_line("one pointset and one triangle array", meshes.load_surface,
                     write_gifti(tmp_path / "not_a.surf.gii", np.ones(4)))


def test_fsaverage5_medial_wall_is_one_medial_region_holding_freesurfers_zero_thickness():
    for hemi, side in (("left", -1), ("right", 1)):
        wall = meshes.fsaverage5_medial_wall(hemi)
        mesh = meshes.fsaverage5_mesh(hemi, "pial")
        assert 800 < wall.sum() < 900
        edges = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]]])
        graph = sparse.coo_matrix((np.ones(len(edges)), tuple(edges.T)),
                                  shape=(N_VERTICES,) * 2).tocsr()
        for part in (wall, ~wall):
            assert csgraph.connected_components(graph[part][:, part], directed=False)[0] == 1
        # nearer the midline than the rest of the hemisphere
        assert side * mesh.coordinates[wall, 0].mean() < side * mesh.coordinates[~wall, 0].mean()
        # FreeSurfer's thickness is 0 only off the cortex: all those vertices are in the wall
        thickness = nib.load(os.path.join(FSAVERAGE5_DIR, f"thick_{hemi}.gii.gz")).darrays[0].data
        assert wall[thickness == 0].all() and (thickness == 0).sum() > 200


def test_vertex_areas_are_a_third_of_the_adjacent_triangles(domain):
    mesh = meshes.fsaverage5_mesh("left")
    ours = meshes.vertex_areas(mesh)
    expected = np.zeros(N_VERTICES)
    for face in mesh.faces[::7]:  # Heron's formula, a seventh of the faces
        a, b, c = (np.linalg.norm(mesh.coordinates[face[i]] - mesh.coordinates[face[j]])
                   for i, j in ((0, 1), (1, 2), (2, 0)))
        s = (a + b + c) / 2
        expected[face] += np.sqrt(max(s * (s - a) * (s - b) * (s - c), 0.0)) / 3
    partial = meshes.vertex_areas(meshes.Mesh(mesh.coordinates, mesh.faces[::7], "part"))
    np.testing.assert_allclose(partial, expected, rtol=1e-9, atol=1e-12)
    assert ours.sum() == pytest.approx(np.linalg.norm(np.cross(
        *(mesh.coordinates[mesh.faces[:, k]] - mesh.coordinates[mesh.faces[:, 0]]
          for k in (1, 2))), axis=1).sum() / 2)
    np.testing.assert_array_equal(domain.vertex_areas()[:N_VERTICES], ours)


def test_mesh_edges_are_every_edge_of_the_faces_once(domain):
    faces = meshes.fsaverage5_mesh("right").faces
    expected = {tuple(sorted((int(f[i]), int(f[(i + 1) % 3])))) for f in faces for i in range(3)}
    edges = meshes.mesh_edges(faces)
    assert {tuple(e) for e in edges} == expected and len(edges) == len(expected) == 30720
    assert len(domain.edges()) == 2 * 30720 and domain.edges().max() == 2 * N_VERTICES - 1


def test_the_mask_is_the_support_where_enough_maps_have_a_value(domain):
    maps = np.ones((3, domain.n_elements))
    maps[0, 5] = 0.0
    maps[1, 7] = np.nan
    maps[:2, 9] = np.nan
    present = (~np.isnan(maps) & (maps != 0)).sum(axis=0)  # zeros missing, as the flag says
    mask = surfaces.element_mask(domain.support(), present, 2)
    wall = np.concatenate([meshes.fsaverage5_medial_wall(h) for h in meshes.HEMISPHERES])
    expected = ~wall
    expected[9] = False
    np.testing.assert_array_equal(mask, expected)
