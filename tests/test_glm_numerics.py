"""OLS, contrasts and z transforms against numpy, scipy and nilearn."""

import numpy as np
import pytest
from scipy import stats

from nipype_secondlevel.stats import glm


@pytest.fixture
def paired_data():
    rng = np.random.default_rng(0)
    n, v = 12, 500
    a = rng.normal(size=(n, v)) + rng.normal(size=(1, v))
    b = a + rng.normal(0.3, 1.0, size=(n, v))
    X = np.column_stack([np.r_[np.ones(n), np.zeros(n)], np.vstack([np.eye(n)] * 2)])
    return X, np.vstack([a, b]), a, b


def test_fit_ols_equals_lstsq_and_chunking_does_not_matter(paired_data):
    X, Y, _, _ = paired_data
    fit = glm.fit_ols(X, Y)
    beta, rss, *_ = np.linalg.lstsq(X, Y, rcond=None)
    np.testing.assert_allclose(fit.beta, beta, atol=1e-10)
    assert fit.dof == X.shape[0] - np.linalg.matrix_rank(X)
    np.testing.assert_allclose(fit.residual_variance, rss / fit.dof, rtol=1e-10)
    chunked = glm.fit_ols(X, Y, chunk_size=37)
    # Equal up to rounding: BLAS may sum in another order for another chunk shape.
    np.testing.assert_allclose(chunked.beta, fit.beta, rtol=0, atol=1e-13)
    np.testing.assert_allclose(chunked.residual_variance, fit.residual_variance, rtol=1e-12)


def test_paired_t_equals_scipy_ttest_rel(paired_data):
    X, Y, a, b = paired_data
    fit = glm.fit_ols(X, Y)
    effect, _, t = glm.t_contrast(X, fit.beta, fit.residual_variance, [1] + [0] * 12)
    expected = stats.ttest_rel(a, b, axis=0)
    np.testing.assert_allclose(t, expected.statistic, rtol=1e-8)
    np.testing.assert_allclose(effect, (a - b).mean(axis=0), atol=1e-10)
    assert fit.dof == 11


def test_t_to_z_equals_nilearn_z_score_in_both_tails():
    from nilearn.glm._utils import z_score

    t = np.array([-40.0, -8.0, -3.0, -0.5, 0.0, 0.7, 3.1, 9.0, 45.0])
    dof = 15
    expected = z_score(stats.t.sf(t, dof), one_minus_pvalue=stats.t.cdf(t, dof))
    np.testing.assert_allclose(glm.t_to_z(t, dof), expected, rtol=1e-12)
    assert glm.t_to_z(np.array([9.0]), dof)[0] > 5  # precision kept in the upper tail


def test_f_contrast_of_one_row_is_t_squared(paired_data):
    X, Y, _, _ = paired_data
    fit = glm.fit_ols(X, Y)
    c = [1] + [0] * 12
    _, _, t = glm.t_contrast(X, fit.beta, fit.residual_variance, c)
    f, q = glm.f_contrast(X, fit.beta, fit.residual_variance, [c])
    assert q == 1
    np.testing.assert_allclose(f, t**2, rtol=1e-9)


def test_contrast_of_wrong_length_is_refused(paired_data):
    X, Y, _, _ = paired_data
    fit = glm.fit_ols(X, Y)
    with pytest.raises(ValueError, match="3 weights but the design has 13 columns"):
        glm.t_contrast(X, fit.beta, fit.residual_variance, [1, 0, 0])
