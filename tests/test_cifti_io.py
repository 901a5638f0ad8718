"""The CIFTI domain: dscalar maps in and out with their brain models, grayordinate
adjacency and geometry, the one-line refusals; against nibabel and loops written here."""

import itertools

import nibabel as nib
import numpy as np
import pytest
from surface_data import AFFINE, cifti_layout, write_cifti

from nipype_secondlevel.io import cifti, meshes
from nipype_secondlevel.io.errors import InputError


@pytest.fixture(scope="module")
def layout():
    return cifti_layout()


@pytest.fixture(scope="module")
def fsaverage5():
    return {hemi: meshes.fsaverage5_mesh(hemi) for hemi in meshes.HEMISPHERES}


def test_a_cifti_map_round_trips_with_its_brain_models(tmp_path, layout, fsaverage5):
    values = np.random.default_rng(0).standard_normal(len(layout)).astype(np.float32)
    path = write_cifti(tmp_path / "sub-01_stat-effect.dscalar.nii", values, layout)
    series = write_cifti(tmp_path / "sub-02_bold.dtseries.nii", values, layout, series=True)
    domain = cifti.cifti_domain([path, series], fsaverage5)
    np.testing.assert_array_equal(domain.read(path), values)
    out = tmp_path / "out"
    out.mkdir()
    written = domain.write(values, out, "contrast-a_stat-z_statmap", "z of a")
    img = nib.load(written)
    assert written.endswith("contrast-a_stat-z_statmap.dscalar.nii")
    assert img.nifti_header.get_intent()[0] == "ConnDenseScalar"
    assert img.header.get_axis(1) == layout
    assert list(img.header.get_axis(0).name) == ["z of a"]
    np.testing.assert_array_equal(img.get_fdata()[0], values)
    assert domain.describe()["Structures"] == {
        "CORTEX_LEFT": 2561, "CORTEX_RIGHT": 1707, "THALAMUS_LEFT": 24, "PUTAMEN_RIGHT": 3}


def test_bad_cifti_inputs_are_refused_in_one_line(tmp_path, layout, fsaverage5):
    values = np.zeros((1, len(layout)))
    good = write_cifti(tmp_path / "a.dscalar.nii", values, layout)
    other = layout[:-3]
    cases = {
        "other layout": (write_cifti(tmp_path / "b.dscalar.nii", values[:, :-3], other),
                         "are not those of"),
        "several maps": (write_cifti(tmp_path / "c.dtseries.nii", np.zeros((3, len(layout))),
                                     layout, series=True), "holds 3 maps where one"),
        "missing": (tmp_path / "none.dscalar.nii", "file not found"),
    }
    label = nib.cifti2.LabelAxis(["l"], [{0: ("none", (0, 0, 0, 0))}])
    img = nib.Cifti2Image(values.astype(np.float32), header=(label, layout))
    img.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_LABELS")
    nib.save(img, tmp_path / "d.dlabel.nii")
    cases["labels"] = (tmp_path / "d.dlabel.nii", "LabelAxis x BrainModelAxis, not a dense")
    for path, match in cases.values():
        with pytest.raises(InputError, match=match) as info:
            cifti.cifti_domain([good, path])
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="has 10242 vertices, the left cortex of .* 2562"):
        cifti.CiftiDomain(cifti_layout_with(2562), fsaverage5)
    with pytest.raises(InputError, match="need the left surface"):
        cifti.CiftiDomain(layout).edges()


def cifti_layout_with(n_vertices):
    return nib.cifti2.BrainModelAxis.from_mask(np.ones(n_vertices, bool), name="CortexLeft")


def test_grayordinate_neighbours_are_mesh_edges_and_face_sharing_voxels(layout, fsaverage5):
    domain = cifti.CiftiDomain(layout, fsaverage5)
    edges = {tuple(e) for e in domain.edges()}
    expected = set()
    element = {}
    for k, (name, vertex) in enumerate(zip(layout.name, layout.vertex)):
        if vertex >= 0:
            element[(name, int(vertex))] = k
    for hemi, structure in cifti.CORTEX.items():
        for face in fsaverage5[hemi].faces:
            for a, b in itertools.combinations(face, 2):
                ka, kb = element.get((structure, int(a))), element.get((structure, int(b)))
                if ka is not None and kb is not None:
                    expected.add((min(ka, kb), max(ka, kb)))
    voxels = np.flatnonzero(layout.voxel[:, 0] >= 0)
    for a, b in itertools.combinations(voxels, 2):
        if np.abs(layout.voxel[a] - layout.voxel[b]).sum() == 1:
            expected.add((a, b))
    assert edges == expected
    assert len(domain.edges()) == len(expected)  # every pair once


def test_grayordinate_geometry(layout, fsaverage5):
    domain = cifti.CiftiDomain(layout, fsaverage5)
    voxels = ~domain.is_vertex
    ijk = layout.voxel[voxels]
    np.testing.assert_allclose(domain.coordinates()[voxels],
                               (AFFINE @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3])
    left = layout.name == cifti.CORTEX["left"]
    np.testing.assert_array_equal(domain.coordinates()[left],
                                  fsaverage5["left"].coordinates[layout.vertex[left]])
    np.testing.assert_array_equal(domain.vertex_areas()[left],
                                  meshes.vertex_areas(fsaverage5["left"])[layout.vertex[left]])
    assert (domain.vertex_areas()[voxels] == 0).all() and domain.voxel_volume == pytest.approx(8)
    assert domain.local_index[voxels][0] == ",".join(map(str, ijk[0]))
    assert set(domain.structures) == {"CORTEX_LEFT", "CORTEX_RIGHT", "THALAMUS_LEFT",
                                      "PUTAMEN_RIGHT"}
    maps = domain.surface_maps(np.arange(len(layout), dtype=float))
    np.testing.assert_array_equal(maps["left"][1][layout.vertex[left]], np.flatnonzero(left))
    assert maps["left"][1][1] == 0  # vertex 1 is not in the layout
