"""General designs on small maps: each against nilearn, scipy or numpy."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import planned_design, run_in
from group_data import AFFINE, SHAPE, make_group_table, write_map
from scipy import stats

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.design.contrasts import parse_contrast, parse_contrasts
from nipype_secondlevel.design.matrices import check_estimable, group_design
from nipype_secondlevel.design.tables import read_inputs_table
from nipype_secondlevel.io.errors import InputError

ATOL = 1e-5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("designs")
    table = make_group_table(base / "data", n_subjects=12, variances=True)
    paths = list(read_inputs_table(table)["path"])
    mask = run_in(base / "mask", ifc.GroupMask(in_files=paths, strategy="coverage"))
    return base, table, mask.mask_file


def fit(folder, data, estimation="ols", contrasts=(), **design):
    """The plan -> estimate -> one Contrast per contrast of the plan; (the planned design,
    {specification: outputs})."""
    _, table, mask = data
    d = planned_design(folder / "design", table, estimation=estimation,
                       contrasts=list(contrasts) or None, **design)
    if estimation == "ols":
        est = run_in(folder / "estimate", ifc.EstimateOLS(
            in_files=d.in_files, design_matrix=d.design_matrix, mask_file=mask))
        source = {"residual_variance": est.residual_variance}
    else:
        est = run_in(folder / "estimate", ifc.EstimateMixedEffects(
            design_matrix=d.design_matrix, mask_file=mask, method=estimation,
            **masked_files(folder, d, mask)))
        source = {"cov_beta": est.cov_beta}
        if estimation == "mixed":
            source["kenward_roger"] = est.kenward_roger
    out = {}
    for i, contrast in enumerate(d.contrasts):
        out[contrast.specification] = run_in(folder / f"contrast{i}", ifc.Contrast(
            beta=est.beta, dof=est.dof, design_matrix=d.design_matrix, mask_file=mask,
            weights=contrast.weights, contrast_name=contrast.label, **source))
    return d, out


def masked_files(folder, d, mask):
    """The MaskedData files of the effect and variance maps, as EstimateMixedEffects takes them."""
    data = run_in(folder / "masked_data", ifc.MaskedData(in_files=d.in_files, mask_file=mask))
    variances = run_in(folder / "masked_variances", ifc.MaskedData(in_files=d.variance_files,
                                                                   mask_file=mask))
    return {"data_file": data.data_file, "variance_data_file": variances.data_file}


def values(img, mask):
    img = nib.load(img) if isinstance(img, str) else img
    return img.get_fdata()[nib.load(mask).get_fdata() > 0]


def nilearn_model(d, mask):
    from nilearn.glm.second_level import SecondLevelModel

    X = pd.read_csv(d.design_matrix, sep="\t")
    return SecondLevelModel(mask_img=mask).fit(list(d.in_files), design_matrix=X), X


def assert_equals_nilearn(d, out, mask):
    from nilearn.glm import expression_to_contrast_vector

    model, X = nilearn_model(d, mask)
    for spec, o in out.items():
        if o.stat_type == "t":
            expected = model.compute_contrast(spec, output_type="all")
            pairs = [("z", o.z_map, "z_score"), ("t", o.t_map, "stat"),
                     ("effect", o.effect_map, "effect_size"), ("p", o.p_map, "p_value")]
        else:
            weights = np.vstack([
                expression_to_contrast_vector(row.strip(), list(X.columns))
                for row in spec.split("=")[-1].split(";")])
            expected = model.compute_contrast(weights, second_level_stat_type="F",
                                              output_type="all")
            pairs = [("z", o.z_map, "z_score"), ("F", o.f_map, "stat"),
                     ("p", o.p_map, "p_value")]
        for stat, ours, key in pairs:
            np.testing.assert_allclose(values(ours, mask), values(expected[key], mask),
                                       atol=ATOL, rtol=ATOL, err_msg=f"{spec} {stat}")


def test_one_sample_with_covariates_equals_nilearn_and_lstsq(tmp_path, data):
    _, _, mask = data
    d, out = fit(tmp_path, data, design="one-sample", conditions=["a"],
                 covariates=["age", "score"], contrasts=["intercept", "age"])
    X = pd.read_csv(d.design_matrix, sep="\t")
    assert list(X.columns) == ["intercept", "age", "score"]
    assert abs(X["age"].mean()) < 1e-9  # mean-centred
    assert_equals_nilearn(d, out, mask)
    Y = np.stack([values(p, mask) for p in d.in_files])
    slopes = np.linalg.lstsq(X.to_numpy(), Y, rcond=None)[0]
    np.testing.assert_allclose(values(out["age"].effect_map, mask), slopes[1], atol=ATOL)
    np.testing.assert_allclose(values(out["intercept"].effect_map, mask), Y.mean(axis=0),
                               atol=ATOL)  # centred covariates: the intercept is the mean


def test_uncentred_covariate_changes_only_the_intercept(tmp_path, data):
    _, _, mask = data
    kwargs = {"design": "one-sample", "conditions": ["a"], "covariates": ["age"],
              "contrasts": ["intercept", "age"]}
    _, centred = fit(tmp_path / "c", data, **kwargs)
    d, raw = fit(tmp_path / "r", data, no_center_covariates=True, **kwargs)
    assert pd.read_csv(d.design_matrix, sep="\t")["age"].min() > 19
    np.testing.assert_allclose(values(raw["age"].t_map, mask),
                               values(centred["age"].t_map, mask), atol=ATOL)
    assert not np.allclose(values(raw["intercept"].t_map, mask),
                           values(centred["intercept"].t_map, mask))


def test_paired_equals_nilearn(tmp_path, data):
    _, _, mask = data
    d, out = fit(tmp_path, data, design="paired", conditions=["b", "a"])
    assert list(out) == ["b_vs_a"]
    assert_equals_nilearn(d, out, mask)


def test_two_sample_equals_nilearn_and_ttest_ind(tmp_path, data):
    _, _, mask = data
    d, out = fit(tmp_path, data, design="two-sample", conditions=["a"],
                 contrasts=["patients - controls", "patients", "controls"])
    X = pd.read_csv(d.design_matrix, sep="\t")
    assert list(X.columns) == ["controls", "patients"]
    assert_equals_nilearn(d, out, mask)
    Y = np.stack([values(p, mask) for p in d.in_files])
    patients, controls = Y[X.patients == 1], Y[X.controls == 1]
    expected = stats.ttest_ind(patients, controls, axis=0, equal_var=True)
    o = out["patients - controls"]
    np.testing.assert_allclose(values(o.t_map, mask), expected.statistic, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(values(o.effect_map, mask),
                               patients.mean(axis=0) - controls.mean(axis=0), atol=ATOL)
    np.testing.assert_allclose(values(out["patients"].effect_map, mask),
                               patients.mean(axis=0), atol=ATOL)  # columns are group means
    assert o.contrast_name == "patientsMinusControls"


def test_f_contrasts_equal_nilearn(tmp_path, data):
    _, _, mask = data
    d, out = fit(tmp_path, data, design="two-sample", conditions=["a"], covariates=["age"],
                 contrasts=["effects=patients - controls; age", "patients; controls; age"])
    assert [o.stat_type for o in out.values()] == ["F", "F"]
    assert out["effects=patients - controls; age"].contrast_name == "effects"
    assert out["effects=patients - controls; age"].f_map.endswith("/F.nii.gz")
    assert_equals_nilearn(d, out, mask)


def test_user_design_file_equals_nilearn(tmp_path, data):
    _base, table, mask = data
    rows = pd.read_csv(table, sep="\t")
    design = pd.DataFrame({"mean": 1.0, "cond_b": (rows.condition == "b").astype(float),
                           "age": rows.age})
    design.to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    d, out = fit(tmp_path, data, design="file", design_file=str(tmp_path / "design.tsv"),
                 contrasts=["cond_b", "mean + 40*age", "[[0, 1, 0], [0, 0, 1]]"])
    assert out["[[0, 1, 0], [0, 0, 1]]"].contrast_name == "f010x001"
    out_t = {k: v for k, v in out.items() if v.stat_type == "t"}
    assert_equals_nilearn(d, out_t, mask)
    model, _ = nilearn_model(d, mask)
    expected = model.compute_contrast(np.array([[0, 1, 0], [0, 0, 1]]), second_level_stat_type="F",
                                      output_type="z_score")
    np.testing.assert_allclose(values(out["[[0, 1, 0], [0, 0, 1]]"].z_map, mask),
                               values(expected, mask), atol=ATOL)


def test_fixed_effects_equal_compute_fixed_effects(tmp_path, data):
    from nilearn.glm import compute_fixed_effects

    _, _, mask = data
    d, out = fit(tmp_path, data, estimation="fixed", design="one-sample", conditions=["a"])
    effect, variance, t, z = compute_fixed_effects(
        list(d.in_files), list(d.variance_files), mask=mask, precision_weighted=True)
    o = out["intercept"]
    for ours, theirs in [(o.effect_map, effect), (o.variance_map, variance), (o.t_map, t),
                         (o.z_map, z)]:
        np.testing.assert_allclose(values(ours, mask), values(theirs, mask), atol=ATOL,
                                   rtol=ATOL)


def test_mixed_effects_with_zero_variances_equal_ols(tmp_path, data):
    base, table, mask = data
    rows = pd.read_csv(table, sep="\t")
    zero = write_map(base / "data" / "zero.nii.gz", np.zeros(SHAPE))
    rows["variance_path"] = str(zero)
    rows.to_csv(base / "data" / "zero_variances.tsv", sep="\t", index=False)
    zero_data = (base, base / "data" / "zero_variances.tsv", mask)
    kwargs = {"design": "two-sample", "conditions": ["a"], "covariates": ["age"],
              "contrasts": ["patients - controls", "patients - controls; age"]}
    _, mixed = fit(tmp_path / "mixed", zero_data, estimation="mixed", **kwargs)
    _, ols = fit(tmp_path / "ols", zero_data, **kwargs)
    for spec in kwargs["contrasts"]:
        np.testing.assert_allclose(values(mixed[spec].z_map, mask), values(ols[spec].z_map, mask),
                                   atol=1e-6, rtol=1e-6)
    assert mixed["patients - controls"].t_map.endswith("/t.nii.gz")


def test_mixed_effects_weights_precise_maps_more(tmp_path, data):
    """With unequal first-level variances the mixed estimate differs from OLS and its
    between-subject variance map is written."""
    _base, table, mask = data
    d = planned_design(tmp_path / "design", table, estimation="mixed", conditions=["a"])
    est = run_in(tmp_path / "est", ifc.EstimateMixedEffects(
        design_matrix=d.design_matrix, mask_file=mask, **masked_files(tmp_path, d, mask)))
    assert est.dof == 11 and est.n_not_converged == 0
    sigma2 = values(est.between_subject_variance, mask)
    assert np.all(sigma2 >= 0) and sigma2.mean() > 0.3  # true between-subject variance ~1


def test_rank_deficient_and_saturated_designs_name_the_columns():
    design = pd.DataFrame({"a": [1.0, 1, 0, 0], "b": [0.0, 0, 1, 1], "c": [1.0, 1, 1, 1],
                           "d": [1.0, 2, 3, 4]})
    with pytest.raises(InputError, match=r"rank deficient \(rank 3 < 4 columns\): columns "
                                         r"a, b, c are linearly dependent"):
        check_estimable(design)
    with pytest.raises(InputError, match=r"no residual degrees of freedom: 2 maps for 2 "
                                         r"columns \(a, d\)"):
        check_estimable(design[["a", "d"]].iloc[1:3])


def test_constant_covariate_is_refused(tmp_path, data):
    _, table, _ = data
    rows = read_inputs_table(table)
    rows["site"] = 1.0
    with pytest.raises(InputError, match=r"column\(s\) site are zero in every row "
                                         r"\(a covariate with one value\?\)"):
        group_design(rows, "one-sample", conditions=["a"], covariates=["site"])


def test_contrast_specifications():
    columns = ["controls", "patients", "age"]
    label, rows, kind = parse_contrast("patients - controls", columns)
    assert (label, kind) == ("patientsMinusControls", "t")
    np.testing.assert_array_equal(rows, [[-1, 1, 0]])
    label, rows, kind = parse_contrast("groups = patients - controls; age", columns)
    assert (label, kind, rows.shape) == ("groups", "F", (2, 3))
    label, rows, kind = parse_contrast("[[1, -1, 0], [0, 0, 1]]", columns)
    assert (label, kind) == ("f1m10x001", "F")
    assert parse_contrast("[0, 0, 1]", columns)[0] == "c001"
    with pytest.raises(InputError, match="two contrasts have the label age"):
        parse_contrasts(["age", "age"], columns)
    with pytest.raises(InputError, match="rows are linearly dependent"):
        parse_contrast("age; 2*age", columns)
    with pytest.raises(InputError, match="3 weights given but the design has 3|2 weights"):
        parse_contrast("[1, 0]", columns)


def test_resampling_to_the_reference_grid_warns(tmp_path, data):
    from nipype_secondlevel.io.grids import GridWarning

    _, table, _ = data
    paths = list(read_inputs_table(table)["path"])[:3]
    img = nib.load(paths[1])
    coarse = nib.Nifti1Image(img.get_fdata()[::2, ::2, ::2],
                             AFFINE @ np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(coarse, tmp_path / "coarse.nii.gz")
    with pytest.warns(GridWarning, match=r"1 map\(s\) are not on the grid of the reference"):
        out = run_in(tmp_path / "r", ifc.ResampleMaps(
            in_files=[paths[0], str(tmp_path / "coarse.nii.gz"), paths[2]]))
    assert out.out_files[0] == paths[0] and out.out_files[2] == paths[2]
    moved = nib.load(out.out_files[1])
    assert moved.shape == SHAPE and np.allclose(moved.affine, AFFINE)
    assert out.resampled == [str(tmp_path / "coarse.nii.gz")]
    # A user-named reference grid: every map is resampled to it.
    with pytest.warns(GridWarning, match="3 map"):
        out = run_in(tmp_path / "u", ifc.ResampleMaps(
            in_files=paths, reference=str(tmp_path / "coarse.nii.gz")))
    assert nib.load(out.out_files[0]).shape == (5, 6, 5)


def test_maps_of_other_dimensionality_or_unreadable_are_errors(tmp_path, data):
    _, table, _ = data
    path = next(iter(read_inputs_table(table)["path"]))
    nib.save(nib.Nifti1Image(np.zeros(SHAPE + (3,), np.float32), AFFINE), tmp_path / "4d.nii.gz")
    with pytest.raises(Exception, match=r"4d.nii.gz: expected a 3D map, got 4D shape"):
        run_in(tmp_path / "a", ifc.ResampleMaps(in_files=[path, str(tmp_path / "4d.nii.gz")]))
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(Exception, match=r"broken.nii.gz: not a readable NIfTI image"):
        run_in(tmp_path / "b", ifc.ResampleMaps(in_files=[path, str(tmp_path / "broken.nii.gz")]))


def test_variance_from_t_maps(tmp_path):
    from nipype_secondlevel.datasets.localizer import write_variance_maps

    rng = np.random.default_rng(0)
    effect = rng.normal(size=SHAPE)
    t = rng.normal(size=SHAPE)
    t[0, 0, 0] = 0.0
    write_map(tmp_path / "c.nii.gz", effect)
    write_map(tmp_path / "t.nii.gz", t)
    table = pd.DataFrame({"subject": ["s1"], "condition": ["a"],
                          "path": [str(tmp_path / "c.nii.gz")],
                          "tmap_path": [str(tmp_path / "t.nii.gz")]})
    (written,) = write_variance_maps(table, tmp_path)
    variance = nib.load(written).get_fdata()
    e32, t32 = effect.astype(np.float32), t.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (e32.astype(float) / t32) ** 2
    expected[0, 0, 0] = np.nan  # undefined where t = 0
    np.testing.assert_allclose(variance, expected, rtol=1e-5)


def test_sidecar_of_an_f_map_lists_its_rows(tmp_path, data):
    _, _, _mask = data
    _, out = fit(tmp_path, data, design="two-sample", conditions=["a"],
                 contrasts=["patients; controls"])
    o = out["patients; controls"]
    sidecar = json.loads((tmp_path / "contrast0" / o.f_map.split("/")[-1].replace(
        ".nii.gz", ".json")).read_text())
    assert sidecar["Statistic"] == "F" and len(sidecar["ContrastWeights"]) == 2


def test_mixed_effects_t_contrast_uses_kenward_roger(tmp_path, data):
    """Through the interfaces, a mixed-effects t contrast has the Kenward-Roger covariance and
    per-voxel dof of the numerics (checked there against explicit matrices), not FLAME1's."""
    from nipype_secondlevel.io.images import load_masked_data
    from nipype_secondlevel.stats.glm import t_to_z
    from nipype_secondlevel.stats.mixed_effects import (
        fit_mixed_effects,
        mixed_effects_contrast_kenward_roger,
    )

    _, table, mask = data
    d = planned_design(tmp_path / "design", table, estimation="mixed", conditions=["a"])
    est = run_in(tmp_path / "est", ifc.EstimateMixedEffects(
        design_matrix=d.design_matrix, mask_file=mask, **masked_files(tmp_path, d, mask)))
    common = {"beta": est.beta, "cov_beta": est.cov_beta, "dof": est.dof,
              "design_matrix": d.design_matrix, "mask_file": mask, "weights": [[1.0]],
              "contrast_name": "intercept"}
    kr = run_in(tmp_path / "kr", ifc.Contrast(kenward_roger=est.kenward_roger, **common))
    flame = run_in(tmp_path / "flame", ifc.Contrast(**common))
    in_mask = nib.load(mask).get_fdata() > 0
    Y = load_masked_data(d.in_files, in_mask, dtype=np.float64)
    V = load_masked_data(d.variance_files, in_mask, dtype=np.float64)
    X = pd.read_csv(d.design_matrix, sep="\t").to_numpy(float)
    _, variance, t, dof = mixed_effects_contrast_kenward_roger(fit_mixed_effects(X, Y, V), [1.0])
    np.testing.assert_allclose(values(kr.variance_map, mask), variance, rtol=1e-5)
    np.testing.assert_allclose(values(kr.z_map, mask), t_to_z(t, dof), atol=ATOL)
    assert np.all(values(kr.variance_map, mask) >= values(flame.variance_map, mask) - 1e-12)
    sidecar = json.loads(Path(kr.z_map.replace(".nii.gz", ".json")).read_text())
    assert sidecar["DegreesOfFreedom"] == pytest.approx(float(np.median(dof)), rel=1e-6)
