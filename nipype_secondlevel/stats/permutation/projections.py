"""Statistics of permuted data from their projections, in one numba pass.

For patterns G and the basis [U_x, U_Z] of span(X), one matrix product gives the
projections P_k = U_k' G R of every pattern at every voxel of a tile (see
:mod:`.model`). :func:`projection_pass` turns them into t or F,

    t = P_0 / sqrt(max(1 - sum_k P_k^2, TINY) / dof)
    F = (sum_{k<q} P_k^2 / q) / (max(1 - sum_k P_k^2, TINY) / dof)

with the operations of :func:`~.model.pattern_statistics` in the same order (its
plain-numpy reference, which the tests compare with bit for bit), and in the same
pass the max over voxels of every pattern's tail statistic and the per-voxel
counts of patterns reaching a threshold, without storing the statistics unless
asked to.
"""

import numpy as np
from numba import njit

from .. import glm
from .sign_tables import _vector_max


@njit(cache=True, nogil=True, fastmath={"nnan", "ninf"}, error_model="numpy")
def _projection_pass(projections, n_pat, q, dof, tiny, zero, threshold, two_sided, sign,
                     count, store, maxima, counts, out, multiplicity):
    """Numba body of :func:`projection_pass`; rows k * n_pat + p hold U_k' G_p R.

    The no-NaN/no-inf flags change no result on finite data and only let the
    max be vectorised; no operation is reassociated or fused. Three more things
    keep every loop over the voxels vectorised (2.9x faster, the same correctly
    rounded divisions and square roots): numpy's error model, which drops Python's
    check of every division for a zero divisor (there is none: rss >= tiny > 0,
    dof > 0, q > 0); the sums over k in loops of their own, so that the loops over
    the voxels are innermost; the statistics written to a contiguous row, then
    copied to ``out``, which may be strided.
    """
    rank = projections.shape[0] // n_pat
    width = projections.shape[1]
    # (the same additions in the same order for every voxel as one loop would make)
    explained, rss, values = np.empty(width), np.empty(width), np.empty(width)
    for p in range(n_pat):
        first = projections[p]
        for v in range(width):
            explained[v] = first[v] * first[v]
        for k in range(1, q):
            row = projections[k * n_pat + p]
            for v in range(width):
                explained[v] += row[v] * row[v]
        for v in range(width):
            rss[v] = 1.0 - explained[v]
        for k in range(q, rank):
            row = projections[k * n_pat + p]
            for v in range(width):
                rss[v] -= row[v] * row[v]
        best = maxima[p]
        times = multiplicity[p]  # read once: the loop below then vectorises
        for v in range(width):
            scaled = max(rss[v], tiny) / dof
            value = first[v] / np.sqrt(scaled) if q == 1 else explained[v] / q / scaled
            if zero[v]:
                value = 0.0
            values[v] = value
            value = abs(value) if two_sided else sign * value
            if count:
                counts[v] += times * (value >= threshold[v])
            best = _vector_max(best, value)
        if store:
            out[p] = values
        maxima[p] = best


def projection_pass(model, weights, residuals, scale, tail, threshold=None, maxima=None,
                    store=False, out=None, multiplicity=None):
    """t or F of patterns at a voxel tile, their tail maxima and exceedance counts.

    Parameters
    ----------
    model : LinearModel
    weights : array (rank, n_patterns, n)
        G' [U_x, U_Z] (:func:`~.plans.pattern_weights`).
    residuals : array (n, w), scale : array (w,)
        A tile of :class:`~.model.PreparedData`.
    tail : {"two-sided", "positive", "negative"}
    threshold : array (w,) or None
        Count, per voxel, the patterns whose tail statistic is >= this.
    maxima : array (n_patterns,) or None
        Running maxima updated in place (None: start from -inf).
    store : bool
        Return the statistics too.
    out : array (n_patterns, w) or None
        Where ``store`` writes them (None: a new array), e.g. rows and columns of a
        larger buffer, which saves a copy.
    multiplicity : array of int64 (n_patterns,) or None
        How many patterns each stands for in the counts (None: one each).

    Returns
    -------
    maxima : ndarray (n_patterns,)
    counts : ndarray of int64 (w,) or None
    values : ndarray (n_patterns, w) or None
    """
    rank, n_pat, n = weights.shape
    projections = np.ascontiguousarray(weights).reshape(rank * n_pat, n) @ residuals
    width = projections.shape[1]
    maxima = np.full(n_pat, -np.inf) if maxima is None else maxima
    counts = np.zeros(width, np.int64)
    if out is None:
        out = np.empty((n_pat, width) if store else (1, 1))
    count = threshold is not None
    _projection_pass(projections, n_pat, model.q, float(model.dof), glm.TINY, scale == 0,
                     np.zeros(width) if threshold is None else np.asarray(threshold, float),
                     tail == "two-sided", -1.0 if tail == "negative" else 1.0, count, store,
                     maxima, counts, out,
                     np.ones(n_pat, np.int64) if multiplicity is None else multiplicity)
    return maxima, counts if count else None, out if store else None
