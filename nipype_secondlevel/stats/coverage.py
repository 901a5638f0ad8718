"""Each voxel analysed with the maps present there (per-voxel subjects).

Arrays only: ``Y`` (and ``V``) are (n_maps, n_voxels) with NaN where a map's
value is missing (:func:`.missing.mark_missing`), ``X`` is (n_maps,
n_regressors). At every analysed voxel (:func:`.missing.coverage`) the model
of :mod:`.glm` (OLS) or :mod:`.mixed_effects` (mixed: REML between-subject
variance, GLS, Kenward-Roger; fixed) is fitted to the rows present there, as
if the others did not exist:

    beta_v = fit(X[r_v], Y[r_v, v]) ;  dof_v = |r_v| - rank(X[r_v])

OLS is vectorised over voxels (the normal equations of each voxel's present
rows, X' diag(present) X, all at once); mixed and fixed effects fit the voxels
sharing a set of present rows (a :class:`.missing.Pattern`) together, with the
existing REML code. Both work in blocks of :data:`BLOCK_VOXELS` aligned on the
voxel index (so a voxel's bits do not depend on how the voxels are chunked, as
long as chunks start at multiples of it). Every estimator gives the covariance
of its estimates per voxel, from which every contrast is computed at once.
Data with no missing value take today's code path, whole: same bits, same
speed. Voxels not analysed are NaN in every output.
"""

from dataclasses import dataclass, field

import numpy as np

from ..spec import DEFAULTS, ESTIMATIONS
from .contrasts import contrast_maps
from .glm import fit_ols
from .missing import Pattern, coverage, estimable, missing_patterns
from .mixed_effects import DOF_MAX, fit_mixed_effects, fit_mixed_effects_chunks
from .permutation.model import VOXEL_BLOCK

#: Voxels per block of the per-pattern fits; divides :data:`VOXEL_BLOCK` and every
#: mixed-effects block size (:func:`.mixed_effects.block_size`).
BLOCK_VOXELS = 1024

#: Estimators (the spec's --estimation values).
METHODS = ESTIMATIONS

#: Kenward-Roger pieces of a mixed fit, per voxel (the last axis).
_KR_FIELDS = ("cov_beta_adjusted", "cov_beta_derivative", "sigma2_variance")


@dataclass
class CoverageFit:
    """Per-voxel estimates from the maps present at each voxel (:func:`fit_with_missing`).

    Attributes
    ----------
    method : {"ols", "mixed", "fixed"}
    X : ndarray (n_maps, n_regressors)
    patterns : list of Pattern
        The sets of present maps of the analysed voxels, and their voxels.
    beta : ndarray (n_regressors, n_voxels)
    dof : ndarray (n_voxels,)
        Residual dof n_v - rank(X[r_v]) (fixed effects: n_v * first_level_dof,
        capped at ``DOF_MAX``, as nilearn).
    n_present : ndarray of int (n_voxels,)
    analysed : ndarray of bool (n_voxels,)
    n_too_few, n_not_estimable : int
        Voxels left out (see :class:`.missing.Coverage`).
    residual_variance : ndarray (n_voxels,) or None
        OLS.
    cov_beta : ndarray (n_regressors, n_regressors, n_voxels) or None
        Covariance of ``beta`` (OLS: sigma2_v (X_r' X_r)^+; None for complete
        data under OLS, whose contrasts are today's).
    sigma2_between : ndarray (n_voxels,) or None
    kenward_roger : dict of ndarrays or None
        Mixed: ``cov_beta_adjusted``, ``cov_beta_derivative``, ``sigma2_variance``.
    converged : ndarray of bool (n_voxels,) or None
        Mixed: the REML iterations met their tolerance.
    complete : bool
        No value was missing: the arrays are today's, bit for bit.
    """

    method: str
    X: np.ndarray
    patterns: list
    beta: np.ndarray
    dof: np.ndarray
    n_present: np.ndarray
    analysed: np.ndarray
    n_too_few: int = 0
    n_not_estimable: int = 0
    residual_variance: np.ndarray | None = None
    cov_beta: np.ndarray | None = None
    sigma2_between: np.ndarray | None = None
    kenward_roger: dict | None = None
    converged: np.ndarray | None = None
    complete: bool = field(default=False)


def _nans(*shape):
    return np.full(shape, np.nan)


