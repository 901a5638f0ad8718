"""Each voxel analysed with the maps present there (stats.missing, stats.coverage).

References: the missing-value rule and the grouping written out element by element
in the tests; statsmodels OLS and WLS fitted voxel by voxel on the present rows
only; the REML likelihood of tests/mixed_reference.py maximised by scipy, GLS
and Kenward-Roger written out with explicit matrices; scipy's t, F and normal
distributions.
"""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from coverage_data import coverage_sample, designs
from mixed_reference import reference_reml_sigma2
from scipy import stats

from nipype_secondlevel.stats.coverage import coverage_contrast_maps, fit_with_missing
from nipype_secondlevel.stats.missing import (
    coverage,
    mark_missing,
    missing_patterns,
    missing_values,
    unusable_variances,
)


def rule_written_out(e, v=None, zeros_without_variance=False):
    """The documented rule, one value at a time."""
    if np.isnan(e):
        return True
    if v is None:
        return zeros_without_variance and e == 0
    return bool(np.isnan(v) or (e == 0 and v == 0))


def test_missing_value_rule_value_by_value():
    values = [np.nan, 0.0, -0.0, 1.5, -2.0, np.inf]
    variances = [np.nan, 0.0, 0.7, -1.0, np.inf]
    E = np.array([[e for e in values for _ in variances]])
    V = np.array([[v for _ in values for v in variances]])
    expected = [[rule_written_out(e, v) for e, v in zip(E[0], V[0])]]
    np.testing.assert_array_equal(missing_values(E, V), expected)
    for zeros in (False, True):
        expected = [[rule_written_out(e, None, zeros) for e in values]]
        np.testing.assert_array_equal(
            missing_values(np.array([values]), zeros_without_variance=zeros), expected)
    # a measured 0 (positive variance) and an effect beside a zero variance stay data
    assert not missing_values([[0.0, 3.0]], [[0.5, 0.0]]).any()
    marked, marked_v = mark_missing(E.astype(np.float32), V)
    assert marked.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(marked), missing_values(E, V))
    np.testing.assert_array_equal(np.isnan(marked_v), missing_values(E, V))
    kept = ~missing_values(E, V)
    np.testing.assert_array_equal(marked[kept], E.astype(np.float32)[kept])


def test_unusable_variances_are_those_inside_the_coverage():
    E = np.array([[0.0, 0.0, 1.0, 1.0, 1.0, np.nan, 2.0, 0.0]])
    V = np.array([[0.0, np.nan, 0.0, -1.0, np.inf, 0.0, 0.5, 0.3]])
    expected = [[rule_written_out(e, v) is False and not 0 < v < np.inf
                 for e, v in zip(E[0], V[0])]]
    assert expected == [[False, False, True, True, True, False, False, False]]
    np.testing.assert_array_equal(unusable_variances(E, V), expected)


def test_complete_maps_have_nothing_missing():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(8, 50))
    Y[3, 7] = 0.0  # a true 0 in a map without variance stays data by default
    assert not missing_values(Y).any()
    assert not missing_values(Y, rng.uniform(0.1, 1, Y.shape)).any()
    assert missing_values(Y, zeros_without_variance=True).sum() == 1


def test_patterns_group_voxels_by_present_rows():
    _, _, Y, V, present = coverage_sample()
    found = missing_patterns(~np.isnan(mark_missing(Y, V)[0]))
    groups = {}
    for voxel in range(present.shape[1]):
        groups.setdefault(tuple(np.flatnonzero(present[:, voxel])), []).append(voxel)
    assert {tuple(p.rows): list(p.voxels) for p in found} == groups
    assert [p.voxels[0] for p in found] == sorted(p.voxels[0] for p in found)
    complete = missing_patterns(np.ones((5, 9), bool))
    assert len(complete) == 1 and list(complete[0].voxels) == list(range(9))


