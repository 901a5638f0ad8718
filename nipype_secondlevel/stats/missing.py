"""Missing values: which map lacks data at which voxel, and the voxels that share it.

Arrays only: ``effects`` and ``variances`` are (n_maps, n_voxels), ``X`` is
(n_maps, n_regressors). Real first-level maps cover each subject's own brain
mask and mark the rest as NaN (SPM) or 0 (nilearn, FSL). The rule, in one place
(:func:`missing_values`): a map's value at a voxel is **missing** when

1. the effect is NaN, or its variance (when the map has one) is NaN;
2. the effect is exactly 0 and its variance is 0 (or NaN): a variance of 0 is no
   measurement, the first-level mask ends there (FSL's cope/varcope, nilearn's
   effect/variance maps);
3. with ``zeros_without_variance=True`` only: the effect is exactly 0 in a map
   given without a variance map.

Everything else is data, for the effect and the variance alike: an effect of 0
with a positive variance is a measured 0; an effect without a variance map is
data unless NaN, because a complete map may hold a true 0 and the default must
not turn a value analysed today into a missing one (so complete data give
today's results bit for bit). Infinite values are not missing but invalid:
the analysis mask leaves them out, as before. A variance of 0 or less beside a
non-zero effect is not missing either: weighted estimates refuse it.

:func:`missing_patterns` groups the voxels by their set of present maps (real
data have few such patterns), so that each group is fitted at once;
:func:`coverage` says which voxels have enough maps and an estimable design.
"""

from dataclasses import dataclass

import numpy as np


def missing_values(effects, variances=None, zeros_without_variance=False):
    """Where a map's value is missing (the rule of the module notes).

    missing = isnan(E) | isnan(V) | (E == 0 & (V == 0 | isnan(V))) ;
    without V: isnan(E) [| E == 0 with ``zeros_without_variance``]

    Parameters
    ----------
    effects : array (n_maps, n_voxels)
    variances : array (n_maps, n_voxels) or None
        The maps' first-level variances, if they have some (whatever the estimator:
        they show where each map's own mask ends).
    zeros_without_variance : bool, default=False
        Count an exact 0 of an effect given without a variance map as missing (for
        effect maps known to be 0 outside their mask; a true 0 is then lost).

    Returns
    -------
    ndarray of bool (n_maps, n_voxels)
    """
    effects = np.asarray(effects)
    missing = np.isnan(effects)
    if variances is not None:
        variances = np.asarray(variances)
        if variances.shape != effects.shape:
            raise ValueError(f"effects have shape {effects.shape} but variances "
                             f"{variances.shape}")
        no_variance = np.isnan(variances)
        missing |= no_variance
        missing |= (effects == 0) & ((variances == 0) | no_variance)
    elif zeros_without_variance:
        missing |= effects == 0
    return missing


def unusable_variances(effects, variances, zeros_without_variance=False):
    """Present values (not missing) whose variance a weighted estimate cannot use.

    unusable = ~missing & ~(0 < V < inf): a variance of 0 or less, or infinite,
    inside the map's own coverage. Mixed and fixed effects refuse them (the
    caller names the map, the first voxel and what helps: a smaller coverage
    or mask).

    Returns
    -------
    ndarray of bool (n_maps, n_voxels)
    """
    variances = np.asarray(variances)
    usable = (variances > 0) & np.isfinite(variances)
    return ~missing_values(effects, variances, zeros_without_variance) & ~usable


def mark_missing(effects, variances=None, zeros_without_variance=False):
    """Copies of the maps with NaN wherever :func:`missing_values` says missing.

    The per-voxel estimators (:mod:`.coverage`) and permutation tests
    (:mod:`.permutation.coverage`) read missing values as NaN.

    Returns
    -------
    effects : ndarray (n_maps, n_voxels), float, NaN where missing
    variances : ndarray or None, the same
    """
    missing = missing_values(effects, variances, zeros_without_variance)
    effects = np.array(effects, dtype=np.result_type(np.asarray(effects).dtype, np.float32))
    effects[missing] = np.nan
    if variances is not None:
        variances = np.array(variances, dtype=effects.dtype)
        variances[missing] = np.nan
    return effects, variances


def drop_incomplete_subjects(effects, variances, labels):
    """Mark every map of a subject missing (NaN) wherever one of them is, in place.

    A paired design's subject is its pair of maps: where one is missing the pair drops
    from the test at that voxel (both rows), as the paired differences of the
    permutation tests do; its estimate, dof and count are then those of the complete
    pairs. missing(s, v) = any over the rows r of s of isnan(E[r, v]) | isnan(V[r, v]).

    Parameters
    ----------
    effects : ndarray (n_maps, n_voxels), float, NaN where missing (:func:`mark_missing`)
    variances : ndarray or None, the same
    labels : sequence (n_maps,)
        The subject of every map.

    Returns
    -------
    effects, variances : the same arrays
    """
    missing = np.isnan(effects)
    if variances is not None:
        missing |= np.isnan(variances)
    _, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        lacking = missing[rows].any(axis=0)
        for row in rows:
            effects[row, lacking] = np.nan
            if variances is not None:
                variances[row, lacking] = np.nan
    return effects, variances


