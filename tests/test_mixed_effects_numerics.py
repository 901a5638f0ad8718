"""Tests of nipype_secondlevel.stats.mixed_effects against independent references.

References: glm.fit_ols / glm.t_contrast, nilearn's SecondLevelModel and
compute_fixed_effects, weighted least squares written out with numpy, and the
REML log-likelihood written out in mixed_reference.py (error-contrast form) and maximised with
scipy.optimize.minimize_scalar.
"""

import warnings
from itertools import pairwise

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mixed_reference import reference_gls, reference_reml_loglik, reference_reml_sigma2
from nilearn.glm import compute_fixed_effects
from nilearn.glm.second_level import SecondLevelModel

from nipype_secondlevel.stats import glm
from nipype_secondlevel.stats.mixed_effects import (
    BLOCK_VALUES,
    block_size,
    fit_mixed_effects,
    fit_mixed_effects_chunks,
    fixed_effects,
    mixed_effects_contrast,
    mixed_effects_contrast_kenward_roger,
    mixed_effects_f_contrast,
)
from nipype_secondlevel.stats.reml import reml_log_likelihood

N_MAPS = 16


def _design(n, rng):
    return np.column_stack([np.ones(n), rng.standard_normal(n)])


def _data(rng, n=N_MAPS, n_vox=300, sigma2_between=1.0, v_range=(0.1, 3.0)):
    X = _design(n, rng)
    V = np.exp(rng.uniform(*np.log(v_range), size=(n, n_vox)))
    beta = np.array([0.5, -0.3])
    noise = rng.standard_normal((n, n_vox)) * np.sqrt(V + sigma2_between)
    Y = (X @ beta)[:, None] + noise
    return X, Y, V


# ----------------------------------------------------------------------------
# Mixed effects reduces to OLS when the first-level variances are zero
# ----------------------------------------------------------------------------


