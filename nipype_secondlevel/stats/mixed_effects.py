"""Second-level estimation that uses the first-level variance maps.

Arrays only: ``Y`` is (n_maps, n_voxels) first-level effect maps, ``V`` is
(n_maps, n_voxels) their first-level variances, ``X`` is (n_maps, n_regressors)
the group design.

Two estimators are provided:

* :func:`fixed_effects` -- the fixed-effects combination of nilearn's
  ``compute_fixed_effects`` (same formulas, same degrees of freedom, same z).
* :func:`fit_mixed_effects` -- a FLAME1-like mixed-effects model. At every
  voxel ``Y_i = X_i beta + e_i`` with ``Var(e_i) = V_i + sigma2_between``; the
  between-subject variance ``sigma2_between >= 0`` is estimated by restricted
  maximum likelihood (REML) and ``beta`` by generalised least squares (GLS)
  given it. :func:`mixed_effects_contrast` and
  :func:`mixed_effects_f_contrast` give the contrast statistics on
  n - rank(X) dof (FLAME1); :func:`mixed_effects_contrast_kenward_roger`
  gives t with the Kenward-Roger small-sample correction.

All voxels are processed together (vectorised; no Python loop over voxels),
optionally in chunks of voxels to bound memory.
"""

from dataclasses import dataclass

import numpy as np

from .glm import TINY, design_rank, fit_ols, residual_dof, t_to_z

#: First-level variances are floored at this before weighting, as nilearn's
#: ``_compute_fixed_effects_params`` does.
FIXED_EFFECTS_TINY = 1e-16

#: Degrees of freedom assumed per first-level map when none are given
#: (nilearn's ``compute_fixed_effects`` default).
DEFAULT_FIRST_LEVEL_DOF = 100

#: Cap on the degrees of freedom used for p and z values (nilearn's
#: ``Contrast.dofmax``).
DOF_MAX = 1e10

#: Total variances ``V_i + sigma2_between`` are floored at this fraction of
#: the voxel's variance scale, so that zero first-level variances with a zero
#: between-subject variance do not give infinite weights.
RELATIVE_VARIANCE_FLOOR = 1e-12


# --------------------------------------------------------------------------
# Fixed effects
# --------------------------------------------------------------------------


@dataclass
class FixedEffectsResult:
    """Result of :func:`fixed_effects`.

    Attributes
    ----------
    effect : ndarray (n_voxels,)
        Combined effect.
    variance : ndarray (n_voxels,)
        Variance of the combined effect.
    t : ndarray (n_voxels,)
        effect / sqrt(variance).
    z : ndarray (n_voxels,)
        z score with the same one-sided p value as ``t`` at ``dof``.
    dof : float
        Degrees of freedom of ``t``: the sum of the first-level dofs.
    """

    effect: np.ndarray
    variance: np.ndarray
    t: np.ndarray
    z: np.ndarray
    dof: float


def fixed_effects(Y, V, precision_weighted=True, dofs=None):
    """Fixed-effects combination of effect maps, as nilearn's ``compute_fixed_effects``.

    weighted: var = 1 / sum(1/V_i), effect = var * sum(Y_i/V_i); unweighted: effect = mean(Y), var = mean(V)/n

    Parameters
    ----------
    Y : array (n_maps, n_voxels)
        First-level effect maps.
    V : array (n_maps, n_voxels)
        Their first-level variances; floored at ``FIXED_EFFECTS_TINY``.
    precision_weighted : bool, default=True
        Weight each map by its inverse variance. Note that nilearn's
        ``compute_fixed_effects`` defaults to False (the unweighted mean).
    dofs : sequence of float (n_maps,) or None
        First-level degrees of freedom; ``t`` has ``sum(dofs)`` dof (capped at
        ``DOF_MAX``). None means ``DEFAULT_FIRST_LEVEL_DOF`` per map, as nilearn.

    Returns
    -------
    FixedEffectsResult
    """
    Y = np.asarray(Y, dtype=float)
    V = np.maximum(np.asarray(V, dtype=float), FIXED_EFFECTS_TINY)
    if Y.shape != V.shape:
        raise ValueError(f"effects have shape {Y.shape} but variances have shape {V.shape}")
    n_maps = Y.shape[0]
    if dofs is None:
        dofs = [DEFAULT_FIRST_LEVEL_DOF] * n_maps
    elif len(dofs) != n_maps:
        raise ValueError(f"{len(dofs)} degrees of freedom given for {n_maps} maps")
    if precision_weighted:
        weights = 1.0 / V
        variance = 1.0 / weights.sum(axis=0)
        effect = (Y * weights).sum(axis=0) * variance
    else:
        variance = V.mean(axis=0) / n_maps
        effect = Y.mean(axis=0)
    dof = float(np.sum(dofs))
    t = effect / np.sqrt(np.maximum(variance, TINY))
    z = t_to_z(t, min(dof, DOF_MAX))
    return FixedEffectsResult(effect=effect, variance=variance, t=t, z=z, dof=dof)