def _empty_fit(method, X, n_voxels, cover):
    """A fit of ``n_voxels`` voxels, NaN until its patterns are fitted."""
    p = X.shape[1]
    fit = CoverageFit(method=method, X=X, patterns=[], beta=_nans(p, n_voxels),
                      dof=_nans(n_voxels), n_present=cover.n_present, analysed=cover.analysed,
                      n_too_few=cover.n_too_few, n_not_estimable=cover.n_not_estimable)
    fit.cov_beta = _nans(p, p, n_voxels)
    if method == "ols":
        fit.residual_variance = _nans(n_voxels)
    else:
        fit.sigma2_between = _nans(n_voxels)
        fit.converged = np.zeros(n_voxels, dtype=bool)
    if method == "mixed":
        fit.kenward_roger = {"cov_beta_adjusted": _nans(p, p, n_voxels),
                             "cov_beta_derivative": _nans(p, p, n_voxels),
                             "sigma2_variance": _nans(n_voxels)}
    return fit


def _complete_fit(method, X, Y, V, first_level_dof, n_present):
    """Today's estimate of complete data (the code path of the estimation interfaces)."""
    n, n_voxels = Y.shape
    fit = CoverageFit(method=method, X=X, patterns=[Pattern(np.arange(n), np.arange(n_voxels))],
                      beta=None, dof=None, n_present=np.full(n_voxels, n_present),
                      analysed=np.ones(n_voxels, dtype=bool), complete=True)
    if method == "ols":
        ols = fit_ols(X, Y, chunk_size=VOXEL_BLOCK)
        fit.beta, fit.residual_variance, dof = ols.beta, ols.residual_variance, ols.dof
    else:
        mixed = fit_mixed_effects_chunks(X, [(slice(0, n_voxels), Y, V)], n_voxels,
                                         sigma2_between=0.0 if method == "fixed" else None)
        fit.beta, fit.cov_beta, dof = mixed.beta, mixed.cov_beta, mixed.dof
        fit.sigma2_between, fit.converged = mixed.sigma2_between, mixed.converged
        if method == "mixed":
            fit.kenward_roger = {name: getattr(mixed, name) for name in _KR_FIELDS}
        else:
            dof = min(n * first_level_dof, DOF_MAX)
    fit.dof = np.full(n_voxels, float(dof))
    return fit


def _fit_ols_columns(fit, X, Y, present, cols):
    """OLS of the voxels ``cols`` on their present rows, all voxels at once.

    A_v = X' diag(w_v) X, beta_v = A_v^+ X' (w_v y_v), sigma2_v = ||w_v (y_v - X beta_v)||^2
    / dof_v, cov_v = sigma2_v A_v^+ (w_v: 1 where present, 0 where missing)
    """
    w = present[:, cols].astype(float)
    y = np.where(present[:, cols], np.asarray(Y[:, cols], dtype=float), 0.0)
    a_pinv = np.linalg.pinv(np.einsum("iv,ia,ib->vab", w, X, X), hermitian=True)
    beta = np.einsum("vab,vb->va", a_pinv, y.T @ X)
    resid = (y - X @ beta.T) * w
    sigma2 = np.einsum("iv,iv->v", resid, resid) / fit.dof[cols]
    fit.beta[:, cols] = beta.T
    fit.residual_variance[cols] = sigma2
    fit.cov_beta[:, :, cols] = (a_pinv * sigma2[:, None, None]).transpose(1, 2, 0)


def _fit_weighted_columns(fit, X, Y, V, rows, cols, first_level_dof):
    """Mixed or fixed effects of the voxels ``cols`` (indices) from the rows ``rows``."""
    y = np.asarray(Y[np.ix_(rows, cols)], dtype=float)
    v = np.asarray(V[np.ix_(rows, cols)], dtype=float)
    mixed = fit_mixed_effects(X[rows], y, v, sigma2_between=0.0 if fit.method == "fixed"
                              else None)
    fit.beta[:, cols], fit.cov_beta[:, :, cols] = mixed.beta, mixed.cov_beta
    fit.sigma2_between[cols], fit.converged[cols] = mixed.sigma2_between, mixed.converged
    if fit.method == "mixed":
        for name in _KR_FIELDS:
            fit.kenward_roger[name][..., cols] = getattr(mixed, name)
    else:
        fit.dof[cols] = min(rows.size * first_level_dof, DOF_MAX)


