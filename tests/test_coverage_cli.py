"""Per-subject coverage through the command line: maps written the first-level way
(NaN, or 0 in effect and variance outside each subject's mask), every analysed voxel
equal to statsmodels fitted on that voxel's present subjects only (OLS t and F; fixed
effects by WLS with the known variances), the count and dof maps, the options."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from coverage_data import coverage_sample
from scipy import stats

from nipype_secondlevel.cli import main

SHAPE = (6, 5, 8)  # 240 voxels, the sample's
MIN_SUBJECTS = 3


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The inputs table of 12 subjects (two groups, age), maps and variance maps."""
    folder = tmp_path_factory.mktemp("coverage")
    groups, age, Y, V, present = coverage_sample(seed=2)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    rows = []
    for i in range(Y.shape[0]):
        for kind, values in (("effect", Y[i]), ("variance", V[i])):
            img = nib.Nifti1Image(values.reshape(SHAPE), affine)
            img.header.set_xyzt_units("mm", "sec")  # as first-level tools write them
            nib.save(img, folder / f"sub-{i:02d}_{kind}.nii.gz")
        rows.append({"subject": f"s{i:02d}", "group": "ab"[groups[i]], "age": age[i],
                     "path": f"sub-{i:02d}_effect.nii.gz",
                     "variance_path": f"sub-{i:02d}_variance.nii.gz"})
    pd.DataFrame(rows).to_csv(folder / "inputs.tsv", sep="\t", index=False)
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine), folder / "all.nii.gz")
    X = np.column_stack([groups == 0, groups == 1, age - age.mean()]).astype(float)
    return folder, X, Y.astype(float), V.astype(float), present


def run(sample, out, *args):
    folder = sample[0]
    return main(["run", "--inputs", str(folder / "inputs.tsv"), "--out-dir", str(out),
                 "--work-dir", str(out.parent / "work"), "--design", "two-sample",
                 "--covariates", "age", "--mask", str(folder / "all.nii.gz"), "--quiet",
                 "--atlas", "none", "--contrast", "age=[0, 0, 1]",
                 "--contrast", "both=[[1, -1, 0], [0, 0, 1]]", *args])


def image(out, name):
    return nib.load(out / name).get_fdata().ravel()


def analysed_voxels(X, present, c_rows):
    """Voxels a per-voxel reference analyses: >= MIN_SUBJECTS rows, estimable with dof."""
    for voxel in range(present.shape[1]):
        rows = np.flatnonzero(present[:, voxel])
        Xr = X[rows]
        if rows.size < MIN_SUBJECTS or np.linalg.matrix_rank(Xr) < X.shape[1] \
                or rows.size - X.shape[1] < 1:
            yield voxel, rows, False
        else:
            yield voxel, rows, True


@pytest.fixture(scope="module")
def ols(sample, tmp_path_factory):
    """The OLS run's results folder and the warnings it gave."""
    out = tmp_path_factory.mktemp("ols") / "out"
    with warnings.catch_warnings(record=True) as given:
        warnings.simplefilter("always")
        assert run(sample, out, "--min-subjects", str(MIN_SUBJECTS)) == 0
    return out, [str(w.message) for w in given]


def test_ols_each_voxel_on_its_present_subjects(sample, ols):
    _, X, Y, _, present = sample
    out, given = ols
    assert ("20 voxel(s) of the mask were not analysed: 0 with too few subjects, 20 where "
            "the design cannot estimate the contrasts from the subjects present (e.g. a group "
            "with no subject left); they are 0 in the maps (--min-coverage, --min-subjects, "
            "--mask)") in given
    t, p_t = image(out, "contrast-age_stat-t_statmap.nii.gz"), image(
        out, "contrast-age_stat-p_statmap.nii.gz")
    dof = image(out, "contrast-age_stat-dof_statmap.nii.gz")
    f, p_f = image(out, "contrast-both_stat-F_statmap.nii.gz"), image(
        out, "contrast-both_stat-p_statmap.nii.gz")
    n = image(out, "stat-n_desc-coverage_statmap.nii.gz")
    mask = image(out, "desc-group_mask.nii.gz") > 0
    checked = 0
    for voxel, rows, analysed in analysed_voxels(X, present, None):
        if rows.size < MIN_SUBJECTS:
            assert not mask[voxel]
            continue
        assert mask[voxel] and n[voxel] == rows.size
        if not analysed:  # a group with no subject left
            assert t[voxel] == 0 and p_t[voxel] == 1 and f[voxel] == 0
            continue
        res = sm.OLS(Y[rows, voxel], X[rows]).fit()
        ttest, ftest = res.t_test([0, 0, 1]), res.f_test([[1, -1, 0], [0, 0, 1]])
        np.testing.assert_allclose(t[voxel], np.ravel(ttest.tvalue)[0], rtol=1e-5)
        np.testing.assert_allclose(p_t[voxel], stats.t.sf(t[voxel], ttest.df_denom),
                                   rtol=1e-4)
        assert dof[voxel] == ttest.df_denom == rows.size - 3
        np.testing.assert_allclose(f[voxel], np.ravel(ftest.fvalue)[0], rtol=1e-5)
        np.testing.assert_allclose(p_f[voxel], np.ravel(ftest.pvalue)[0], rtol=1e-4)
        checked += 1
    assert checked >= 150 and len(set(dof[mask & (dof > 0)])) >= 3
    sidecar = json.loads((out / "stat-n_desc-coverage_statmap.json").read_text())
    assert sidecar["MinimumSubjects"] == MIN_SUBJECTS


