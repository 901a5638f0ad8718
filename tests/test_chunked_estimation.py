"""Bounded memory: the masked data file, chunked estimation equal to unchunked and nilearn."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.io.images import load_masked_data
from nipype_secondlevel.io.masked_data import (
    VOXEL_BLOCK,
    iter_voxel_chunks,
    voxel_chunk_size,
    write_masked_data,
)
from nipype_secondlevel.stats.glm import fit_ols


@pytest.fixture(scope="module")
def one_sample(simulated, tmp_path_factory):
    """The simulated vertical maps, a one-sample design, a mask and the masked data."""
    base = tmp_path_factory.mktemp("one_sample")
    table = pd.read_csv(simulated.inputs_table, sep="\t")
    paths = list(table[table.condition == "vertical"].sort_values("subject").path)
    design = base / "design.tsv"
    pd.DataFrame({"intercept": np.ones(len(paths))}).to_csv(design, sep="\t", index=False)
    mask = run_in(base / "mask", ifc.GroupMask(in_files=paths)).mask_file
    data = run_in(base / "data", ifc.MaskedData(in_files=paths, mask_file=mask))
    return paths, str(design), mask, data


def test_masked_data_is_one_uncompressed_float32_npy(one_sample):
    paths, _, mask, data = one_sample
    array = np.load(data.data_file, mmap_mode="r")
    assert isinstance(array, np.memmap) and array.dtype == np.float32
    mask_data = nib.load(mask).get_fdata() > 0
    assert array.shape == (len(paths), mask_data.sum()) == (data.n_maps, data.n_voxels)
    np.testing.assert_array_equal(array, load_masked_data(paths, mask_data))
    chunks = list(iter_voxel_chunks(data.data_file, 5000))
    assert [c.start for c, _ in chunks] == list(range(0, data.n_voxels, 5000))
    np.testing.assert_array_equal(np.hstack([y for _, y in chunks]), array)


def test_masked_data_file_is_written_atomically_and_refuses_bad_maps(tmp_path, one_sample):
    paths, _, mask, _ = one_sample
    mask_data = nib.load(mask).get_fdata() > 0
    other = tmp_path / "other_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), other)
    with pytest.raises(ValueError, match="differs from the analysis grid"):
        write_masked_data([paths[0], str(other)], mask_data, None, tmp_path / "d.npy")
    assert list(tmp_path.glob("*.npy")) == [] and list(tmp_path.glob(".*part*")) == []


def test_chunk_size_follows_the_memory_budget():
    assert voxel_chunk_size(16, 1.0) % VOXEL_BLOCK == 0
    assert voxel_chunk_size(2000, 2.0) < voxel_chunk_size(250, 2.0)
    assert voxel_chunk_size(2000, 4.0) >= 2 * voxel_chunk_size(2000, 2.0) - VOXEL_BLOCK
    assert voxel_chunk_size(2000, 2.0) * 2000 * 24 <= 2.0 * 2**30 / 2
    assert voxel_chunk_size(10**6, 0.001) == VOXEL_BLOCK  # at least one block
    assert voxel_chunk_size(10, 100.0, n_voxels=10) == VOXEL_BLOCK  # no more than needed


def test_chunked_estimation_equals_unchunked_and_nilearn(tmp_path, one_sample):
    from nilearn.glm.second_level import SecondLevelModel

    paths, design, mask, data = one_sample
    common = {"design_matrix": design, "mask_file": mask}
    tiny = run_in(tmp_path / "tiny", ifc.EstimateOLS(data_file=data.data_file, mem_gb=0.0001,
                                                     **common))
    big = run_in(tmp_path / "big", ifc.EstimateOLS(data_file=data.data_file, mem_gb=8, **common))
    maps = run_in(tmp_path / "maps", ifc.EstimateOLS(in_files=paths, chunk_size=1, **common))
    assert data.n_voxels > 10 * VOXEL_BLOCK  # so that "tiny" ran many chunks
    for name in ("beta", "residual_variance"):
        reference = nib.load(getattr(big, name)).get_fdata()
        # Bit for bit: the memory budget changes how many blocks are held, not the sums.
        np.testing.assert_array_equal(nib.load(getattr(tiny, name)).get_fdata(), reference)
        np.testing.assert_array_equal(nib.load(getattr(maps, name)).get_fdata(), reference)
    # And the same numbers as one fit of all voxels at once.
    mask_data = nib.load(mask).get_fdata() > 0
    whole = fit_ols(np.ones((len(paths), 1)), load_masked_data(paths, mask_data))
    np.testing.assert_allclose(nib.load(big.beta).get_fdata()[mask_data][:, 0], whole.beta[0],
                               rtol=1e-12, atol=1e-12)
    contrast = run_in(tmp_path / "c", ifc.Contrast(
        beta=tiny.beta, residual_variance=tiny.residual_variance, dof=tiny.dof,
        design_matrix=design, mask_file=mask, weights=[[1.0]], contrast_name="mean"))
    model = SecondLevelModel(mask_img=mask).fit(
        paths, design_matrix=pd.read_csv(design, sep="\t"))
    expected = model.compute_contrast("intercept", output_type="z_score").get_fdata()
    z = nib.load(contrast.z_map).get_fdata()
    assert np.abs(z[mask_data] - expected[mask_data]).max() <= 1e-5


def test_estimate_takes_the_data_file_or_the_maps_not_both(tmp_path, one_sample):
    paths, _, mask, data = one_sample
    with pytest.raises(OSError, match="mutually exclusive"):
        ifc.EstimateOLS(data_file=data.data_file, in_files=paths)
    short = tmp_path / "short.tsv"
    pd.DataFrame({"intercept": np.ones(3)}).to_csv(short, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"has 3 rows but the data file .* has 16 rows"):
        run_in(tmp_path, ifc.EstimateOLS(data_file=data.data_file, design_matrix=str(short),
                                         mask_file=mask))


def test_mem_gb_is_not_part_of_the_cache_key():
    a, b = ifc.EstimateOLS(mem_gb=1.0), ifc.EstimateOLS(mem_gb=2.0, chunk_size=7)
    assert a.inputs.get_hashval()[1] == b.inputs.get_hashval()[1]
