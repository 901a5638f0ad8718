"""FSL FEAT and SPM first-level folders, laid out as those tools write them, as inputs
tables; the missing-value rule on their maps (0 in cope and varcope, NaN in con)."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_bids import one_line_error

from nipype_secondlevel.design.fsl import feat_inputs_table
from nipype_secondlevel.design.spm import NO_VARIANCE, spm_inputs_table
from nipype_secondlevel.design.tables import read_inputs_table
from nipype_secondlevel.io.tables import write_inputs_table
from nipype_secondlevel.stats.missing import missing_values

NATIVE = (8, 9, 7), np.diag([3.5, 3.5, 4.0, 1.0])
STANDARD = (10, 12, 10), np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72],
                                    [0, 0, 0, 1]])


def save(path, data, grid, dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), grid[1]), path)
    return path


def subject_mask(shape, s):
    """The subject's own analysis mask: a box that shrinks with the subject."""
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1 - s % 3, 1:-1] = True
    return mask


def write_feat(folder, s, registered=True, in_standard=False, copes=2):
    """A first-level FEAT folder: stats/ (native grid, or standard with ``in_standard``),
    reg/standard, and reg_standard/ as featregapply writes it (``registered``)."""
    rng = np.random.default_rng(s)
    stats_grid = STANDARD if in_standard else NATIVE
    save(folder / "reg" / "standard.nii.gz", rng.uniform(0, 1, STANDARD[0]), STANDARD)
    (folder / "design.con").parent.mkdir(parents=True, exist_ok=True)
    (folder / "design.con").write_text("/ContrastName1\tfaces\n/NumContrasts\t2\n")
    for stats_dir, grid in [(folder / "stats", stats_grid)] + (
            [(folder / "reg_standard" / "stats", STANDARD)] if registered else []):
        mask = subject_mask(grid[0], s)
        for c in range(1, copes + 1):
            save(stats_dir / f"cope{c}.nii.gz", np.where(mask, rng.normal(size=grid[0]), 0),
                 grid)
            save(stats_dir / f"varcope{c}.nii.gz",
                 np.where(mask, rng.uniform(0.1, 1, grid[0]), 0), grid)
            save(stats_dir / f"tdof_t{c}.nii.gz", np.where(mask, 180.0, 0), grid)
    if registered:
        save(folder / "reg_standard" / "mask.nii.gz", subject_mask(STANDARD[0], s), STANDARD,
             np.uint8)
    return folder


def test_feat_folders_give_their_standard_space_maps(tmp_path):
    folders = [write_feat(tmp_path / f"sub-{s:02d}" / "run1.feat", s) for s in range(1, 5)]
    table = feat_inputs_table(str(tmp_path / "sub-*" / "*.feat"), cope=2)
    assert list(table.columns) == ["subject", "condition", "path", "variance_path"]
    assert list(table["subject"]) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert set(table["condition"]) == {"cope2"}
    for folder, row in zip(folders, table.itertuples()):
        stats = folder / "reg_standard" / "stats"
        assert (row.path, row.variance_path) == (
            str(stats / "cope2.nii.gz"), str(stats / "varcope2.nii.gz"))
    # the table is an inputs table the package reads, variances included
    path = write_inputs_table(table, tmp_path / "inputs.tsv", {"FEATDirs": "sub-*/*.feat"})
    again = read_inputs_table(path, require_condition=False, variances=True)
    pd.testing.assert_frame_equal(again[["subject", "path", "variance_path"]],
                                  table[["subject", "path", "variance_path"]])
    # outside each subject's mask cope and varcope are 0: missing, and only there
    effects = np.stack([nib.load(p).get_fdata().ravel() for p in table["path"]])
    variances = np.stack([nib.load(p).get_fdata().ravel() for p in table["variance_path"]])
    masks = np.stack([subject_mask(STANDARD[0], s).ravel() for s in range(1, 5)])
    np.testing.assert_array_equal(missing_values(effects, variances), ~masks)


def test_feat_in_standard_space_and_how_to_register(tmp_path):
    write_feat(tmp_path / "S1.feat", 1, registered=False, in_standard=True)
    write_feat(tmp_path / "S2.feat", 2, registered=False, in_standard=True)
    table = feat_inputs_table([tmp_path / "S1.feat", tmp_path / "S2.feat"])
    assert list(table["subject"]) == ["S1", "S2"]
    assert table["path"][0] == str(tmp_path / "S1.feat" / "stats" / "cope1.nii.gz")
    write_feat(tmp_path / "S3.feat", 3, registered=False)
    one_line_error(r"FEAT folder .*S3.feat: has no standard-space cope1 \(reg_standard/stats/"
                   r"cope1.nii.gz\) .*: run `featregapply .*S3.feat` \(FSL; it needs FEAT's "
                   r"registration\) to write them$", feat_inputs_table, str(tmp_path / "*.feat"))
    one_line_error(r"FEAT folder .*S1.feat: has no stats/cope3 \(it has cope1, cope2\)",
                   feat_inputs_table, tmp_path / "S1.feat", cope=3)
    one_line_error(r"FEAT folders .*nothing\*: no folder matches", feat_inputs_table,
                   str(tmp_path / "nothing*"))