# --------------------------------------------------------------------------
# Mixed effects (FLAME1-like, REML + GLS)
# --------------------------------------------------------------------------


@dataclass
class MixedEffectsFit:
    """Result of :func:`fit_mixed_effects`.

    Attributes
    ----------
    beta : ndarray (n_regressors, n_voxels)
        GLS parameter estimates given ``sigma2_between`` (the minimum-norm
        solution when ``X`` is rank deficient; estimable contrasts are unique).
    cov_beta : ndarray (n_regressors, n_regressors, n_voxels)
        Covariance of ``beta``, (X' W X)^+ with W = diag(1 / (V + sigma2_between)).
    sigma2_between : ndarray (n_voxels,)
        REML estimate (or the given value) of the between-subject variance.
    dof : float
        Degrees of freedom of the contrast t statistics, n_maps - rank(X).
    converged : ndarray of bool (n_voxels,)
        Whether the REML iterations met the tolerance (True when
        ``sigma2_between`` was given).
    n_iter : ndarray of int (n_voxels,)
        Newton/Fisher-scoring iterations used at each voxel.
    sigma2_variance : ndarray (n_voxels,)
        Asymptotic variance of the REML ``sigma2_between``, the inverse
        expected information 2 / tr(PP); 0 when ``sigma2_between`` was given.
    cov_beta_derivative : ndarray (n_regressors, n_regressors, n_voxels)
        d cov_beta / d sigma2_between = Phi X'W^2X Phi (Phi = cov_beta).
    cov_beta_adjusted : ndarray (n_regressors, n_regressors, n_voxels)
        Kenward-Roger small-sample covariance
        Phi + 2 var(s) Phi (X'W^3X - X'W^2X Phi X'W^2X) Phi.
    """

    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2_between: np.ndarray
    dof: float
    converged: np.ndarray
    n_iter: np.ndarray
    sigma2_variance: np.ndarray
    cov_beta_derivative: np.ndarray
    cov_beta_adjusted: np.ndarray


def column_space_basis(X):
    """Orthonormal basis of the column space of ``X`` and the map back to ``beta``.

    X = Q T with Q'Q = I_r, r = rank(X) ; beta = T^+ gamma

    Parameters
    ----------
    X : array (n_maps, n_regressors)

    Returns
    -------
    Q : ndarray (n_maps, r)
    T_pinv : ndarray (n_regressors, r)
        Pseudo-inverse of ``T``, mapping coefficients on ``Q`` to ``beta``.
    """
    X = np.asarray(X, dtype=float)
    r = design_rank(X)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    return U[:, :r], Vt[:r].T / s[:r]


def _total_variance(V, sigma2, floor):
    """Total variance per map and voxel, floored.

    d_iv = max(V_iv + sigma2_v, floor_v)
    """
    return np.maximum(V + sigma2, floor)