def test_coverage_counts_and_leaves_out_what_cannot_be_estimated():
    groups, age, _, _, present = coverage_sample()
    X, c, _ = designs(groups, age)["two-sample"]
    cover = coverage(present, X, [c], min_subjects=4)
    np.testing.assert_array_equal(cover.n_present, present.sum(axis=0))
    for voxel in range(present.shape[1]):
        rows = np.flatnonzero(present[:, voxel])
        both = set(groups[rows]) == {0, 1}
        expected = rows.size >= 4 and both and rows.size - 2 >= 1
        assert cover.analysed[voxel] == expected, voxel
    assert cover.n_not_estimable == 20  # the band with patients only
    assert cover.n_too_few == 10  # two subjects left
    # labels: distinct subjects, a paired design's two maps counting once
    labels = np.repeat(np.arange(6), 2)
    paired = coverage(present, np.ones((12, 1)), min_subjects=4, labels=labels)
    per_subject = present.reshape(6, 2, -1).any(axis=1).sum(axis=0)
    np.testing.assert_array_equal(paired.n_present, per_subject)


def reference_ols(X, y, c, F):
    """statsmodels on the present rows: t test of c (and F test of F)."""
    with warnings.catch_warnings():  # a paired design's subject of no map: rank deficient
        warnings.simplefilter("ignore")
        res = sm.OLS(y, X).fit()
    test = res.t_test(c)
    t, df = np.ravel(test.tvalue)[0], float(test.df_denom)
    out = {"effect": np.ravel(test.effect)[0], "variance": np.ravel(test.sd)[0] ** 2, "t": t,
           "p": stats.t.sf(t, df), "z": stats.norm.isf(stats.t.sf(t, df)), "dof": df}
    if F is not None:
        ftest = res.f_test(F)
        out["F"] = np.ravel(ftest.fvalue)[0]
        out["Fp"] = np.ravel(ftest.pvalue)[0]
    return out


