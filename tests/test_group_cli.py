"""`nipype-secondlevel run` on a user's table, and the Localizer with mixed effects."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import AFFINE, make_group_table
from localizer_folder import make_localizer_folder
from scipy.stats import t as t_distribution

from nipype_secondlevel.cli import main
from nipype_secondlevel.io.grids import GridWarning


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("cli") / "data", n_subjects=8,
                            variances=True)


def run(tmp_path, *args):
    return main(["run", "--out-dir", str(tmp_path / "out"), "--work-dir",
                 str(tmp_path / "work"), "--mask-strategy", "coverage", "--quiet", *args])


def edited(tmp_path, table, edit):
    rows = pd.read_csv(table, sep="\t")
    rows["path"] = [str(table.parent / p) for p in rows["path"]]
    rows["variance_path"] = [str(table.parent / p) for p in rows["variance_path"]]
    rows = edit(rows)
    path = tmp_path / "inputs.tsv"
    rows.to_csv(path, sep="\t", index=False)
    return path


def missing_map(rows):
    rows.loc[3, "path"] = "/nowhere/map.nii.gz"
    return rows


def missing_age(rows):
    rows["age"] = rows["age"].astype(object)
    rows.loc[2, "age"] = None
    return rows


def text_age(rows):
    rows["age"] = rows["age"].astype(object)
    rows.loc[5, "age"] = "old"
    return rows


BAD_TABLES = {
    "missing file": (missing_map, [], ("map of subject s01, condition b not found: "
                                      "/nowhere/map.nii.gz")),
    "missing column": (lambda r: r.drop(columns="subject"), [],
                       "missing column(s) subject; it has condition, group, path"),
    "duplicate": (lambda r: pd.concat([r, r.iloc[[4]]]), [],
                  "subject s02 has more than one map for condition a"),
    "covariate missing": (missing_age, ["--covariates", "age"],
                          "covariate 'age' has a missing value (subject s01; 1 bad value(s))"),
    "covariate text": (text_age, ["--covariates", "age"],
                       "covariate 'age' has a non-numeric value 'old' (subject s02"),
    "no variances": (lambda r: r.drop(columns="variance_path"), ["--estimation", "mixed"],
                     "missing column(s) variance_path"),
    "no group": (lambda r: r.drop(columns="group"), ["--design", "two-sample"],
                 "a two-sample design needs a group column"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_table_gives_one_line_and_no_output(tmp_path, table, capsys, case):
    edit, options, message = BAD_TABLES[case]
    path = edited(tmp_path, table, edit)
    code = run(tmp_path, "--inputs", str(path), "--conditions", "a", *options)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("nipype-secondlevel: error: "), err
    assert message in err[0]
    assert not (tmp_path / "out").exists()


def test_rank_deficient_user_design_names_the_columns(tmp_path, table, capsys):
    n = len(pd.read_csv(table, sep="\t"))
    pd.DataFrame({"a": np.ones(n), "b": np.r_[np.ones(n // 2), np.zeros(n - n // 2)],
                  "c": np.r_[np.zeros(n // 2), np.ones(n - n // 2)]}).to_csv(
        tmp_path / "design.tsv", sep="\t", index=False)
    code = run(tmp_path, "--inputs", str(table), "--design", "file",
               "--design-file", str(tmp_path / "design.tsv"))
    assert code == 1
    assert ("file design: the design is rank deficient (rank 2 < 3 columns): columns a, b, c "
            "are linearly dependent") in capsys.readouterr().err


def test_two_sample_with_several_contrasts_estimates_once(tmp_path, table, capsys):
    options = ["--inputs", str(table), "--design", "two-sample", "--conditions", "a",
               "--covariates", "age", "--estimation", "mixed",
               "--contrast", "patients - controls", "--contrast", "groups=patients - controls; age"]
    assert run(tmp_path, *options) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    for label, stats in [("patientsMinusControls", "z t p effect variance"),
                         ("groups", "z F p")]:
        for stat in stats.split():
            assert f"contrast-{label}_stat-{stat}_statmap.nii.gz" in names
        assert f"contrast-{label}_stat-z_glassbrain.png" in names
        assert f"contrast-{label}_stat-z_clusters.tsv" in names
    assert {"design.tsv", "desc-group_mask.nii.gz",
            "desc-mixed_betweenSubjectVariance.nii.gz"} <= names
    labelled = pd.read_csv(tmp_path / "out" / "design.tsv", sep="\t")
    assert list(labelled.columns) == ["subject", "condition", "group", "controls", "patients",
                                      "age"]
    design = labelled.iloc[:, 3:]
    out = tmp_path / "out"
    # Every exported map says what made it; F gives both degrees of freedom.
    for path in out.glob("*.nii.gz"):
        assert (out / path.name.replace(".nii.gz", ".json")).exists(), path.name
    f_meta = json.loads((out / "contrast-groups_stat-F_statmap.json").read_text())
    assert f_meta["DegreesOfFreedom"] == [2, len(design) - np.linalg.matrix_rank(design)]
    # Kenward-Roger t: the per-voxel dof map gives back the p map from the t map.
    stem = out / "contrast-patientsMinusControls_stat-"
    dof = nib.load(f"{stem}dof_statmap.nii.gz").get_fdata()
    mask = nib.load(out / "desc-group_mask.nii.gz").get_fdata() > 0
    t = nib.load(f"{stem}t_statmap.nii.gz").get_fdata()[mask]
    p = nib.load(f"{stem}p_statmap.nii.gz").get_fdata()[mask]
    assert dof[mask].min() > 0 and np.ptp(dof[mask]) > 0  # it varies between voxels
    np.testing.assert_allclose(p, t_distribution.sf(t, dof[mask]), rtol=1e-4, atol=1e-7)
    meta = json.loads((out / "contrast-patientsMinusControls_stat-t_statmap.json").read_text())
    assert meta["DegreesOfFreedomMap"] == "contrast-patientsMinusControls_stat-dof_statmap.nii.gz"
    assert meta["DegreesOfFreedom"] == pytest.approx(np.median(dof[mask]), rel=1e-5)
    between = json.loads((out / "desc-mixed_betweenSubjectVariance.json").read_text())
    assert between["Estimation"] == "mixed"
    report = (tmp_path / "out" / "report.html").read_text()
    assert "<title>Group analysis report: group_wf</title>" in report
    for row in ("patientsMinusControls", "groups (F, row 1)", "groups (F, row 2)"):
        assert f"<td>{row}</td>" in report
    first = tmp_path / "work/group_wf/group_analysis_wf/contrast/mapflow/_contrast0"
    stamp = (first / "result__contrast0.pklz").stat().st_mtime
    # One more contrast: no new estimate, and the first contrast comes from the cache.
    assert run(tmp_path, *options, "--contrast", "age") == 0
    assert (tmp_path / "out" / "contrast-age_stat-t_statmap.nii.gz").exists()
    assert (first / "result__contrast0.pklz").stat().st_mtime == stamp
    result = tmp_path / "work/group_wf/group_analysis_wf/estimate/result_estimate.pklz"
    assert result.stat().st_mtime < stamp + 1e-6


def test_maps_on_another_grid_are_resampled_with_a_warning(tmp_path, table):
    rows = pd.read_csv(table, sep="\t")
    rows = rows[rows.condition == "a"].reset_index(drop=True)
    rows["path"] = [str(table.parent / p) for p in rows["path"]]
    img = nib.load(rows["path"][2])
    nib.save(nib.Nifti1Image(img.get_fdata()[::2, ::2, ::2].astype(np.float32),
                             AFFINE @ np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "coarse.nii.gz")
    rows.loc[2, "path"] = "coarse.nii.gz"
    rows.drop(columns="variance_path").to_csv(tmp_path / "inputs.tsv", sep="\t", index=False)
    with pytest.warns(GridWarning, match="coarse.nii.gz"):
        assert run(tmp_path, "--inputs", str(tmp_path / "inputs.tsv")) == 0
    z = nib.load(tmp_path / "out" / "contrast-intercept_stat-z_statmap.nii.gz")
    assert z.shape == img.shape


def test_localizer_with_mixed_effects_uses_the_t_maps(tmp_path, monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    make_localizer_folder(tmp_path / "data", 4, ["vertical checkerboard",
                                                 "horizontal checkerboard"],
                          get_tmaps=True, shape=(8, 9, 7))
    code = main(["localizer", "--n-subjects", "4", "--data-dir", str(tmp_path / "data"),
                 "--estimation", "mixed", "--mask-strategy", "coverage", "--quiet",
                 "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")])
    assert code == 0
    out = tmp_path / "out"
    assert (out / "contrast-verticalVsHorizontal_stat-z_statmap.nii.gz").exists()
    assert (out / "desc-mixed_betweenSubjectVariance.nii.gz").exists()
    inputs = pd.read_csv(tmp_path / "work/localizer_wf/fetch/inputs.tsv", sep="\t")
    c = nib.load(inputs["path"][0]).get_fdata()
    t = nib.load(inputs["tmap_path"][0]).get_fdata()
    v = nib.load(inputs["variance_path"][0]).get_fdata()
    np.testing.assert_allclose(v, (c / t) ** 2, rtol=1e-5)
