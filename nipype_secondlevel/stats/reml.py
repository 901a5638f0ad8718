"""Restricted maximum likelihood (REML) of the between-subject variance.

Arrays only: ``Y`` is (n_maps, n_voxels) first-level effect maps, ``V`` is
(n_maps, n_voxels) their first-level variances, ``X`` is (n_maps, n_regressors)
the group design. At every voxel ``Y_i = X_i beta + e_i`` with
``Var(e_i) = V_i + s``; :func:`estimate_sigma2` maximises the REML
log-likelihood in ``s >= 0``, all voxels of a block at once (vectorised; no
Python loop over voxels). :mod:`.mixed_effects` fits the model with it.
"""

import numpy as np

from .glm import design_rank, fit_ols

#: Total variances ``V_i + sigma2_between`` are floored at this fraction of
#: the voxel's variance scale, so that zero first-level variances with a zero
#: between-subject variance do not give infinite weights.
RELATIVE_VARIANCE_FLOOR = 1e-12


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


def reml_terms(Q, Y, V, sigma2, floor, derivatives=False):
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


def variance_scale(X, Y, V):
    """Per-voxel variance scale used for the start grid, floors and tolerances.

    scale = max(OLS residual variance, mean_i V_i), 1 where that is 0
    """
    scale = np.maximum(fit_ols(X, Y).residual_variance, V.mean(axis=0))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def check_inputs(X, Y, V):
    """(X, Y, V) as float arrays; ValueError unless their shapes agree and V >= 0."""
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
    X, Y, V = check_inputs(X, Y, V)
    Q, _ = column_space_basis(X)
    sigma2 = np.broadcast_to(np.asarray(sigma2_between, dtype=float), Y.shape[1])
    floor = RELATIVE_VARIANCE_FLOOR * variance_scale(X, Y, V)
    return reml_terms(Q, Y, V, sigma2, floor)["loglik"]


def estimate_sigma2(Q, Y, V, scale, n_grid, max_iter, tol):
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
        ll = reml_terms(Q, Y, V, g * scale, floor)["loglik"]
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
        terms = reml_terms(Q, y, v, s, fl, derivatives=True)
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
            ll_trial = reml_terms(Q, y[:, idx], v[:, idx], trial, fl[idx])["loglik"]
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