@pytest.mark.parametrize("name", ["one-sample", "two-sample", "covariate"])
def test_ols_equals_statsmodels_on_each_voxels_present_rows(name):
    groups, age, Y, V, present = coverage_sample(seed=1)
    X, c, F = designs(groups, age)[name]
    Y, V = mark_missing(Y, V)
    fit = fit_with_missing(X, Y, min_subjects=3, contrasts=[c] + ([F] if F is not None else []))
    maps, dof = coverage_contrast_maps(fit, c)
    fmaps = coverage_contrast_maps(fit, F)[0] if F is not None else None
    checked = 0
    for voxel in range(Y.shape[1]):
        rows = np.flatnonzero(present[:, voxel])
        if not fit.analysed[voxel]:
            assert np.isnan(maps["t"][voxel]) and np.isnan(fit.beta[:, voxel]).all()
            continue
        ref = reference_ols(X[rows], Y[rows, voxel].astype(float), c, F)
        for stat in ("effect", "variance", "t", "p", "z"):
            np.testing.assert_allclose(maps[stat][voxel], ref[stat], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{stat} at voxel {voxel}")
        assert dof[voxel] == ref["dof"] == fit.dof[voxel]
        assert fit.n_present[voxel] == rows.size
        if F is not None:
            np.testing.assert_allclose(fmaps["F"][voxel], ref["F"], rtol=1e-9)
            np.testing.assert_allclose(fmaps["p"][voxel], ref["Fp"], rtol=1e-7)
        checked += 1
    assert checked >= 180 and len(fit.patterns) >= 5
    assert len({float(d) for d in fit.dof[fit.analysed]}) >= 3  # dof vary with the voxel


def test_paired_design_keeps_voxels_where_a_whole_subject_is_missing():
    """Subject columns of a subject with no map left are not tested: the condition
    contrast stays estimable and equals statsmodels on the present rows."""
    rng = np.random.default_rng(5)
    n_sub = 8
    X = np.column_stack([np.tile([0.5, -0.5], n_sub), np.kron(np.eye(n_sub), np.ones((2, 1)))])
    Y = rng.normal(size=(2 * n_sub, 30)) + X[:, :1]
    Y[[2, 3], :10] = np.nan  # subject 1 entirely
    Y[5, 10:20] = np.nan  # one map of subject 2
    c = np.r_[1.0, np.zeros(n_sub)]
    fit = fit_with_missing(X, Y, contrasts=[c])
    assert fit.analysed.all()
    maps, dof = coverage_contrast_maps(fit, c)
    for voxel in (0, 15, 25):
        rows = np.flatnonzero(~np.isnan(Y[:, voxel]))
        ref = reference_ols(X[rows], Y[rows, voxel], c, None)
        np.testing.assert_allclose(maps["t"][voxel], ref["t"], rtol=1e-9)
        assert dof[voxel] == ref["dof"]
    assert list(np.unique(dof)) == [6.0, 7.0]  # 14 - 8 (subject 1 gone), 15 - 8, 16 - 9


def explicit_gls(X, y, v, s, c):
    """GLS given s and the Kenward-Roger t and dof, with explicit matrices."""
    W = np.diag(1.0 / (v + s))
    phi = np.linalg.inv(X.T @ W @ X)
    beta = phi @ X.T @ W @ y
    P = W - W @ X @ phi @ X.T @ W
    var_s = 2.0 / np.trace(P @ P)
    x2, x3 = X.T @ W @ W @ X, X.T @ W @ W @ W @ X
    phi_a = phi + 2 * var_s * phi @ (x3 - x2 @ phi @ x2) @ phi
    g = c @ phi @ x2 @ phi @ c  # c dPhi/ds c'
    return {"effect": c @ beta, "variance": c @ phi_a @ c, "t": c @ beta / np.sqrt(c @ phi_a @ c),
            "dof": 2 * (c @ phi @ c) ** 2 / (g**2 * var_s), "phi": phi}


@pytest.mark.parametrize("name", ["one-sample", "two-sample", "covariate"])
def test_mixed_effects_equal_the_reference_on_each_voxels_present_rows(name):
    groups, age, Y, V, present = coverage_sample(seed=2)
    X, c, F = designs(groups, age)[name]
    Y, V = mark_missing(Y, V)
    fit = fit_with_missing(X, Y, V, method="mixed", min_subjects=4)
    maps, dof = coverage_contrast_maps(fit, c)
    voxels = [v for v in range(0, Y.shape[1], 7) if fit.analysed[v]]
    assert len(voxels) >= 25
    interior = 0
    for voxel in voxels:
        rows = np.flatnonzero(present[:, voxel])
        y, v = Y[rows, voxel].astype(float), V[rows, voxel].astype(float)
        s_ref, _, upper = reference_reml_sigma2(X[rows], y, v)
        s = fit.sigma2_between[voxel]
        np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-7 * upper)
        interior += s_ref > 0
        ref = explicit_gls(X[rows], y, v, s, c)  # given our s: exact to rounding
        for stat in ("effect", "variance", "t"):
            np.testing.assert_allclose(maps[stat][voxel], ref[stat], rtol=1e-8)
        if s > 0:
            np.testing.assert_allclose(dof[voxel], ref["dof"], rtol=1e-6)
            np.testing.assert_allclose(maps["p"][voxel], stats.t.sf(ref["t"], ref["dof"]),
                                       rtol=1e-6)
        if F is not None:
            cov = F @ ref["phi"] @ F.T
            eff = F @ np.linalg.solve(X[rows].T @ np.diag(1 / (v + s)) @ X[rows],
                                      X[rows].T @ (y / (v + s)))
            f_ref = eff @ np.linalg.solve(cov, eff) / F.shape[0]
            fmaps, fdof = coverage_contrast_maps(fit, F)
            np.testing.assert_allclose(fmaps["F"][voxel], f_ref, rtol=1e-8)
            assert fdof[voxel] == rows.size - X.shape[1]
    assert interior >= 5


def test_fixed_effects_equal_statsmodels_wls_with_known_variances():
    groups, age, Y, V, present = coverage_sample(seed=3)
    X, c, _ = designs(groups, age)["covariate"]
    Y, V = mark_missing(Y, V)
    fit = fit_with_missing(X, Y, V, method="fixed", first_level_dof=50)
    maps, dof = coverage_contrast_maps(fit, c)
    for voxel in np.flatnonzero(fit.analysed)[::5]:
        rows = np.flatnonzero(present[:, voxel])
        y, v = Y[rows, voxel].astype(float), V[rows, voxel].astype(float)
        res = sm.WLS(y, X[rows], weights=1.0 / v).fit()
        effect = c @ res.params
        variance = c @ res.normalized_cov_params @ c  # scale 1: the variances are known
        t = effect / np.sqrt(variance)
        np.testing.assert_allclose([maps["effect"][voxel], maps["variance"][voxel],
                                    maps["t"][voxel]], [effect, variance, t], rtol=1e-8)
        assert dof[voxel] == 50 * rows.size
        np.testing.assert_allclose(maps["z"][voxel],
                                   stats.norm.isf(stats.t.sf(t, 50 * rows.size)), rtol=1e-8)