def test_zero_first_level_variance_equals_ols():
    rng = np.random.default_rng(1)
    X, Y, _ = _data(rng, n_vox=200)
    fit = fit_mixed_effects(X, Y, np.zeros_like(Y))
    ols = glm.fit_ols(X, Y)
    assert fit.converged.all()
    assert fit.dof == ols.dof == N_MAPS - 2
    np.testing.assert_allclose(fit.sigma2_between, ols.residual_variance, rtol=1e-8)
    np.testing.assert_allclose(fit.beta, ols.beta, rtol=1e-8, atol=1e-12)
    for c in ([1, 0], [0, 1], [1, -1]):
        me_eff, me_var, me_t = mixed_effects_contrast(fit, c)
        ols_eff, ols_var, ols_t = glm.t_contrast(X, ols.beta, ols.residual_variance, c)
        np.testing.assert_allclose(me_eff, ols_eff, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(me_var, ols_var, rtol=1e-7)
        np.testing.assert_allclose(me_t, ols_t, rtol=1e-7)
        # Kenward-Roger: no adjustment and n - p dof in the OLS limit.
        _, kr_var, kr_t, kr_dof = mixed_effects_contrast_kenward_roger(fit, c)
        np.testing.assert_allclose(kr_var, ols_var, rtol=1e-7)
        np.testing.assert_allclose(kr_t, ols_t, rtol=1e-7)
        np.testing.assert_allclose(kr_dof, ols.dof, rtol=1e-6)
    f, q = mixed_effects_f_contrast(fit, np.eye(2))
    f_ols, _ = glm.f_contrast(X, ols.beta, ols.residual_variance, np.eye(2))
    assert q == 2
    np.testing.assert_allclose(f, f_ols, rtol=1e-7)


def test_zero_first_level_variance_equals_nilearn_second_level_model():
    rng = np.random.default_rng(2)
    shape = (4, 4, 3)
    n_vox = int(np.prod(shape))
    X, Y, _ = _data(rng, n_vox=n_vox)
    affine = np.eye(4)
    imgs = [nib.Nifti1Image(y.reshape(shape), affine) for y in Y]
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.int8), affine)
    design = pd.DataFrame(X, columns=["intercept", "covariate"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SecondLevelModel(mask_img=mask).fit(imgs, design_matrix=design)
        nl_t = model.compute_contrast([0, 1], output_type="stat").get_fdata()
        nl_eff = model.compute_contrast([0, 1], output_type="effect_size").get_fdata()
    fit = fit_mixed_effects(X, Y, np.zeros_like(Y))
    eff, _, t = mixed_effects_contrast(fit, [0, 1])
    np.testing.assert_allclose(eff, nl_eff.ravel(), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(t, nl_t.ravel(), rtol=1e-6)


# ----------------------------------------------------------------------------
# Fixed effects
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("precision_weighted", [True, False])
@pytest.mark.parametrize("dofs", [None, [30, 40, 25, 50, 12]])
def test_fixed_effects_equal_nilearn(precision_weighted, dofs):
    rng = np.random.default_rng(3)
    shape = (5, 4, 3)
    n = 5
    affine = np.eye(4)
    effects = rng.standard_normal((n, *shape)) + 0.3
    variances = np.exp(rng.uniform(np.log(0.05), np.log(5.0), (n, *shape)))
    variances[0, 0, 0, 0] = 0.0  # floored at 1e-16 by both
    mask_data = np.ones(shape, dtype=bool)
    mask_data[0, 1, 0] = False
    mask = nib.Nifti1Image(mask_data.astype(np.int8), affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = compute_fixed_effects(
            [nib.Nifti1Image(e, affine) for e in effects],
            [nib.Nifti1Image(v, affine) for v in variances],
            mask=mask,
            precision_weighted=precision_weighted,
            dofs=dofs,
        )
    ref = [img.get_fdata()[mask_data] for img in ref]
    res = fixed_effects(
        effects[:, mask_data],
        variances[:, mask_data],
        precision_weighted=precision_weighted,
        dofs=dofs,
    )
    np.testing.assert_allclose(res.effect, ref[0], rtol=1e-10)
    np.testing.assert_allclose(res.variance, ref[1], rtol=1e-10)
    np.testing.assert_allclose(res.t, ref[2], rtol=1e-10)
    np.testing.assert_allclose(res.z, ref[3], rtol=1e-8, atol=1e-10)
    assert res.dof == (100 * n if dofs is None else sum(dofs))


def test_fixed_effects_precision_weighted_formula():
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((6, 50))
    V = rng.uniform(0.1, 4.0, (6, 50))
    res = fixed_effects(Y, V)
    w = 1.0 / V
    np.testing.assert_allclose(res.effect, (w * Y).sum(0) / w.sum(0), rtol=1e-12)
    np.testing.assert_allclose(res.variance, 1.0 / w.sum(0), rtol=1e-12)


def test_zero_between_variance_is_weighted_least_squares():
    """sigma2_between = 0 given: GLS equals WLS written out with lstsq."""
    rng = np.random.default_rng(5)
    X, Y, V = _data(rng, n_vox=40)
    fit = fit_mixed_effects(X, Y, V, sigma2_between=0.0)
    for v in range(Y.shape[1]):
        sw = 1.0 / np.sqrt(V[:, v])
        beta, *_ = np.linalg.lstsq(X * sw[:, None], Y[:, v] * sw, rcond=None)
        cov = np.linalg.inv(X.T @ (X / V[:, v][:, None]))
        np.testing.assert_allclose(fit.beta[:, v], beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.cov_beta[:, :, v], cov, rtol=1e-9, atol=1e-14)
    # Intercept-only design: the precision-weighted fixed effects.
    ones = np.ones((Y.shape[0], 1))
    fit1 = fit_mixed_effects(ones, Y, V, sigma2_between=0.0)
    eff, var, t = mixed_effects_contrast(fit1, [1])
    fe = fixed_effects(Y, V)
    np.testing.assert_allclose(eff, fe.effect, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(var, fe.variance, rtol=1e-10)
    np.testing.assert_allclose(t, fe.t, rtol=1e-9)


def test_approaches_fixed_effects_when_no_between_variance():
    """True sigma2_between = 0 and large first-level variances."""
    rng = np.random.default_rng(6)
    n, n_vox = 20, 2000
    V = np.exp(rng.uniform(np.log(10.0), np.log(200.0), (n, n_vox)))
    Y = 1.0 + rng.standard_normal((n, n_vox)) * np.sqrt(V)
    fit = fit_mixed_effects(np.ones((n, 1)), Y, V)
    eff, var, t = mixed_effects_contrast(fit, [1])
    fe = fixed_effects(Y, V)
    assert fit.converged.all()
    # REML puts sigma2_between at the boundary 0 in many voxels; there the
    # estimate is exactly the fixed-effects estimate.
    at_zero = fit.sigma2_between == 0
    assert at_zero.mean() > 0.3
    np.testing.assert_allclose(eff[at_zero], fe.effect[at_zero], rtol=1e-9)
    np.testing.assert_allclose(var[at_zero], fe.variance[at_zero], rtol=1e-9)
    # Elsewhere the estimate is small compared with the first-level variances
    # and the mixed-effects variance is never below the fixed-effects one.
    assert np.median(fit.sigma2_between / V.mean(0)) < 0.05
    assert np.all(var >= fe.variance * (1 - 1e-9))
    assert np.corrcoef(t, fe.t)[0, 1] > 0.97
    assert np.median(var / fe.variance) < 1.1


# ----------------------------------------------------------------------------
# REML estimate against a scalar optimisation of the written-out likelihood
# ----------------------------------------------------------------------------


def test_reml_estimate_matches_scalar_optimisation():
    rng = np.random.default_rng(7)
    X, Y, V = _data(rng, n_vox=12, sigma2_between=0.8, v_range=(0.05, 5.0))
    # A voxel with no between-subject spread (boundary optimum expected).
    Y[:, 0] = X @ [0.5, -0.3] + rng.standard_normal(N_MAPS) * np.sqrt(V[:, 0])
    fit = fit_mixed_effects(X, Y, V)
    assert fit.converged.all()
    ours_ll = reml_log_likelihood(X, Y, V, fit.sigma2_between)
    n_interior = 0
    for v in range(Y.shape[1]):
        y, var = Y[:, v], V[:, v]
        ref_s, ref_ll, upper = reference_reml_sigma2(X, y, var)
        s_hat = fit.sigma2_between[v]
        # Our estimate is at least as likely as the reference one ...
        assert reference_reml_loglik(X, y, var, s_hat) >= ref_ll - 1e-8
        # ... and equal to it.
        np.testing.assert_allclose(s_hat, ref_s, rtol=1e-5, atol=1e-7 * upper)
        n_interior += ref_s > 0
        # Our log-likelihood differs from the reference by a constant only.
        for s in (0.0, 0.3, 2.0):
            diff = reml_log_likelihood(X, Y[:, [v]], V[:, [v]], s)[0] - (
                reference_reml_loglik(X, y, var, s)
            )
            diff_hat = ours_ll[v] - reference_reml_loglik(X, y, var, s_hat)
            np.testing.assert_allclose(diff, diff_hat, atol=1e-8)
    assert n_interior >= 8


def test_gls_given_reml_estimate():
    """beta and its covariance are the GLS estimates at the REML sigma2."""
    rng = np.random.default_rng(8)
    X, Y, V = _data(rng, n_vox=5)
    fit = fit_mixed_effects(X, Y, V)
    for v in range(Y.shape[1]):
        beta, cov, _ = reference_gls(X, Y[:, v], V[:, v], fit.sigma2_between[v])
        np.testing.assert_allclose(fit.cov_beta[:, :, v], cov, rtol=1e-9)
        np.testing.assert_allclose(fit.beta[:, v], beta, rtol=1e-9, atol=1e-12)


def test_kenward_roger_terms_written_out():
    """var(s) = 2 / tr(PP) with P built explicitly, dPhi/ds by finite
    differences, Phi_A = Phi + 2 var(s) Phi (X'W^3X - X'W^2X Phi X'W^2X) Phi."""
    rng = np.random.default_rng(11)
    X, Y, V = _data(rng, n_vox=4, v_range=(0.05, 5.0))
    fit = fit_mixed_effects(X, Y, V)
    c = np.array([0.0, 1.0])
    _, kr_var, kr_t, kr_dof = mixed_effects_contrast_kenward_roger(fit, c)
    for v in range(Y.shape[1]):
        s = fit.sigma2_between[v]
        assert s > 0
        W = np.diag(1.0 / (V[:, v] + s))
        phi = np.linalg.inv(X.T @ W @ X)
        P = W - W @ X @ phi @ X.T @ W
        var_s = 2.0 / np.trace(P @ P)
        np.testing.assert_allclose(fit.sigma2_variance[v], var_s, rtol=1e-9)
        x2, x3 = X.T @ W @ W @ X, X.T @ W @ W @ W @ X
        phi_a = phi + 2 * var_s * phi @ (x3 - x2 @ phi @ x2) @ phi
        np.testing.assert_allclose(kr_var[v], c @ phi_a @ c, rtol=1e-9)
        h = 1e-5 * s

        def phi_c(s2, v=v):
            one = fit_mixed_effects(X, Y[:, [v]], V[:, [v]], sigma2_between=s2)
            return mixed_effects_contrast(one, c)[1][0]

        g = (phi_c(s + h) - phi_c(s - h)) / (2 * h)
        dof = 2 * (c @ phi @ c) ** 2 / (g**2 * var_s)
        np.testing.assert_allclose(kr_dof[v], dof, rtol=1e-5)
        # The adjustment only inflates the variance (the KR term is PSD).
        assert kr_var[v] >= c @ phi @ c
        assert abs(kr_t[v]) <= abs(mixed_effects_contrast(fit, c)[2][v])


# ----------------------------------------------------------------------------
# Contrasts, chunking, rank deficiency, input checks
# ----------------------------------------------------------------------------


FIT_FIELDS = ("beta", "cov_beta", "sigma2_between", "converged", "n_iter", "sigma2_variance",
              "cov_beta_derivative", "cov_beta_adjusted")


def test_chunks_give_the_bits_of_one_fit():
    """Chunks on block bounds: bit for bit; any other chunks: equal to 1e-12."""
    rng = np.random.default_rng(9)
    block = block_size(N_MAPS)
    X, Y, V = _data(rng, n_vox=2 * block + 101)
    whole = fit_mixed_effects(X, Y, V)

    def chunked(edges):
        pieces = [(slice(a, b), Y[:, a:b], V[:, a:b]) for a, b in pairwise(edges)]
        return fit_mixed_effects_chunks(X, pieces[::-1], Y.shape[1])  # any order

    n = Y.shape[1]
    on_blocks = chunked([0, block, 2 * block, n])
    anywhere = chunked([0, 17, 1500, 2100, n])
    for name in FIT_FIELDS:
        np.testing.assert_array_equal(getattr(on_blocks, name), getattr(whole, name), name)
        np.testing.assert_allclose(getattr(anywhere, name), getattr(whole, name), rtol=1e-12,
                                   atol=1e-15, err_msg=name)
    with pytest.raises(ValueError, match="the chunks hold 17 voxels, not"):
        fit_mixed_effects_chunks(X, [(slice(0, 17), Y[:, :17], V[:, :17])], n)


def test_blocks_hold_a_bounded_number_of_values():
    """Powers of two from 64 to 1,024 voxels, at most BLOCK_VALUES values when above 64."""
    for n_maps in (2, 16, 50, 200, 257, 800, 2000, 10**5):
        block = block_size(n_maps)
        assert block in (64, 128, 256, 512, 1024)
        assert block * n_maps <= BLOCK_VALUES or block == 64
        assert block == 1024 or 2 * block * n_maps > BLOCK_VALUES
    assert block_size(800) == 256


def test_f_equals_t_squared():
    rng = np.random.default_rng(9)
    X, Y, V = _data(rng, n_vox=101)
    whole = fit_mixed_effects(X, Y, V)
    _, _, t = mixed_effects_contrast(whole, [0, 1])
    f, q = mixed_effects_f_contrast(whole, [[0, 1]])
    assert q == 1
    np.testing.assert_allclose(f, t**2, rtol=1e-10)


def test_rank_deficient_design_gives_same_estimable_contrast():
    rng = np.random.default_rng(10)
    X, Y, V = _data(rng, n_vox=30)
    X_dup = np.column_stack([X, X[:, 1]])  # covariate duplicated
    full = fit_mixed_effects(X, Y, V)
    dup = fit_mixed_effects(X_dup, Y, V)
    assert dup.dof == full.dof
    np.testing.assert_allclose(dup.sigma2_between, full.sigma2_between, rtol=1e-7, atol=1e-12)
    a = mixed_effects_contrast(full, [0, 1])
    b = mixed_effects_contrast(dup, [0, 1, 1])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-7, atol=1e-12)


def test_invalid_inputs():
    X = np.ones((4, 1))
    Y = np.zeros((4, 3))
    with pytest.raises(ValueError):
        fit_mixed_effects(X, Y, -np.ones((4, 3)))
    with pytest.raises(ValueError):
        fit_mixed_effects(np.ones((5, 1)), Y, np.ones((4, 3)))
    with pytest.raises(ValueError):
        fit_mixed_effects(np.eye(4), Y, np.ones((4, 3)))
    with pytest.raises(ValueError):
        mixed_effects_contrast(fit_mixed_effects(X, Y, np.ones((4, 3))), [1, 0])