def test_feat_two_runs_of_one_subject(tmp_path):
    for run in (1, 2):
        write_feat(tmp_path / "sub-01" / f"run{run}.feat", run)
    one_line_error(r"FEAT folders .*run1.feat and .*run2.feat: both give subject sub-01; give "
                   r"one FEAT folder per subject \(combine runs with a fixed-effects FEAT "
                   r"first\)$", feat_inputs_table, str(tmp_path / "sub-*" / "*.feat"))
    (tmp_path / "sub-01" / "run2.feat" / "reg_standard" / "stats" / "varcope1.nii.gz").unlink()
    one_line_error(r"run2.feat: has cope1 but no reg_standard/stats/varcope1.nii.gz",
                   feat_inputs_table, tmp_path / "sub-01" / "run2.feat")


def write_spm(folder, s, contrasts=("t", "t", "F")):
    """An SPM12 first-level folder: SPM.mat, mask, con/spmT of t contrasts, ess/spmF of F
    contrasts, NaN outside the mask."""
    rng = np.random.default_rng(s)
    folder.mkdir(parents=True)
    (folder / "SPM.mat").write_bytes(b"MATLAB 5.0 MAT-file")  # not read
    mask = subject_mask(STANDARD[0], s)
    save(folder / "mask.nii", mask, STANDARD, np.uint8)
    for n, kind in enumerate(contrasts, start=1):
        first, second = ("con", "spmT") if kind == "t" else ("ess", "spmF")
        for stem in (first, second):
            save(folder / f"{stem}_{n:04d}.nii", np.where(mask, rng.normal(size=STANDARD[0]),
                                                         np.nan), STANDARD)
    return folder


def test_spm_folders_give_their_con_images(tmp_path):
    for s in range(1, 4):
        write_spm(tmp_path / f"sub-{s:02d}" / "func" / "spm", s)
    table = spm_inputs_table(str(tmp_path / "sub-*" / "func" / "spm"), con=2)
    assert list(table.columns) == ["subject", "condition", "path"]
    assert list(table["subject"]) == ["sub-01", "sub-02", "sub-03"]
    assert list(table["condition"]) == ["con0002"] * 3
    assert table["path"][1] == str(tmp_path / "sub-02" / "func" / "spm" / "con_0002.nii")
    effects = np.stack([nib.load(p).get_fdata().ravel() for p in table["path"]])
    masks = np.stack([subject_mask(STANDARD[0], s).ravel() for s in range(1, 4)])
    np.testing.assert_array_equal(missing_values(effects), ~masks)  # NaN outside the mask
    path = write_inputs_table(table, tmp_path / "inputs.tsv", {"SPMDirs": "sub-*/func/spm"})
    assert len(read_inputs_table(path, require_condition=False)) == 3


def test_spm_errors_say_why(tmp_path):
    for name in ("S01", "S02"):
        write_spm(tmp_path / name / "stats", int(name[1:]))
    table = spm_inputs_table([tmp_path / "S01" / "stats", tmp_path / "S02" / "stats"])
    assert list(table["subject"]) == ["S01", "S02"]  # the folder names that differ
    message = one_line_error(r"SPM folders .*: SPM writes no variance of its contrasts",
                             spm_inputs_table, str(tmp_path / "S*" / "stats"), variances=True)
    assert message.endswith(NO_VARIANCE) and "--estimation ols" in message
    one_line_error(r"SPM folder .*S01/stats: contrast 3 is an F contrast \(ess_0003\); a group "
                   r"analysis takes the con image of a t contrast$", spm_inputs_table,
                   str(tmp_path / "S*" / "stats"), con=3)
    one_line_error(r"SPM folder .*S01/stats: has no con_0004 \(it has con_0001, con_0002\)$",
                   spm_inputs_table, str(tmp_path / "S*" / "stats"), con=4)
    (tmp_path / "empty").mkdir()
    one_line_error(r"has no con_0001 nor SPM.mat: is it an SPM first-level folder\?",
                   spm_inputs_table, tmp_path / "empty")


@pytest.mark.parametrize("paths, labels", [
    (["/d/sub-01/ses-1/run1.feat", "/d/sub-02/ses-1/run1.feat"], ["sub-01", "sub-02"]),
    (["/d/sub-01.feat", "/d/sub-02.feat"], ["sub-01", "sub-02"]),
    (["/a/S1/x/stats", "/a/S2/x/stats"], ["S1", "S2"]),
    (["/a/b/only.feat"], ["only"]),
])
def test_subject_labels_from_folder_names(paths, labels):
    from pathlib import Path

    from nipype_secondlevel.design.first_level_folders import subject_labels

    assert subject_labels([Path(p) for p in paths], suffix=".feat") == labels