def _reml_terms(Q, Y, V, sigma2, floor, derivatives=False):
    """REML log-likelihood in ``sigma2`` (and its derivatives) at every voxel.

    l(s) = -1/2 [ sum_i log d_i + log|Q'WQ| + y'Py ],  P = W - WQ(Q'WQ)^-1 Q'W, W = D^-1

    The constant -1/2 [(n - r) log 2 pi] is omitted. With ``derivatives`` the
    score dl/ds = 1/2 (y'PPy - tr P), the expected information 1/2 tr(PP) and
    the second derivative 1/2 tr(PP) - y'PPPy are added, using only
    (r, r) matrices per voxel.

    Parameters
    ----------
    Q : array (n_maps, r)
        Orthonormal basis of the design's column space.
    Y, V : arrays (n_maps, n_voxels)
    sigma2, floor : arrays (n_voxels,)
    derivatives : bool

    Returns
    -------
    dict of ndarrays with keys ``loglik``, ``gamma`` (n_voxels, r),
    ``a_inv`` (n_voxels, r, r) and, with ``derivatives``, ``score``,
    ``information``, ``hessian``, ``a_inv_b`` = (Q'WQ)^-1 Q'W^2Q and
    ``a_inv_c`` = (Q'WQ)^-1 Q'W^3Q.
    """
    d = _total_variance(V, sigma2, floor)
    w = 1.0 / d
    a = np.einsum("iv,ia,ib->vab", w, Q, Q)
    a_inv = np.linalg.inv(a)
    _, logdet_a = np.linalg.slogdet(a)
    gamma = np.einsum("vab,vb->va", a_inv, np.einsum("iv,ia->va", w * Y, Q))
    resid = Y - Q @ gamma.T
    u = w * resid  # = P y
    ypy = np.einsum("iv,iv->v", u, resid)
    out = {
        "loglik": -0.5 * (np.log(d).sum(axis=0) + logdet_a + ypy),
        "gamma": gamma,
        "a_inv": a_inv,
    }
    if derivatives:
        a_inv_b = a_inv @ np.einsum("iv,ia,ib->vab", w**2, Q, Q)
        a_inv_c = a_inv @ np.einsum("iv,ia,ib->vab", w**3, Q, Q)
        tr_p = w.sum(axis=0) - np.einsum("vaa->v", a_inv_b)
        tr_pp = (
            (w**2).sum(axis=0)
            - 2.0 * np.einsum("vaa->v", a_inv_c)
            + np.einsum("vab,vba->v", a_inv_b, a_inv_b)
        )
        ypppy_head = np.einsum("iv,ia->va", w * u, Q)
        yppy = np.einsum("iv,iv->v", u, u)
        ypppy = np.einsum("iv,iv->v", w * u, u) - np.einsum(
            "va,vab,vb->v", ypppy_head, a_inv, ypppy_head
        )
        out["a_inv_b"], out["a_inv_c"] = a_inv_b, a_inv_c
        out["score"] = 0.5 * (yppy - tr_p)
        out["information"] = 0.5 * tr_pp
        out["hessian"] = 0.5 * tr_pp - ypppy
    return out


def _variance_scale(X, Y, V):
    """Per-voxel variance scale used for the start grid, floors and tolerances.

    scale = max(OLS residual variance, mean_i V_i), 1 where that is 0
    """
    scale = np.maximum(fit_ols(X, Y).residual_variance, V.mean(axis=0))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def _check_inputs(X, Y, V):
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    V = np.asarray(V, dtype=float)
    if Y.ndim != 2 or Y.shape != V.shape:
        raise ValueError(f"Y and V must be 2-D of the same shape, got {Y.shape} and {V.shape}")
    if X.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"design has shape {X.shape} but there are {Y.shape[0]} maps")
    if np.any(V < 0):
        raise ValueError("first-level variances must be non-negative")
    return X, Y, V


def reml_log_likelihood(X, Y, V, sigma2_between):
    """REML log-likelihood of ``sigma2_between`` at every voxel.

    l(s) = -1/2 [ sum_i log(V_i + s) + log|Q'WQ| + y'Py ] + const, W = diag(1/(V + s))

    Up to an additive constant that depends on neither the data nor ``s``
    (``Q`` is an orthonormal basis of the columns of ``X``).

    Parameters
    ----------
    X : array (n_maps, n_regressors)
    Y, V : arrays (n_maps, n_voxels)
    sigma2_between : float or array (n_voxels,)

    Returns
    -------
    ndarray (n_voxels,)
    """
    X, Y, V = _check_inputs(X, Y, V)
    Q, _ = column_space_basis(X)
    sigma2 = np.broadcast_to(np.asarray(sigma2_between, dtype=float), Y.shape[1])
    floor = RELATIVE_VARIANCE_FLOOR * _variance_scale(X, Y, V)
    return _reml_terms(Q, Y, V, sigma2, floor)["loglik"]


