"""The maps read in blocks by parallel jobs give the mask and the masked data file of a
single read."""

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from group_data import make_group_table

from nipype_secondlevel.cli import main
from nipype_secondlevel.io.masked_data import stack_masked_data, write_masked_data
from nipype_secondlevel.io.masks import merge_summaries, summarize_maps
from nipype_secondlevel.workflows import group_analysis


def reference_file_bytes(table, mask_file):
    """The (n_maps, n_voxels) float32 masked data of the table's maps, as np.save writes it."""
    rows = pd.read_csv(table, sep="\t")
    mask = nib.load(mask_file).get_fdata() > 0
    data = np.stack([nib.load(table.parent / p).get_fdata(dtype=np.float32)[mask]
                     for p in rows["path"]])
    buffer = io.BytesIO()
    np.save(buffer, data)
    return buffer.getvalue()


def test_blocks_read_by_multiproc_stack_to_the_single_read_file(tmp_path, monkeypatch):
    # 10 maps, the mask's pass over them in blocks of 4 (three jobs, the last of 2 maps),
    # which also keeps their values: the masked data are taken from them, the maps not
    # read again. -0.0, NaN and values beyond float32 inside the mask keep their bits.
    monkeypatch.setattr(group_analysis, "MAPS_PER_SUMMARY_BLOCK", 4)
    table = make_group_table(tmp_path / "data", n_subjects=10, conditions=("a",))
    odd = table.parent / pd.read_csv(table, sep="\t")["path"][9]
    img = nib.load(odd)
    data = img.get_fdata()
    data[5, 6, 5], data[5, 5, 5], data[4, 6, 5] = -0.0, np.nan, 1e-46  # 1e-46: float32's 0
    nib.save(nib.Nifti1Image(data, img.affine), odd)  # float64 on disk
    args = ["run", "--inputs", str(table), "--design", "one-sample", "--out-dir",
            str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--quiet",
            "--plugin", "MultiProc", "--n-procs", "2"]
    assert main(args) == 0
    analysis = tmp_path / "work" / "group_wf" / "group_analysis_wf"
    assert not (analysis / "masked_data").exists()
    summaries = sorted((analysis / "summarize_maps" / "mapflow").glob("_summarize*/*.npz"))
    assert len(summaries) == 3
    # the mask nilearn's SecondLevelModel computes from all the maps at once
    from nilearn.glm.second_level import SecondLevelModel

    rows = pd.read_csv(table, sep="\t")
    paths = [str(table.parent / p) for p in rows["path"]]
    model = SecondLevelModel().fit(paths, design_matrix=pd.DataFrame({"i": np.ones(10)}))
    ours = nib.load(tmp_path / "out" / "desc-group_mask.nii.gz").get_fdata() > 0
    assert np.array_equal(ours, model.masker_.mask_img_.get_fdata() > 0)
    assert ours[5, 6, 5] and ours[4, 6, 5]
    stacked = analysis / "stack_masked_data" / "masked_data.npy"
    expected = reference_file_bytes(table, tmp_path / "out" / "desc-group_mask.nii.gz")
    assert stacked.read_bytes() == expected
    # Smoothed maps are read in blocks after the mask (MaskedData), which stack to the
    # same bytes.
    blocks = [write_masked_data(paths[a:b], ours, model.masker_.mask_img_.affine,
                                tmp_path / f"block{a}.npy") for a, b in ((0, 3), (3, 9), (9, 10))]
    assert Path(stack_masked_data(blocks, tmp_path / "stacked.npy")).read_bytes() == expected


def test_summaries_of_blocks_merge_to_the_counts_of_all_the_maps(tmp_path):
    table = make_group_table(tmp_path / "data", n_subjects=7, conditions=("a",),
                             variances=True)
    rows = pd.read_csv(table, sep="\t")
    maps = [str(table.parent / p) for p in rows["path"]]
    variances = [str(table.parent / p) for p in rows["variance_path"]]
    # a NaN voxel in the sixth variance map (missing), a zero (invalid) voxel in the second
    # map, an infinite one in the fourth variance map
    for path, voxel, value in ((variances[5], (3, 4, 5), np.nan), (maps[1], (2, 2, 2), 0.0),
                               (variances[3], (1, 1, 1), np.inf)):
        img = nib.load(path)
        data = img.get_fdata()
        data[voxel] = value
        nib.save(nib.Nifti1Image(data.astype(np.float32), img.affine), path)
    merged = merge_summaries([summarize_maps(maps[a:b], variances[a:b])
                              for a, b in ((0, 3), (3, 6), (6, 7))])
    effects = np.stack([nib.load(p).get_fdata() for p in maps])
    noise = np.stack([nib.load(p).get_fdata() for p in variances])
    present = ~np.isnan(effects) & ~np.isnan(noise)
    assert merged.n_maps == 7
    np.testing.assert_allclose(merged.total, np.where(present, effects, 0).sum(0), rtol=1e-12)
    assert np.array_equal(merged.valid, ((effects != 0) & np.isfinite(effects)).sum(0))
    assert np.array_equal(merged.present, present.sum(0))
    assert merged.present[3, 4, 5] == 6
    assert np.array_equal(merged.non_finite, np.isinf(noise).any(0))
    assert merged.non_finite.sum() == 1 and merged.example == variances[3]
