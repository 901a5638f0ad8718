"""The maps read in blocks by parallel jobs give the masked data file of a single read."""

import io

import nibabel as nib
import numpy as np
import pandas as pd
from group_data import make_group_table

from nipype_secondlevel.cli import main
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
    # 10 maps in blocks of 3: four jobs, the last one a single map.
    monkeypatch.setattr(group_analysis, "MAPS_PER_READ_BLOCK", 3)
    table = make_group_table(tmp_path / "data", n_subjects=10, conditions=("a",))
    args = ["run", "--inputs", str(table), "--design", "one-sample", "--out-dir",
            str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--quiet",
            "--plugin", "MultiProc", "--n-procs", "2"]
    assert main(args) == 0
    analysis = tmp_path / "work" / "group_wf" / "group_analysis_wf"
    blocks = sorted((analysis / "masked_data" / "mapflow").glob("_masked_data*/masked_data.npy"))
    assert [np.load(b, mmap_mode="r").shape[0] for b in blocks] == [3, 3, 3, 1]
    stacked = analysis / "stack_masked_data" / "masked_data.npy"
    expected = reference_file_bytes(table, tmp_path / "out" / "desc-group_mask.nii.gz")
    assert stacked.read_bytes() == expected