def _estimate_sigma2(Q, Y, V, scale, n_grid, max_iter, tol):
    """REML estimate of the between-subject variance at every voxel.

    s <- max(0, s + step), step = -score/hessian (or score/information)

    A log-spaced grid of ``n_grid`` values in [1e-4, 10] * scale, plus 0,
    gives the start (the grid maximum, which guards against local maxima);
    then projected Newton steps on [0, inf) (Fisher scoring where the
    log-likelihood is not locally concave) with step halving until the
    log-likelihood does not decrease, for at most ``max_iter`` iterations.
    A voxel has converged when |s_new - s| <= tol * (s_new + tol * scale).

    Returns
    -------
    sigma2 : ndarray (n_voxels,)
    converged : ndarray of bool (n_voxels,)
    n_iter : ndarray of int (n_voxels,)
    """
    n_vox = Y.shape[1]
    floor = RELATIVE_VARIANCE_FLOOR * scale
    grid = np.concatenate([[0.0], np.logspace(-4, 1, n_grid)])
    best_ll = np.full(n_vox, -np.inf)
    sigma2 = np.zeros(n_vox)
    for g in grid:  # loop over start values, all voxels at once
        ll = _reml_terms(Q, Y, V, g * scale, floor)["loglik"]
        better = ll > best_ll
        best_ll[better] = ll[better]
        sigma2[better] = g * scale[better]

    converged = np.zeros(n_vox, dtype=bool)
    n_iter = np.zeros(n_vox, dtype=int)
    active = np.arange(n_vox)
    for _ in range(max_iter):
        if active.size == 0:
            break
        y, v, s, fl = Y[:, active], V[:, active], sigma2[active], floor[active]
        terms = _reml_terms(Q, y, v, s, fl, derivatives=True)
        ll = terms["loglik"]
        newton = terms["hessian"] < 0
        curvature = np.where(newton, -terms["hessian"], terms["information"])
        with np.errstate(divide="ignore", invalid="ignore"):
            step = terms["score"] / curvature
        step = np.where(np.isfinite(step), step, 0.0)
        # Backtracking, all active voxels at once.
        new = s.copy()
        pending = np.ones(active.size, dtype=bool)
        alpha = 1.0
        for _ in range(40):
            idx = np.flatnonzero(pending)
            if idx.size == 0:
                break
            trial = np.maximum(s[idx] + alpha * step[idx], 0.0)
            ll_trial = _reml_terms(Q, y[:, idx], v[:, idx], trial, fl[idx])["loglik"]
            ok = ll_trial >= ll[idx] - 1e-12 * np.abs(ll[idx])
            new[idx[ok]] = trial[ok]
            pending[idx[ok]] = False
            alpha *= 0.5
        # Where no step raised the likelihood, ``new`` stays at ``s``: a
        # numerical maximum along the step direction.
        n_iter[active] += 1
        done = np.abs(new - s) <= tol * (new + tol * scale[active])
        sigma2[active] = new
        converged[active[done]] = True
        active = active[~done]
    return sigma2, converged, n_iter


