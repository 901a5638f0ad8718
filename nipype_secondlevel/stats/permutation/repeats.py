"""Patterns that repeat: each distinct pattern of a plan computed once.

Random plans draw their patterns with replacement (as nilearn and PALM), so an
index may repeat an earlier pattern: the demo's 10,000 sign flips of 16 subjects
hold 9,282 distinct patterns. A sign-flip pattern may also be the negation of an
earlier one, whose data are the negated data, G(-s) R = -(G(s) R); every
operation of the t and F of a pattern (:mod:`.projections`: the matrix product,
its squares, the division) gives the negated value, or the same, bit for bit,
so t(-s) = -t(s) and F(-s) = F(s). When the statistic does not see the sign of
the map (two-sided t, whose clusters and TFCE are formed on both tails with
thresholds from max |t|; F), the null maxima of -s are those of s: the 10,000
patterns then hold 8,621 classes.

A pattern's *representative* is the lowest index of its class (the same
pattern, or its negation when the statistic is sign-symmetric). Pattern i is a
function of ``(plan, i)``, so any chunk finds the classes of the whole plan (all
the patterns drawn once, as int64 keys: 10,000 x 16 sign flips in about 6 ms)
and computes only the indices that are their own representative; a repeat of
an index of the chunk takes its value; a repeat of an earlier chunk's index is
listed in the chunk's ``copies`` and filled by the merge, which has every chunk.
The exceedance counts of a representative count every index of its class
(sums over the chunks are those of every pattern). Later indices repeat more, so
the plan cuts the indices where each chunk has as many representatives as the
others (:func:`balanced_chunk_bounds`), not as many indices.

Keys: a sign pattern's bits (up to :data:`MAX_SIGN_BITS` subjects), a row
order's base-n digits (up to :data:`MAX_ORDER_ROWS` rows, n**n < 2**63).
Beyond, no pattern is shared: 2**63 sign flips, or 16! row orders, make a
repeat among a million patterns unlikely (a chance below 3%); exchangeability
blocks of more rows allow fewer orders, whose repeats are then computed again.
The bits of a pattern's statistics must not depend on its place in a batch: the
chunks give every matrix product an even number of rows (see
:func:`~.chunks.null_chunk`'s spatial path).
"""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .plans import RANDOM_BLOCK, chunk_bounds, plan_patterns

#: Most subjects of a sign-flip plan whose patterns are shared (bits of an int64).
MAX_SIGN_BITS = 62

#: Most rows of a row-permutation plan whose patterns are shared (n**n < 2**63).
MAX_ORDER_ROWS = 15


def sign_symmetric(plan, statistic, tail):
    """True when a sign pattern and its negation give the same null maxima: sign
    flips of an F statistic, or of a t statistic tested on both tails."""
    return plan.scheme == "sign-flip" and (statistic == "F" or tail == "two-sided")


def pattern_keys(plan, patterns, symmetric):
    """One int64 per pattern, equal for equal patterns (and for a sign pattern and its
    negation when ``symmetric``): bits of the flipped subjects, or base-n digits."""
    n = plan.n_subjects
    if plan.scheme == "sign-flip":
        keys = ((patterns < 0).astype(np.int64) << np.arange(n, dtype=np.int64)).sum(axis=1)
        if symmetric:
            keys = np.minimum(keys, keys ^ ((1 << n) - 1))
        return keys
    return patterns.astype(np.int64) @ (n ** np.arange(n, dtype=np.int64))


def _shareable(plan, symmetric):
    if plan.scheme == "sign-flip":
        return plan.n_subjects <= MAX_SIGN_BITS and (symmetric or not plan.exhaustive)
    return plan.n_subjects <= MAX_ORDER_ROWS and not plan.exhaustive


