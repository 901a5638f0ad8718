"""Maps in another orientation or on another grid change neither the mask nor the z map."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import make_group_table
from scipy.ndimage import map_coordinates

from nipype_secondlevel.cli import main
from nipype_secondlevel.io.grids import GridWarning, to_reference_grid

Z = "contrast-intercept_stat-z_statmap.nii.gz"
THRESHOLDED = "contrast-intercept_stat-z_desc-thresholded_statmap.nii.gz"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("grids") / "data", n_subjects=8,
                            conditions=("a",))


def flip_x(data, affine):
    """The same image stored with x reversed: data[::-1] and the matching affine."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, data.shape[0] - 1
    return data[::-1], affine @ flip


def swap_xy_and_pad(data, affine):
    """The same voxels with x and y swapped and a field of view padded by whole voxels."""
    swap = np.eye(4)[[1, 0, 2, 3]]
    data, affine = np.transpose(data, (1, 0, 2)), affine @ swap
    shift = np.eye(4)
    shift[:3, 3] = [-2, 0, -1]
    return np.pad(data, ((2, 1), (0, 3), (1, 0))), affine @ shift


def upsample(data, affine):
    """A 1.5 mm copy (linear interpolation; its even voxels are the 3 mm voxels)."""
    shape = [2 * s - 1 for s in data.shape]
    coords = np.meshgrid(*[np.arange(s) / 2 for s in shape], indexing="ij")
    return map_coordinates(data, coords, order=1), affine @ np.diag([0.5, 0.5, 0.5, 1.0])


def copies(table, folder, changes):
    """The inputs table with the map of row i stored by ``changes[i]``."""
    folder.mkdir()
    frame = pd.read_csv(table, sep="\t")
    frame["path"] = [str(table.parent / p) for p in frame["path"]]
    for i, change in changes.items():
        img = nib.load(frame.loc[i, "path"])
        data, affine = change(img.get_fdata(), img.affine)
        path = folder / f"map{i}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
        frame.loc[i, "path"] = str(path)
    frame.to_csv(folder / "inputs.tsv", sep="\t", index=False)
    return folder / "inputs.tsv"


def analyse(folder, inputs):
    code = main(["run", "--inputs", str(inputs), "--out-dir", str(folder / "out"),
                 "--work-dir", str(folder / "work"), "--correction", "bonferroni",
                 "--alpha", "0.05", "--quiet"])
    assert code == 0
    out = folder / "out"
    return {name: nib.load(out / name) for name in ("desc-group_mask.nii.gz", Z, THRESHOLDED)}


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory):
    return analyse(tmp_path_factory.mktemp("reference"), table)


def test_maps_stored_otherwise_give_the_same_mask_and_z(tmp_path, table, reference):
    """Maps with x flipped, x and y swapped in a padded field of view, or on a 1.5 mm grid
    (the first map, the reference grid, as it is): the same mask and z, bit for bit."""
    inputs = copies(table, tmp_path / "maps", {1: flip_x, 3: flip_x, 5: swap_xy_and_pad,
                                               6: upsample, 7: upsample})
    with pytest.warns(GridWarning, match=r"5 map\(s\) .* \(3 reordered exactly .* 2 "
                      "interpolated"):
        result = analyse(tmp_path, inputs)
    for name, img in reference.items():
        np.testing.assert_array_equal(result[name].get_fdata(), img.get_fdata(), err_msg=name)
    assert result[Z].get_fdata().any() and result[THRESHOLDED].get_fdata().any()


def test_every_map_flipped_gives_the_flipped_results(tmp_path, table, reference):
    """All maps (so the analysis grid) flipped: the results are the flipped ones, exactly."""
    result = analyse(tmp_path, copies(table, tmp_path / "maps", dict.fromkeys(range(8), flip_x)))
    for name, img in reference.items():
        np.testing.assert_array_equal(result[name].get_fdata()[::-1], img.get_fdata(),
                                      err_msg=name)
        np.testing.assert_allclose(result[name].affine, flip_x(img.get_fdata(), img.affine)[1])


def test_interpolation_is_zero_where_the_map_has_no_value():
    """On a grid shifted by part of a voxel: nilearn's spline values inside the support,
    exactly 0 outside it (nilearn alone leaves tiny values there), NaN near a NaN."""
    from nilearn.image import resample_to_img

    rng = np.random.default_rng(0)
    data = np.zeros((12, 12, 12))
    data[3:9, 3:9, 3:9] = rng.normal(5, 1, (6, 6, 6))
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    shifted = affine.copy()
    shifted[:3, 3] = [1.0, 0.5, -1.2]
    reference = nib.Nifti1Image(np.zeros((12, 12, 12), np.float32), shifted)
    values, exact = to_reference_grid(data, affine, reference)
    spline = resample_to_img(nib.Nifti1Image(data, affine), reference,
                             interpolation="continuous", force_resample=True,
                             copy_header=True).get_fdata()
    nearest = resample_to_img(nib.Nifti1Image((data != 0).astype(np.float32), affine),
                              reference, interpolation="nearest", force_resample=True,
                              copy_header=True).get_fdata() > 0.5
    assert not exact
    assert np.count_nonzero(spline[~nearest]) > 100  # what the mask used to see
    assert np.all(values[~nearest] == 0)
    np.testing.assert_allclose(values[nearest], spline[nearest], rtol=1e-6)
    data[5, 5, 5] = np.nan
    values, _ = to_reference_grid(data, affine, reference)
    assert 0 < np.isnan(values).sum() <= 8


def test_single_volume_4d_maps_are_moved_as_3d_maps(tmp_path):
    """A (x, y, z, 1) map off the reference grid, flipped or shifted, is moved as its 3D
    volume: reordered exactly (compared with numpy's flip) or interpolated, never 4D."""
    from nipype_secondlevel.io.grids import resample_to_reference

    rng = np.random.default_rng(0)
    volume = rng.uniform(1, 2, (5, 6, 7)).astype(np.float32)
    reference = nib.Nifti1Image(np.ones((5, 6, 7), np.float32), np.diag([3.0, 3, 3, 1]))
    flipped = np.diag([-3.0, 3, 3, 1])
    flipped[0, 3] = 12.0
    shifted = np.diag([3.0, 3, 3, 1])
    shifted[0, 3] = 1.0
    paths = []
    for name, data, affine in (("flipped", volume[::-1], flipped), ("shifted", volume, shifted)):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data[..., None], affine), paths[-1])
    out, moved, interpolated = resample_to_reference(paths, reference, tmp_path, "r")
    assert moved == [str(p) for p in paths] and interpolated == [str(paths[1])]
    assert [nib.load(p).shape for p in out] == [(5, 6, 7), (5, 6, 7)]
    np.testing.assert_array_equal(nib.load(out[0]).get_fdata(), volume)