def fit_mixed_effects(
    X,
    Y,
    V,
    sigma2_between=None,
    chunk_size=None,
    max_iter=50,
    tol=1e-8,
    n_grid=21,
):
    """Fit the FLAME1-like mixed-effects model at every voxel.

    Y_i = X_i beta + e_i, e_i ~ N(0, V_i + s), s >= 0 by REML; beta = (X'WX)^+ X'W y, W = diag(1/(V + s))

    The between-subject variance ``s`` is estimated by restricted maximum
    likelihood (vectorised projected Newton / Fisher scoring from the best
    point of a start grid, see ``_estimate_sigma2``); ``beta`` and its
    covariance ``(X'WX)^+`` are the GLS estimates given ``s``. Contrasts are
    then tested with t (or F) on ``n_maps - rank(X)`` degrees of freedom, the
    choice of FSL's FLAME1 (n - p); this ignores the uncertainty in ``s`` and
    in ``V`` and is slightly liberal when ``s`` is comparable to ``V`` (see
    validation/mixed_effects_null_simulation.py);
    :func:`mixed_effects_contrast_kenward_roger` corrects for the former. With all ``V`` zero this is exactly OLS; with ``s`` = 0 it is
    weighted least squares (fixed effects).

    Parameters
    ----------
    X : array (n_maps, n_regressors)
        Group design.
    Y : array (n_maps, n_voxels)
        First-level effect maps.
    V : array (n_maps, n_voxels)
        First-level variances of ``Y`` (non-negative).
    sigma2_between : None, float or array (n_voxels,)
        None estimates it by REML; a value fixes it (0 gives fixed effects).
    chunk_size : int or None
        Number of voxels processed at a time. None processes all at once.
    max_iter : int, default=50
        Maximum Newton iterations per voxel.
    tol : float, default=1e-8
        Relative tolerance on ``sigma2_between``.
    n_grid : int, default=21
        Number of positive start values tried before the iterations.

    Returns
    -------
    MixedEffectsFit
    """
    X, Y, V = _check_inputs(X, Y, V)
    dof = residual_dof(X)
    if dof < 1:
        raise ValueError(
            "the mixed-effects model needs more maps than rank(X) "
            f"({Y.shape[0]} maps, rank {design_rank(X)})"
        )
    Q, T_pinv = column_space_basis(X)
    n_vox = Y.shape[1]
    p = X.shape[1]
    beta = np.empty((p, n_vox))
    cov_beta = np.empty((p, p, n_vox))
    cov_derivative = np.empty((p, p, n_vox))
    cov_adjusted = np.empty((p, p, n_vox))
    sigma2 = np.empty(n_vox)
    sigma2_variance = np.zeros(n_vox)
    converged = np.ones(n_vox, dtype=bool)
    n_iter = np.zeros(n_vox, dtype=int)
    fixed = None
    if sigma2_between is not None:
        fixed = np.broadcast_to(np.asarray(sigma2_between, dtype=float), n_vox)
        if np.any(fixed < 0):
            raise ValueError("sigma2_between must be non-negative")
    step = n_vox if not chunk_size else int(chunk_size)
    for start in range(0, n_vox, max(step, 1)):
        cols = slice(start, start + step)
        y, v = Y[:, cols], V[:, cols]
        scale = _variance_scale(X, y, v)
        if fixed is None:
            s, conv, nit = _estimate_sigma2(Q, y, v, scale, n_grid, max_iter, tol)
            converged[cols], n_iter[cols] = conv, nit
        else:
            s = np.array(fixed[cols])
        terms = _reml_terms(Q, y, v, s, RELATIVE_VARIANCE_FLOOR * scale, derivatives=True)
        sigma2[cols] = s
        beta[:, cols] = T_pinv @ terms["gamma"].T
        if fixed is None:
            info = terms["information"]
            ok = np.isfinite(info) & (info > 0)
            sigma2_variance[cols] = np.where(ok, 1.0 / np.where(ok, info, 1.0), 0.0)
        a_inv, a_inv_b = terms["a_inv"], terms["a_inv_b"]
        # In the basis Q: dA^-1/ds = A^-1 B A^-1 ; KR term A^-1 (C - B A^-1 B) A^-1
        derivative = a_inv_b @ a_inv
        kr_term = (terms["a_inv_c"] - a_inv_b @ a_inv_b) @ a_inv
        adjusted = a_inv + 2.0 * sigma2_variance[cols, None, None] * kr_term
        for out, m in (
            (cov_beta, a_inv),
            (cov_derivative, derivative),
            (cov_adjusted, adjusted),
        ):
            out[:, :, cols] = np.einsum("pa,vab,qb->pqv", T_pinv, m, T_pinv)
    return MixedEffectsFit(
        beta=beta,
        cov_beta=cov_beta,
        sigma2_between=sigma2,
        dof=dof,
        converged=converged,
        n_iter=n_iter,
        sigma2_variance=sigma2_variance,
        cov_beta_derivative=cov_derivative,
        cov_beta_adjusted=cov_adjusted,
    )


