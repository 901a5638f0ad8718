"""The example scripts in workflows/: each has --help (starting nothing), and the
first-level-to-group example gives the one-sample numbers of a plain scipy test."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats

SCRIPTS = sorted(p.name for p in (ROOT / "workflows").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_example_has_help_and_starts_nothing(tmp_path, script):
    env = {"PATH": "/usr/bin:/bin", "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, str(ROOT / "workflows" / script), "--help"],
                            cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}") and "--work-dir" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no work folder, no download


def test_first_level_to_group_equals_a_one_sample_t_test(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "workflows" / "first_level_to_group.py"),
         "--n-perm", "200"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "results" / "first_level_to_group"
    assert result.stdout.strip().endswith(f"Results in {out.relative_to(tmp_path)}")
    assert "nipype.workflow INFO" not in result.stdout + result.stderr  # one line per node
    assert "] first_level_to_group.sink: done in" in result.stderr
    # The reference: the simulated maps, differenced and tested with scipy.
    work = tmp_path / "work" / "first_level_to_group"
    rows = pd.read_csv(work / "simulate" / "inputs.tsv", sep="\t")
    data = {(r.subject, r.condition): nib.load(r.path).get_fdata() for r in rows.itertuples()}
    subjects = sorted(set(rows["subject"]))
    differences = np.stack([data[s, "vertical"] - data[s, "horizontal"] for s in subjects])
    z = nib.load(out / "contrast-intercept_stat-z_statmap.nii.gz").get_fdata()
    inside = z != 0
    assert inside.sum() > 10_000
    t = stats.ttest_1samp(differences[:, inside], 0.0).statistic
    reference = np.sign(t) * stats.norm.isf(stats.t.sf(np.abs(t), len(subjects) - 1))
    np.testing.assert_allclose(z[inside], reference, rtol=1e-5, atol=1e-5)
    # The FWE-corrected map keeps only voxels far out in the z distribution.
    corrected = nib.load(out / "contrast-intercept_stat-z_desc-maxTcorrected_statmap.nii.gz")
    kept = corrected.get_fdata() != 0
    assert 0 < kept.sum() < inside.sum() and np.abs(z[kept]).min() > 3.5