def pattern_classes(plan, symmetric):
    """The representative of every index of the plan, and how many indices it represents.

    Parameters
    ----------
    plan : PermutationPlan
    symmetric : bool
        A sign pattern and its negation are one class (:func:`sign_symmetric`).

    Returns
    -------
    representative : ndarray of int64 (n_perm,)
        The lowest index whose pattern is that of i (or its negation).
    count : ndarray of int64 (n_perm,)
        Indices whose representative is i (0 unless i is its own representative).
    Or None when no pattern of the plan can repeat (see the module notes).
    """
    if not _shareable(plan, symmetric):
        return None
    keys = np.concatenate([
        pattern_keys(plan, plan_patterns(plan, lo, min(lo + RANDOM_BLOCK, plan.n_perm)),
                     symmetric)
        for lo in range(0, plan.n_perm, RANDOM_BLOCK)])
    # a stable sort (return_index): the first index of every key
    _, first, inverse, sizes = np.unique(keys, return_index=True, return_inverse=True,
                                         return_counts=True)
    count = np.zeros(plan.n_perm, dtype=np.int64)
    count[first] = sizes
    return first[inverse.ravel()], count


def balanced_chunk_bounds(plan, n_chunks, symmetric):
    """Split ``range(n_perm)`` into ``n_chunks`` contiguous parts that compute as many
    patterns as each other, within one: each holds as many of its own representatives
    (:func:`pattern_classes`, what :func:`chunk_work` computes). Parts of equal length
    (:func:`~.plans.chunk_bounds`) when no pattern of the plan can repeat.

    Returns
    -------
    list of (start, stop)
        Fewer than ``n_chunks`` when the plan has fewer classes.
    """
    classes = pattern_classes(plan, symmetric)
    if classes is None:
        return chunk_bounds(plan.n_perm, n_chunks)
    own = np.flatnonzero(classes[1])  # own[0] == 0: the identity is its own representative
    starts = [int(own[a]) for a, _ in chunk_bounds(own.size, n_chunks)]
    return list(pairwise([*starts, plan.n_perm]))


@dataclass(frozen=True)
class ChunkWork:
    """What a chunk ``start..stop-1`` computes, and where each of its indices takes its
    value from (see :func:`chunk_work`).

    Attributes
    ----------
    start, stop : int
    own : ndarray of int64
        Indices of the chunk that are their own representative, increasing.
    multiplicity : ndarray of int64
        For each of ``own``: the indices of the plan it represents.
    source : ndarray of int64 (stop - start,)
        Position in ``own`` of every index's representative, -1 when it is in an
        earlier chunk.
    copies : ndarray of int64 (k, 2) or None
        (index, representative) of those; None when there are none.
    """

    start: int
    stop: int
    own: np.ndarray
    multiplicity: np.ndarray
    source: np.ndarray
    copies: np.ndarray | None

    def spread(self, values):
        """The values of ``own`` placed at every index of the chunk (NaN at ``copies``)."""
        out = np.full(self.source.shape, np.nan)
        here = self.source >= 0
        out[here] = values[self.source[here]]
        return out


def chunk_work(classes, start, stop):
    """The :class:`ChunkWork` of indices ``start..stop-1`` given :func:`pattern_classes`
    (None: every index computed once)."""
    index = np.arange(start, stop, dtype=np.int64)
    if classes is None:
        return ChunkWork(start, stop, index, np.ones(index.size, np.int64),
                         index - start, None)
    representative, count = (c[start:stop] for c in classes)
    own = index[representative == index]
    source = np.searchsorted(own, representative)
    earlier = representative < start
    source[earlier] = -1
    copies = np.column_stack([index[earlier], representative[earlier]])
    return ChunkWork(start, stop, own, count[own - start], source,
                     copies if copies.size else None)


def own_pattern_batches(plan, own, size):
    """Patterns of the indices ``own`` (increasing), ``size`` at a time, drawing every
    random block of the plan once."""
    pending = np.empty((0, plan.n_subjects))
    for block in np.unique(own // RANDOM_BLOCK):
        lo = int(block) * RANDOM_BLOCK
        at = own[np.searchsorted(own, lo):np.searchsorted(own, lo + RANDOM_BLOCK)]
        patterns = plan_patterns(plan, lo, min(lo + RANDOM_BLOCK, plan.n_perm))[at - lo]
        pending = np.concatenate([pending, patterns]) if pending.size else patterns
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if len(pending):
        yield pending


def fill_copies(values, copies):
    """Values of the whole plan (n_perm,) with every copied index set from its
    representative; ValueError if a value is still missing."""
    if copies is not None and len(copies):
        values[copies[:, 0]] = values[copies[:, 1]]
    if np.isnan(values).any():
        raise ValueError("the chunks leave some pattern without its null maximum")
    return values
