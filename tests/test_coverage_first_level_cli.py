"""run --feat-dirs / --spm-dirs: first-level folders laid out as FEAT and SPM write them
(0 in cope and varcope, NaN in con outside each subject's mask), each voxel analysed
with the subjects that have a value there (scipy's one-sample t on them), the inputs
table in the results folder; SPM maps with mixed effects refused in one line."""

import re
import shlex

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats
from test_first_level_folders import STANDARD, save, write_feat, write_spm

from nipype_secondlevel.cli import main
from nipype_secondlevel.design.spm import NO_VARIANCE

SUBJECTS = range(1, 7)


def folders(tmp_path, kind):
    for s in SUBJECTS:
        if kind == "feat":
            write_feat(tmp_path / f"sub-{s:02d}" / "run1.feat", s, copes=1)
        else:
            write_spm(tmp_path / f"sub-{s:02d}" / "spm", s, contrasts=("t",))
    return ["--spm-dirs", str(tmp_path / "sub-*" / "spm"), "--con", "1"]


def readme_command():
    """The command of the README's section on per-subject coverage, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Per-subject coverage"):]
    section = section[:section.index("\n## ", 1)]
    return shlex.split(re.findall(r"```bash\n(.*?)```", section, re.DOTALL)[0])


@pytest.mark.parametrize("kind", ["feat", "spm"])
def test_first_level_folders_each_voxel_with_its_subjects(tmp_path, kind, monkeypatch):
    """FEAT: the README's command as written; SPM: with a mask of every voxel."""
    given = folders(tmp_path, kind)
    monkeypatch.chdir(tmp_path)
    if kind == "feat":
        command = readme_command()
        assert command[:3] == ["nipype-secondlevel", "run", "--feat-dirs"]
        out = tmp_path / "results" / "feat"
    else:
        mask = save(tmp_path / "all.nii.gz", np.ones(STANDARD[0]), STANDARD, np.uint8)
        out = tmp_path / "out"
        command = ["nipype-secondlevel", "run", *given, "--mask", str(mask), "--out-dir",
                   str(out), "--atlas", "none"]
    with pytest.warns(UserWarning):  # voxels with fewer than 3 subjects left out
        assert main(command[1:] + ["--quiet"]) == 0
    table = pd.read_csv(out / "inputs.tsv", sep="\t")
    assert list(table["subject"]) == [f"sub-{s:02d}" for s in SUBJECTS]
    effects = np.stack([nib.load(p).get_fdata() for p in table["path"]])
    if kind == "feat":
        variances = np.stack([nib.load(p).get_fdata() for p in table["variance_path"]])
        present = ~((effects == 0) & (variances == 0))
    else:
        present = ~np.isnan(effects)
    n = present.sum(axis=0)
    t = nib.load(out / "contrast-intercept_stat-t_statmap.nii.gz").get_fdata()
    counts = nib.load(out / "stat-n_desc-coverage_statmap.nii.gz").get_fdata()
    analysed = nib.load(out / "desc-group_mask.nii.gz").get_fdata() > 0
    assert (n[analysed] >= 3).all() and len(set(n[analysed])) >= 2
    if kind == "spm":
        assert np.array_equal(analysed, n >= 3)
    assert np.array_equal(counts[analysed], n[analysed])
    for voxel in zip(*np.nonzero(analysed)):
        expected = stats.ttest_1samp(effects[:, *voxel][present[:, *voxel]], 0).statistic
        np.testing.assert_allclose(t[voxel], expected, rtol=1e-4)


def test_spm_folders_refuse_mixed_effects(tmp_path, capsys):
    given = folders(tmp_path, "spm")
    assert main(["run", *given, "--estimation", "mixed", "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nipype-secondlevel: error: SPM folders ")
    assert err[0].endswith(NO_VARIANCE) and not (tmp_path / "out").exists()
