"""Ordinary least squares at every voxel, contrasts and their statistics.

Arrays only: ``Y`` is (n_maps, n_voxels), ``X`` is (n_maps, n_regressors).
The formulas follow nilearn.glm (OLS model, ``Contrast``) so that the numbers
agree with ``SecondLevelModel``; the tests assert that equality.
"""

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

#: BLAS threads of the matrix products: nodes are the unit of parallelism (one
#: process per core under MultiProc or SLURM), and threads of small products on
#: busy cores cost far more than they gain (the demo's fit: 0.8 s with two
#: threads beside another busy process, 0.04 s with one).
BLAS_THREADS = 1

#: Variances below this are treated as this (as nilearn's ``Contrast.tiny``).
TINY = 1e-50


@dataclass
class OLSFit:
    """Result of :func:`fit_ols`.

    Attributes
    ----------
    beta : ndarray (n_regressors, n_voxels)
        Parameter estimates.
    residual_variance : ndarray (n_voxels,)
        Residual sum of squares divided by ``dof``.
    dof : float
        Residual degrees of freedom, n_maps - rank(X).
    """

    beta: np.ndarray
    residual_variance: np.ndarray
    dof: float


def design_rank(X):
    """Rank of the design matrix (as numpy's SVD-based ``matrix_rank``)."""
    return int(np.linalg.matrix_rank(np.asarray(X, dtype=float)))


def residual_dof(X):
    """Residual degrees of freedom of an OLS fit: n - rank(X)."""
    X = np.asarray(X, dtype=float)
    return float(X.shape[0] - design_rank(X))


def fit_ols(X, Y, chunk_size=None):
    """Fit ``Y = X beta + e`` by OLS at every column (voxel) of ``Y``.

    beta = pinv(X) Y ; sigma2 = ||Y - X beta||^2 / (n - rank X)

    Parameters
    ----------
    X : array (n_maps, n_regressors)
    Y : array (n_maps, n_voxels)
    chunk_size : int or None
        Number of voxels processed at a time; bounds the temporary residual
        array to (n_maps, chunk_size). None processes all voxels at once.

    Returns
    -------
    OLSFit
    """
    X = np.asarray(X, dtype=float)
    n, n_vox = Y.shape
    if X.shape[0] != n:
        raise ValueError(
            f"design has {X.shape[0]} rows but there are {n} maps"
        )
    dof = residual_dof(X)
    pinv = np.linalg.pinv(X)
    beta = np.empty((X.shape[1], n_vox))
    rss = np.empty(n_vox)
    step = n_vox if not chunk_size else int(chunk_size)
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        for start in range(0, n_vox, max(step, 1)):
            cols = slice(start, start + step)
            y = np.asarray(Y[:, cols], dtype=float)
            beta[:, cols] = pinv @ y
            resid = y - X @ beta[:, cols]
            rss[cols] = np.einsum("ij,ij->j", resid, resid)
    with np.errstate(divide="ignore", invalid="ignore"):
        residual_variance = rss / dof if dof > 0 else np.full(n_vox, np.nan)
    return OLSFit(beta=beta, residual_variance=residual_variance, dof=dof)


def t_contrast(X, beta, residual_variance, weights):
    """Effect, its variance and t for one contrast vector ``c``.

    effect = c beta ; variance = sigma2 * c (X'X)^+ c' ; t = effect / sqrt(variance)

    Returns
    -------
    effect, variance, t : ndarrays (n_voxels,)
    """
    X = np.asarray(X, dtype=float)
    c = np.asarray(weights, dtype=float).ravel()
    if c.size != X.shape[1]:
        raise ValueError(
            f"contrast has {c.size} weights but the design has {X.shape[1]} columns"
        )
    xtx_pinv = np.linalg.pinv(X.T @ X)
    effect = c @ beta
    variance = residual_variance * float(c @ xtx_pinv @ c)
    t = effect / np.sqrt(np.maximum(variance, TINY))
    return effect, variance, t


def f_contrast(X, beta, residual_variance, weights):
    """F statistic for a contrast matrix ``C`` (q rows).

    F = (C beta)' [C (X'X)^+ C']^-1 (C beta) / (q sigma2)

    Returns
    -------
    f : ndarray (n_voxels,)
    q : int
    """
    X = np.asarray(X, dtype=float)
    C = np.atleast_2d(np.asarray(weights, dtype=float))
    if C.shape[1] != X.shape[1]:
        raise ValueError(
            f"contrast has {C.shape[1]} columns but the design has {X.shape[1]}"
        )
    q = C.shape[0]
    cov = C @ np.linalg.pinv(X.T @ X) @ C.T
    cbeta = C @ beta
    quad = np.einsum("iv,ij,jv->v", cbeta, np.linalg.inv(cov), cbeta)
    f = quad / q / np.maximum(residual_variance, TINY)
    return f, q


def t_to_p(t, dof):
    """One-sided p = P(T > t) for Student's t with ``dof`` degrees of freedom."""
    from scipy import stats  # (here: planning a run needs none of scipy.stats' 1 s)

    return stats.t.sf(t, dof)


def z_from_tail(p_upper, p_lower):
    """z with the same tail probability, as nilearn's ``z_score``.

    Uses isf(p_upper) where that is >= 0 and ppf(p_lower) elsewhere, which keeps
    precision in both tails.
    """
    from scipy import stats

    p_upper = np.clip(p_upper, 1e-300, 1 - 1e-16)
    p_lower = np.clip(p_lower, 1e-300, 1 - 1e-16)
    z = stats.norm.isf(p_upper)
    lower = z < 0
    z[lower] = stats.norm.ppf(p_lower[lower])
    return z


def t_to_z(t, dof):
    """z score with the same one-sided p value as ``t`` at ``dof``."""
    from scipy import stats

    t = np.asarray(t, dtype=float)
    return z_from_tail(stats.t.sf(t, dof), stats.t.cdf(t, dof))


def f_to_z(f, q, dof):
    """z score with the same upper-tail p value as ``f`` at (q, dof)."""
    from scipy import stats

    f = np.asarray(f, dtype=float)
    return z_from_tail(stats.f.sf(f, q, dof), stats.f.cdf(f, q, dof))