@dataclass(frozen=True)
class Pattern:
    """Voxels sharing one set of present maps.

    Attributes
    ----------
    rows : ndarray of int
        The present maps (rows of the data and of the design), increasing.
    voxels : ndarray of int
        The voxel columns with exactly these maps present, increasing.
    """

    rows: np.ndarray
    voxels: np.ndarray


def missing_patterns(present):
    """Group the voxels by their set of present maps.

    Parameters
    ----------
    present : array of bool (n_maps, n_voxels)

    Returns
    -------
    list of Pattern
        One per distinct column of ``present``, ordered by first voxel; every voxel
        in exactly one. A complete ``present`` gives one pattern of every row.
    """
    present = np.asarray(present, dtype=bool)
    n_maps, n_voxels = present.shape
    if present.all():
        return [Pattern(np.arange(n_maps), np.arange(n_voxels))]
    packed = np.ascontiguousarray(np.packbits(present, axis=0).T)  # one byte string per voxel
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    voxels_of = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=first.size))
    groups = np.split(voxels_of, bounds[:-1])
    return [Pattern(np.flatnonzero(present[:, groups[k][0]]), groups[k]) for k in order]


def estimable(X, contrasts=None, residual_dof=True, tol=1e-8):
    """Whether contrasts can be estimated from the rows ``X`` (with residual dof).

    C X^+ X = C (every row of C in the row space of X), rank(C (X'X)^+ C') = q,
    and n - rank(X) >= 1 with ``residual_dof``. ``contrasts`` None means every
    column (X of full column rank).
    """
    X = np.asarray(X, dtype=float)
    rank = int(np.linalg.matrix_rank(X)) if X.shape[0] else 0
    if residual_dof and X.shape[0] - rank < 1:
        return False
    if contrasts is None:
        return rank == X.shape[1]
    C = np.atleast_2d(np.asarray(contrasts, dtype=float))
    if not np.allclose(C @ np.linalg.pinv(X) @ X, C, atol=tol * max(np.abs(C).max(), 1.0)):
        return False
    return int(np.linalg.matrix_rank(C @ np.linalg.pinv(X.T @ X) @ C.T)) == C.shape[0]


@dataclass
class Coverage:
    """Which voxels are analysed, and with how many maps (see :func:`coverage`).

    Attributes
    ----------
    n_present : ndarray of int (n_voxels,)
        Maps present at every voxel (distinct subjects with ``labels``).
    analysed : ndarray of bool (n_voxels,)
        At least ``min_subjects`` and an estimable design on the present maps.
    n_too_few : int
        Voxels with some map present but fewer than ``min_subjects``.
    n_not_estimable : int
        Voxels with enough maps whose design is not estimable on them (e.g. a group
        with no subject left), left out.
    """

    n_present: np.ndarray
    analysed: np.ndarray
    n_too_few: int
    n_not_estimable: int


def coverage(present, X, contrasts=None, min_subjects=None, residual_dof=True, labels=None,
             patterns=None):
    """The voxels analysed with the maps present there.

    A voxel is analysed when at least ``min_subjects`` are present and every
    contrast is estimable from the design's rows of the present maps
    (:func:`estimable`).

    Parameters
    ----------
    present : array of bool (n_maps, n_voxels)
    X : array (n_maps, n_regressors)
    contrasts : list of arrays (p,) or (q, p), or None
        Contrasts to be tested; None requires a full-rank design at every voxel.
    min_subjects : int or None
        None: 1.
    residual_dof : bool
        Require n - rank >= 1 on the present rows (every estimator of the package).
    labels : sequence (n_maps,) or None
        Subject of every map: counts are then distinct subjects with a map present
        (a paired design's two maps are one subject); None counts maps.
    patterns : list of Pattern or None
        ``missing_patterns(present)``, if the caller has it.

    Returns
    -------
    Coverage
    """
    present = np.asarray(present, dtype=bool)
    X = np.asarray(X, dtype=float)
    min_subjects = 1 if min_subjects is None else min_subjects
    if labels is None:
        counts = present.sum(axis=0)
    else:
        _, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        per_subject = np.zeros((codes.max() + 1, present.shape[1]), dtype=bool)
        np.logical_or.at(per_subject, codes, present)
        counts = per_subject.sum(axis=0)
    analysed = np.zeros(present.shape[1], dtype=bool)
    not_estimable = 0
    for pattern in missing_patterns(present) if patterns is None else patterns:
        first = pattern.voxels[0]
        if counts[first] < min_subjects or pattern.rows.size == 0:
            continue
        rows = X[pattern.rows]
        if all(estimable(rows, c, residual_dof) for c in (contrasts or [None])):
            analysed[pattern.voxels] = True
        else:
            not_estimable += pattern.voxels.size
    too_few = int(((counts > 0) & (counts < min_subjects)).sum())
    return Coverage(n_present=counts, analysed=analysed, n_too_few=too_few,
                    n_not_estimable=not_estimable)
