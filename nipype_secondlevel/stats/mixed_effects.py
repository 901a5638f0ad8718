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

The voxels of a block are processed together (vectorised; no Python loop
over voxels); blocks of :func:`block_size` voxels bound the temporaries, and
:func:`fit_mixed_effects_chunks` takes the maps chunk by chunk, so that memory
does not grow with the number of maps. The REML estimate of the
between-subject variance is in :mod:`.reml`.
"""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .glm import TINY, design_rank, residual_dof, t_to_z
from .reml import (
    RELATIVE_VARIANCE_FLOOR,
    check_inputs,
    column_space_basis,
    estimate_sigma2,
    reml_terms,
    variance_scale,
)

#: First-level variances are floored at this before weighting, as nilearn's
#: ``_compute_fixed_effects_params`` does.
FIXED_EFFECTS_TINY = 1e-16

#: Degrees of freedom assumed per first-level map when none are given
#: (nilearn's ``compute_fixed_effects`` default).
DEFAULT_FIRST_LEVEL_DOF = 100

#: Cap on the degrees of freedom used for p and z values (nilearn's
#: ``Contrast.dofmax``).
DOF_MAX = 1e10

#: Values (maps x voxels) of a block of the mixed-effects fit, whose temporaries
#: take some 80 to 120 bytes a value (measured): about 30 MiB, whatever the number
#: of maps.
BLOCK_VALUES = 2**18


def block_size(n_maps):
    """Voxels per block of the mixed-effects fit of ``n_maps`` maps.

    The largest power of two holding at most :data:`BLOCK_VALUES` values, from
    64 to 1,024 voxels (larger blocks are no faster, measured). Blocks start at
    multiples of it on the voxel index, so the arithmetic (every bit of the
    estimate) does not depend on how the voxels are chunked; it divides 1,024.
    """
    voxels = max(BLOCK_VALUES // max(int(n_maps), 1), 1)
    return min(max(1 << (voxels.bit_length() - 1), 64), 1024)


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


def fit_mixed_effects(X, Y, V, sigma2_between=None, max_iter=50, tol=1e-8, n_grid=21):
    """Fit the FLAME1-like mixed-effects model at every voxel.

    Y_i = X_i beta + e_i, e_i ~ N(0, V_i + s), s >= 0 by REML; beta = (X'WX)^+ X'W y, W = diag(1/(V + s))

    The between-subject variance ``s`` is estimated by restricted maximum
    likelihood (vectorised projected Newton / Fisher scoring from the best
    point of a start grid, see :func:`.reml.estimate_sigma2`); ``beta`` and
    its covariance ``(X'WX)^+`` are the GLS estimates given ``s``. Contrasts
    are then tested with t (or F) on ``n_maps - rank(X)`` degrees of freedom,
    the choice of FSL's FLAME1 (n - p); this ignores the uncertainty in ``s``
    and in ``V`` and is slightly liberal when ``s`` is comparable to ``V``
    (see validation/mixed_effects_null_simulation.py);
    :func:`mixed_effects_contrast_kenward_roger` corrects for the former.
    With all ``V`` zero this is exactly OLS; with ``s`` = 0 it is weighted
    least squares (fixed effects). Voxels are fitted in blocks of
    :func:`block_size` voxels, so the temporaries grow with neither the number
    of voxels nor that of maps; :func:`fit_mixed_effects_chunks` takes the
    maps in voxel chunks and gives the same bits.

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
    X, Y, V = check_inputs(X, Y, V)
    return fit_mixed_effects_chunks(X, [(slice(0, Y.shape[1]), Y, V)], Y.shape[1],
                                    sigma2_between, max_iter=max_iter, tol=tol, n_grid=n_grid)


def fit_mixed_effects_chunks(X, chunks, n_voxels, sigma2_between=None, max_iter=50, tol=1e-8,
                             n_grid=21, progress=None):
    """:func:`fit_mixed_effects` on maps given as voxel chunks, one chunk in memory at a time.

    Each voxel's estimate depends on that voxel's values only, and every chunk
    is cut into blocks at multiples of :func:`block_size` of the voxel index:
    whatever the chunks (as long as their bounds are multiples of 1,024, or
    the last voxel), the arithmetic is that of :func:`fit_mixed_effects` on
    all voxels, bit for bit. Memory is one chunk, one block's temporaries
    (about 30 MiB, see :data:`BLOCK_VALUES`) and the results, whose size does
    not depend on the number of maps.

    Parameters
    ----------
    X : array (n_maps, n_regressors)
    chunks : iterable of (slice, Y, V)
        Voxel columns ``slice`` (step 1) of the effect and variance maps,
        arrays (n_maps, width); together they cover every voxel once.
    n_voxels : int
    sigma2_between, max_iter, tol, n_grid
        As in :func:`fit_mixed_effects` (an array ``sigma2_between`` has
        ``n_voxels`` values).
    progress : callable or None
        ``progress(done, n_voxels, "voxels")`` after every block.

    Returns
    -------
    MixedEffectsFit
    """
    X = np.asarray(X, dtype=float)
    dof = residual_dof(X)
    if dof < 1:
        raise ValueError(
            "the mixed-effects model needs more maps than rank(X) "
            f"({X.shape[0]} maps, rank {design_rank(X)})"
        )
    fixed = None
    if sigma2_between is not None:
        fixed = np.broadcast_to(np.asarray(sigma2_between, dtype=float), n_voxels)
        if np.any(fixed < 0):
            raise ValueError("sigma2_between must be non-negative")
    p = X.shape[1]
    fit = MixedEffectsFit(
        beta=np.empty((p, n_voxels)),
        cov_beta=np.empty((p, p, n_voxels)),
        sigma2_between=np.empty(n_voxels),
        dof=dof,
        converged=np.ones(n_voxels, dtype=bool),
        n_iter=np.zeros(n_voxels, dtype=int),
        sigma2_variance=np.zeros(n_voxels),
        cov_beta_derivative=np.empty((p, p, n_voxels)),
        cov_beta_adjusted=np.empty((p, p, n_voxels)),
    )
    basis = column_space_basis(X)
    block_voxels = block_size(X.shape[0])
    options = {"n_grid": n_grid, "max_iter": max_iter, "tol": tol}
    filled = 0
    for cols, Y, V in chunks:
        _, Y, V = check_inputs(X, Y, V)
        first, stop = cols.start or 0, (cols.start or 0) + Y.shape[1]
        edges = [first, *range((first // block_voxels + 1) * block_voxels, stop, block_voxels),
                 stop]
        for a, b in pairwise(edges if stop > first else []):
            block = slice(a, b)
            _fit_block(X, basis, Y[:, a - first:b - first], V[:, a - first:b - first],
                       None if fixed is None else np.array(fixed[block]), fit, block, options)
            if progress:
                progress(filled + b - first, n_voxels, "voxels")
        filled += stop - first
        del Y, V  # before the next chunk is read
    if filled != n_voxels:
        raise ValueError(f"the chunks hold {filled} voxels, not {n_voxels}")
    return fit


def _fit_block(X, basis, Y, V, fixed, fit, cols, options):
    """Fit the voxels ``cols`` of ``fit`` from their maps ``Y``, ``V`` (one block).

    In the basis Q (X = Q T): Phi = T^+ A^-1 T^+', A = Q'WQ ; dA^-1/ds = A^-1 B A^-1 ;
    KR term A^-1 (C - B A^-1 B) A^-1, B = Q'W^2Q, C = Q'W^3Q
    """
    Q, T_pinv = basis
    scale = variance_scale(X, Y, V)
    if fixed is None:
        s, fit.converged[cols], fit.n_iter[cols] = estimate_sigma2(Q, Y, V, scale, **options)
    else:
        s = fixed
    terms = reml_terms(Q, Y, V, s, RELATIVE_VARIANCE_FLOOR * scale, derivatives=True)
    fit.sigma2_between[cols] = s
    fit.beta[:, cols] = T_pinv @ terms["gamma"].T
    if fixed is None:
        info = terms["information"]
        ok = np.isfinite(info) & (info > 0)
        fit.sigma2_variance[cols] = np.where(ok, 1.0 / np.where(ok, info, 1.0), 0.0)
    a_inv, a_inv_b = terms["a_inv"], terms["a_inv_b"]
    derivative = a_inv_b @ a_inv
    kr_term = (terms["a_inv_c"] - a_inv_b @ a_inv_b) @ a_inv
    adjusted = a_inv + 2.0 * fit.sigma2_variance[cols, None, None] * kr_term
    for out, m in (
        (fit.cov_beta, a_inv),
        (fit.cov_beta_derivative, derivative),
        (fit.cov_beta_adjusted, adjusted),
    ):
        out[:, :, cols] = np.einsum("pa,vab,qb->pqv", T_pinv, m, T_pinv)


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
