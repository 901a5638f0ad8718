"""Design options through the command line: --groups, --no-center-covariates,
--first-level-dof, --version, each against numpy or scipy."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import make_group_table
from scipy import stats

from nipype_secondlevel import __version__
from nipype_secondlevel.cli import main


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("options") / "data", n_subjects=8,
                            variances=True)


def run(tmp_path, *args):
    out = tmp_path / "out"
    assert main(["run", "--out-dir", str(out), "--work-dir", str(tmp_path / "work"),
                 "--mask-strategy", "coverage", "--quiet", *args]) == 0
    return out


def rows_of(table, condition="a"):
    rows = pd.read_csv(table, sep="\t")
    rows = rows[rows["condition"] == condition].reset_index(drop=True)
    data = np.stack([nib.load(table.parent / p).get_fdata() for p in rows["path"]])
    return rows, data


def statmap(out, label, stat):
    return nib.load(out / f"contrast-{label}_stat-{stat}_statmap.nii.gz").get_fdata()


def test_version_names_the_package(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"nipype-secondlevel {__version__}"


def test_groups_give_the_column_order(tmp_path, table):
    out = run(tmp_path, "--inputs", str(table), "--design", "two-sample", "--conditions", "a",
              "--groups", "patients", "controls", "--contrast", "patients - controls")
    design = pd.read_csv(out / "design.tsv", sep="\t")
    assert [c for c in design.columns if c in ("patients", "controls")] == [
        "patients", "controls"]  # sorted would be controls first
    rows, data = rows_of(table)
    patients = (rows["group"] == "patients").to_numpy()
    effect = statmap(out, "patientsMinusControls", "effect")
    inside = effect != 0
    np.testing.assert_allclose(
        effect[inside], (data[patients].mean(0) - data[~patients].mean(0))[inside], atol=1e-5)


@pytest.mark.parametrize("center", [True, False])
def test_covariates_centred_or_not(tmp_path, table, center):
    options = [] if center else ["--no-center-covariates"]
    out = run(tmp_path, "--inputs", str(table), "--design", "one-sample", "--conditions", "a",
              "--covariates", "age", "--contrast", "intercept", *options)
    rows, data = rows_of(table)
    age = rows["age"].to_numpy(float)
    X = np.column_stack([np.ones(len(age)), age - age.mean() if center else age])
    effect = statmap(out, "intercept", "effect")
    inside = effect != 0
    beta = np.linalg.lstsq(X, data[:, inside], rcond=None)[0]
    np.testing.assert_allclose(effect[inside], beta[0], rtol=1e-5, atol=1e-5)


def test_first_level_dof_sets_the_fixed_effects_dof(tmp_path, table):
    out = run(tmp_path, "--inputs", str(table), "--design", "one-sample", "--conditions", "a",
              "--estimation", "fixed", "--first-level-dof", "10")
    sidecar = json.loads((out / "contrast-intercept_stat-t_statmap.json").read_text())
    assert sidecar["DegreesOfFreedom"] == 8 * 10
    t, p = statmap(out, "intercept", "t"), statmap(out, "intercept", "p")
    inside = t != 0
    np.testing.assert_allclose(p[inside], stats.t.sf(t[inside], 80), rtol=1e-5, atol=1e-7)