def mixed_effects_contrast(fit, weights):
    """Effect, its variance and t for one contrast vector ``c``.

    effect = c beta ; variance = c cov_beta c' ; t = effect / sqrt(variance), dof = fit.dof

    Parameters
    ----------
    fit : MixedEffectsFit
    weights : array (n_regressors,)

    Returns
    -------
    effect, variance, t : ndarrays (n_voxels,)
        ``glm.t_to_z(t, fit.dof)`` gives the z map.
    """
    c = np.asarray(weights, dtype=float).ravel()
    if c.size != fit.beta.shape[0]:
        raise ValueError(
            f"contrast has {c.size} weights but the design has {fit.beta.shape[0]} columns"
        )
    effect = c @ fit.beta
    variance = np.einsum("i,ijv,j->v", c, fit.cov_beta, c)
    t = effect / np.sqrt(np.maximum(variance, TINY))
    return effect, variance, t


def mixed_effects_contrast_kenward_roger(fit, weights):
    """t for one contrast with the Kenward-Roger small-sample correction.

    variance = c Phi_A c' ; t = c beta / sqrt(variance) ; dof = 2 (c Phi c')^2 / ((c dPhi/ds c')^2 var(s))

    The FLAME1 choice (:func:`mixed_effects_contrast`, n - rank(X) dof)
    ignores the uncertainty in ``sigma2_between``. Kenward & Roger (1997)
    inflate the covariance to ``Phi_A`` (``fit.cov_beta_adjusted``) and, for
    a single contrast, use the Satterthwaite dof above (their ``m`` with
    scale factor 1). With all first-level variances zero this is exactly OLS
    on n - rank(X) dof. When ``sigma2_between`` was given (not estimated)
    the dof are infinite.

    Parameters
    ----------
    fit : MixedEffectsFit
    weights : array (n_regressors,)

    Returns
    -------
    effect, variance, t, dof : ndarrays (n_voxels,)
        ``glm.t_to_z(t, dof)`` gives the z map.
    """
    c = np.asarray(weights, dtype=float).ravel()
    effect, variance, _ = mixed_effects_contrast(fit, c)
    variance = np.einsum("i,ijv,j->v", c, fit.cov_beta_adjusted, c)
    phi_c = np.einsum("i,ijv,j->v", c, fit.cov_beta, c)
    g = np.einsum("i,ijv,j->v", c, fit.cov_beta_derivative, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = 2.0 * phi_c**2 / (g**2 * fit.sigma2_variance)
    dof = np.where(np.isnan(dof), np.inf, dof)
    t = effect / np.sqrt(np.maximum(variance, TINY))
    return effect, variance, t, dof


def mixed_effects_f_contrast(fit, weights):
    """F statistic for a contrast matrix ``C`` (q rows).

    F = (C beta)' [C cov_beta C']^-1 (C beta) / q, on (q, fit.dof) dof

    Returns
    -------
    f : ndarray (n_voxels,)
    q : int
        ``glm.f_to_z(f, q, fit.dof)`` gives the z map.
    """
    C = np.atleast_2d(np.asarray(weights, dtype=float))
    if C.shape[1] != fit.beta.shape[0]:
        raise ValueError(
            f"contrast has {C.shape[1]} columns but the design has {fit.beta.shape[0]}"
        )
    q = C.shape[0]
    cbeta = C @ fit.beta
    cov = np.einsum("ai,ijv,bj->vab", C, fit.cov_beta, C)
    sol = np.linalg.solve(cov, cbeta.T[:, :, None])[:, :, 0]
    f = np.einsum("av,va->v", cbeta, sol) / q
    return f, q