def test_results_are_valid_bids_with_the_inputs_units(ols):
    """bids-validator (bids-validator-deno, if installed): 0 errors; maps in mm and s as
    the inputs; the mask's sidecar has the recommended Sources and SpatialReference."""
    out, _ = ols
    for name in ("contrast-age_stat-t_statmap.nii.gz", "desc-group_mask.nii.gz",
                 "stat-n_desc-coverage_statmap.nii.gz"):
        assert nib.load(out / name).header.get_xyzt_units() == ("mm", "sec"), name
    mask = json.loads((out / "desc-group_mask.json").read_text())
    assert len(mask["Sources"]) == 12 and mask["SpatialReference"].endswith("effect.nii.gz")
    assert "*_statmap.nii.gz" in (out / ".bidsignore").read_text().splitlines()
    pytest.importorskip("bids_validator_deno")
    validator = Path(sys.executable).parent / "bids-validator-deno"
    found = subprocess.run([str(validator), str(out), "--json"], capture_output=True,
                           text=True, timeout=300, check=False)
    issues = json.loads(found.stdout)["issues"]["issues"]
    assert [i for i in issues if i["severity"] == "error"] == []


def test_fixed_effects_equal_wls_with_known_variances(sample, tmp_path):
    _, X, Y, V, present = sample
    out = tmp_path / "fixed"
    assert run(sample, out, "--min-coverage", "0.25", "--estimation", "fixed",
               "--first-level-dof", "20") == 0  # ceil(0.25 * 12) = 3 subjects
    t = image(out, "contrast-age_stat-t_statmap.nii.gz")
    dof = image(out, "contrast-age_stat-dof_statmap.nii.gz")
    checked = 0
    for voxel, rows, analysed in analysed_voxels(X, present, None):
        if not analysed:
            continue
        res = sm.WLS(Y[rows, voxel], X[rows], weights=1.0 / V[rows, voxel]).fit()
        c = np.array([0.0, 0.0, 1.0])
        expected = c @ res.params / np.sqrt(c @ res.normalized_cov_params @ c)
        np.testing.assert_allclose(t[voxel], expected, rtol=1e-5)
        assert dof[voxel] == 20 * rows.size
        checked += 1
    assert checked >= 150


def test_min_subjects_and_min_coverage_are_one_decision(sample, tmp_path, capsys):
    assert run(sample, tmp_path / "both", "--min-subjects", "3", "--min-coverage",
               "0.5") == 1
    assert capsys.readouterr().err.splitlines() == [
        ("nipype-secondlevel: error: --min-subjects 3: conflicts with --min-coverage 0.5: "
         "give one of them")]


def test_smoothed_maps_keep_the_voxels_every_map_covers(sample, tmp_path):
    """Smoothing would mix missing values with data: the mask is the intersection."""
    _, _, _, _, present = sample
    out = tmp_path / "smoothed"
    with pytest.warns(UserWarning, match=r"where fewer than 12 maps have a value were left out "
                      r"of the analysis mask \(--smoothing-fwhm: smoothing would mix"):
        assert run(sample, out, "--smoothing-fwhm", "4") == 0
    mask = image(out, "desc-group_mask.nii.gz") > 0
    np.testing.assert_array_equal(mask, present.all(axis=0))
    assert (image(out, "stat-n_desc-coverage_statmap.nii.gz")[mask] == 12).all()