def fit_with_missing(X, Y, V=None, method="ols", min_subjects=None, contrasts=None,
                     first_level_dof=DEFAULTS["first_level_dof"], labels=None, progress=None):
    """Fit every voxel with the maps present there (NaN marks a missing value).

    beta_v = fit(X[r_v], Y[r_v, v]) at every voxel with |r_v| >= min_subjects and an
    estimable design on r_v ; dof_v = |r_v| - rank(X[r_v])

    Parameters
    ----------
    X : array (n_maps, n_regressors)
    Y : array (n_maps, n_voxels)
        Effects, NaN where missing (:func:`.missing.mark_missing`).
    V : array (n_maps, n_voxels) or None
        First-level variances, NaN where missing (mixed and fixed). Present
        values must be positive: check them before (a one-line error naming the
        map is the caller's).
    method : {"ols", "mixed", "fixed"}
    min_subjects : int or None
        Fewest maps (subjects with ``labels``) a voxel is analysed with.
    contrasts : list of arrays or None
        The contrasts to be tested: a voxel is analysed when every one is
        estimable on its rows (e.g. a paired design's subject columns need not
        be); None requires a full-rank design on the rows.
    first_level_dof : float
        Fixed effects: degrees of freedom of each map (nilearn's default 100).
    labels : sequence or None
        Subject of every map, for ``min_subjects`` (see :func:`.missing.coverage`).
    progress : callable or None
        ``progress(done, n_voxels, "voxels")`` as every block of voxels starts.

    Returns
    -------
    CoverageFit
        Call it on voxel chunks starting at multiples of :data:`VOXEL_BLOCK` for
        results that do not depend on the chunks.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y)
    if method != "ols" and (V is None or np.shape(V) != Y.shape):
        raise ValueError(f"{method} effects need variances of the effects' shape {Y.shape}")
    V = None if method == "ols" else np.asarray(V)
    present = ~np.isnan(Y)
    if V is not None:
        present &= ~np.isnan(V)
    if present.all() and Y.shape[1]:
        whole = coverage(present[:, :1], X, contrasts, min_subjects, labels=labels)
        if whole.analysed[0]:
            return _complete_fit(method, X, Y, V, first_level_dof, whole.n_present[0])
    patterns = missing_patterns(present)
    cover = coverage(present, X, contrasts, min_subjects, labels=labels, patterns=patterns)
    fit = _empty_fit(method, X, Y.shape[1], cover)
    fit.patterns = [p for p in patterns if cover.analysed[p.voxels[0]]]
    for pattern in fit.patterns:  # dof_v = n_v - rank(X[r_v])
        fit.dof[pattern.voxels] = pattern.rows.size - np.linalg.matrix_rank(X[pattern.rows])
    for start in range(0, Y.shape[1], BLOCK_VOXELS):
        if progress:
            progress(start, Y.shape[1], "voxels")
        block = np.arange(start, min(start + BLOCK_VOXELS, Y.shape[1]))
        block = block[cover.analysed[block]]
        if block.size == 0:
            continue
        if method == "ols":
            _fit_ols_columns(fit, X, Y, present, block)
            continue
        for pattern in missing_patterns(present[:, block]):
            _fit_weighted_columns(fit, X, Y, V, pattern.rows, block[pattern.voxels],
                                  first_level_dof)
    return fit


def coverage_contrast_maps(fit, weights):
    """Every map of one contrast from a :class:`CoverageFit`, each voxel with its own rows.

    One row of ``weights``: z, t, p, effect, variance; several: z, F, p (as
    :func:`.contrasts.contrast_maps`, on each voxel's own degrees of freedom;
    mixed t contrasts with Kenward-Roger), all voxels at once from the
    estimates' covariance. Voxels not analysed, or whose rows cannot estimate
    the contrast, are NaN.

    Returns
    -------
    maps : dict of ndarrays (n_voxels,)
    dof : ndarray (n_voxels,)
        The degrees of freedom of t (per voxel), or the denominator's of F.
    """
    rows = np.atleast_2d(np.asarray(weights, dtype=float))
    if fit.complete:
        if fit.method == "ols":
            maps, dof = contrast_maps(fit.X, fit.beta, rows, fit.dof[0],
                                      residual_variance=fit.residual_variance)
        else:
            maps, dof = contrast_maps(fit.X, fit.beta, rows, fit.dof[0], cov_beta=fit.cov_beta,
                                      kenward_roger=fit.kenward_roger)
        return maps, np.broadcast_to(np.asarray(dof, dtype=float), fit.dof.shape).copy()
    names = ("z", "t", "p", "effect", "variance") if len(rows) == 1 else ("z", "F", "p")
    maps = {name: _nans(fit.dof.size) for name in names}
    dof_out = _nans(fit.dof.size)
    cols = np.concatenate([p.voxels for p in fit.patterns
                           if estimable(fit.X[p.rows], rows, residual_dof=False)] or [[]])
    cols = np.sort(cols.astype(int))
    if cols.size:
        kenward_roger = None
        if fit.kenward_roger is not None:
            kenward_roger = {k: v[..., cols] for k, v in fit.kenward_roger.items()}
        values, dof = contrast_maps(fit.X, fit.beta[:, cols], rows, fit.dof[cols],
                                    cov_beta=fit.cov_beta[:, :, cols],
                                    kenward_roger=kenward_roger)
        for name in names:
            maps[name][cols] = values[name]
        dof_out[cols] = dof
    return maps, dof_out