def test_complete_data_take_todays_path_bit_for_bit():
    """No missing value: the estimators' own whole-data results, bit for bit (and
    statsmodels at a voxel)."""
    from nipype_secondlevel.stats.contrasts import contrast_maps
    from nipype_secondlevel.stats.glm import fit_ols
    from nipype_secondlevel.stats.mixed_effects import fit_mixed_effects_chunks

    rng = np.random.default_rng(4)
    groups = np.arange(10) % 2
    X, c, _ = designs(groups, rng.uniform(20, 60, 10))["covariate"]
    Y = rng.normal(size=(10, 5000)).astype(np.float32)
    V = rng.uniform(0.5, 1.5, Y.shape).astype(np.float32)
    fit = fit_with_missing(X, Y)
    today = fit_ols(X, Y, chunk_size=4096)
    assert fit.complete and fit.analysed.all() and (fit.n_present == 10).all()
    np.testing.assert_array_equal(fit.beta, today.beta)
    np.testing.assert_array_equal(fit.residual_variance, today.residual_variance)
    maps, dof = coverage_contrast_maps(fit, c)
    todays_maps, _ = contrast_maps(X, today.beta, c, today.dof,
                                   residual_variance=today.residual_variance)
    for stat, values in todays_maps.items():
        np.testing.assert_array_equal(maps[stat], values, stat)
    assert (dof == today.dof).all()
    ref = reference_ols(X, Y[:, 9].astype(float), c, None)
    np.testing.assert_allclose(maps["t"][9], ref["t"], rtol=1e-9)
    mixed = fit_with_missing(X, Y[:, :300], V[:, :300], method="mixed")
    whole = fit_mixed_effects_chunks(X, [(slice(0, 300), Y[:, :300], V[:, :300])], 300)
    assert mixed.complete
    np.testing.assert_array_equal(mixed.beta, whole.beta)
    np.testing.assert_array_equal(mixed.kenward_roger["cov_beta_adjusted"],
                                  whole.cov_beta_adjusted)


def test_chunks_on_block_bounds_give_the_same_bits():
    rng = np.random.default_rng(6)
    Y = rng.normal(size=(9, 9000))
    Y[rng.random(Y.shape) < 0.05] = np.nan
    X = np.column_stack([np.ones(9), rng.normal(size=9)])
    whole = fit_with_missing(X, Y, min_subjects=5)
    parts = [fit_with_missing(X, Y[:, a:b], min_subjects=5)
             for a, b in ((0, 4096), (4096, 8192), (8192, 9000))]
    np.testing.assert_array_equal(np.concatenate([p.beta for p in parts], axis=1), whole.beta)
    np.testing.assert_array_equal(np.concatenate([p.dof for p in parts]), whole.dof)
    assert whole.analysed.sum() > 8000 and len(whole.patterns) > 50


def test_the_fit_reports_its_blocks_of_voxels_and_the_same_bits():
    rng = np.random.default_rng(7)
    Y = rng.normal(size=(8, 2500))
    V = rng.uniform(0.5, 2.0, size=Y.shape)
    Y[rng.random(Y.shape) < 0.05] = np.nan
    calls = []
    fit = fit_with_missing(np.ones((8, 1)), Y, V, method="mixed", min_subjects=4,
                           progress=lambda *call: calls.append(call))
    assert calls == [(0, 2500, "voxels"), (1024, 2500, "voxels"), (2048, 2500, "voxels")]
    quiet = fit_with_missing(np.ones((8, 1)), Y, V, method="mixed", min_subjects=4)
    np.testing.assert_array_equal(fit.beta, quiet.beta)


def test_bad_arguments():
    X = np.ones((4, 1))
    with pytest.raises(ValueError, match="method must be one of ols, mixed, fixed"):
        fit_with_missing(X, np.zeros((4, 3)), method="flame")
    with pytest.raises(ValueError, match="mixed effects need variances"):
        fit_with_missing(X, np.zeros((4, 3)), method="mixed")
