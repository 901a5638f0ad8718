"""Permutation plans: which sign flips or row permutations a test uses.

A plan fixes the patterns of a test once: every possible pattern (exhaustive)
when there are at most ``n_perm`` of them, else ``n_perm`` random ones. Pattern
``i`` is a function of ``(plan, i)`` only, so any range of indices can be
computed in any process and the merged p values do not depend on the split:

* exhaustive sign flips: subject j of pattern i is flipped iff bit j of i is set;
* exhaustive permutations: the mixed-radix digits of i (radix n_b! for block b,
  the first block most significant) are the Lehmer codes of each block's
  permutation, in lexicographic order within the block;
* exhaustive permutations of a design with repeated rows (two groups, no
  covariate): only the distinct rearrangements of the design's rows, C(n, n1) for
  two groups (radix: the multinomial of each block's row counts); digit d of a
  block is the (d + r)-th arrangement of its rows' keys in lexicographic order, r
  the rank of the design's own arrangement (so that digit 0 is the identity);
* random patterns: drawn (with replacement, as nilearn and PALM) from a
  generator seeded by ``SeedSequence(seed, spawn_key=(i // RANDOM_BLOCK,))``.

Index 0 is always the identity (the observed data).

Exchangeability blocks (FSL randomise ``-e``): row permutations move rows only
within their block; sign flips ignore blocks (each row is flipped on its own).

Why distinct rearrangements suffice: a Freedman-Lane statistic depends on a
permutation G only through G'X (the refit of G R_Z Y uses G'U for bases U of
span(X), see :mod:`.model`), so permutations giving the same rearrangement of the
design's rows give the same statistic, each rearrangement as often as any other
(prod of c_k! per block, c_k the count of row k's value): the p values over the
distinct ones equal those over all n! (checked against brute force in the tests).
"""

from dataclasses import dataclass
from itertools import pairwise
from math import factorial, prod

import numpy as np

from ...spec import DEFAULTS

#: Random patterns are drawn in blocks of this many indices, one seed each.
RANDOM_BLOCK = 1024

#: Accepted schemes.
SCHEMES = ("sign-flip", "permute")

#: Largest number of subjects for exhaustive sign flipping (indices are int64).
_MAX_EXHAUSTIVE_BITS = 62


@dataclass(frozen=True)
class PermutationPlan:
    """Which patterns a permutation test uses (see :func:`plan_permutations`).

    Attributes
    ----------
    scheme : {"sign-flip", "permute"}
    n_subjects : int
        Rows of the data (subjects, or per-subject differences of a paired design).
    n_perm : int
        Total number of patterns, identity included.
    exhaustive : bool
        True when every possible pattern is enumerated exactly once.
    seed : int
    blocks : tuple of int or None
        Exchangeability block (0, 1, ...) of every row for ``"permute"``; None
        means one block (all rows exchangeable), always None for sign flips.
    keys : tuple of int or None
        For ``"permute"``: the design row of every row (equal keys: equal rows),
        when some rows are equal; exhaustive plans then enumerate the distinct
        rearrangements only. None: every row differs (or sign flips).
    """

    scheme: str
    n_subjects: int
    n_perm: int
    exhaustive: bool
    seed: int
    blocks: tuple | None = None
    keys: tuple | None = None

    def block_rows(self):
        """Rows of every exchangeability block, in block order (one block if none)."""
        if self.blocks is None:
            return [np.arange(self.n_subjects)]
        codes = np.asarray(self.blocks)
        return [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]


def block_codes(labels):
    """Block labels (any hashable, one per row) -> block numbers by first appearance.

    >>> block_codes(["s2", "s1", "s2"])
    (0, 1, 0)
    """
    first = {}
    return tuple(first.setdefault(label, len(first)) for label in labels)


def multinomial(keys):
    """Distinct arrangements of the multiset ``keys``: n! / prod_k c_k!."""
    counts = np.unique(np.asarray(keys), return_counts=True)[1].tolist()
    return factorial(int(sum(counts))) // prod(factorial(c) for c in counts)


def n_possible_patterns(n_subjects, scheme="sign-flip", blocks=None, keys=None):
    """Distinct patterns: 2**n sign flips, or the product over blocks of the distinct
    rearrangements of the block's rows (n_b! when they all differ)."""
    if scheme == "sign-flip":
        return 2 ** int(n_subjects)
    if scheme == "permute":
        rows = np.arange(int(n_subjects)) if keys is None else np.asarray(keys)
        codes = np.zeros(int(n_subjects), int) if blocks is None else np.asarray(blocks)
        return prod(multinomial(rows[codes == b]) for b in np.unique(codes))
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def design_keys(design):
    """Row keys of a design matrix (equal rows, equal keys, by first appearance), or None
    when every row differs."""
    if design is None:
        return None
    _, first, inverse = np.unique(np.asarray(design, dtype=float), axis=0, return_index=True,
                                  return_inverse=True)
    if len(first) == len(inverse):
        return None
    return block_codes(first[inverse.ravel()].tolist())


def plan_permutations(n_subjects, n_perm=DEFAULTS["n_perm"], scheme="sign-flip",
                      seed=DEFAULTS["perm_seed"], blocks=None, design=None):
    """Choose exhaustive enumeration or ``n_perm`` random patterns.

    exhaustive iff n_possible <= n_perm ; then n_perm = n_possible

    Parameters
    ----------
    n_subjects : int
        Rows of the data.
    n_perm : int
        Requested number of patterns, identity included (>= 1).
    scheme : {"sign-flip", "permute"}
        Sign flips (symmetric errors) or row permutations (exchangeable errors).
    seed : int
        Seed of the random patterns (unused when exhaustive).
    blocks : sequence or None
        Exchangeability-block label of every row (permutations stay within
        blocks); ignored by sign flips.
    design : array (n_subjects, p) or None
        The design matrix the permuted data are refitted to: permutations that
        rearrange its rows alike give one statistic, so an exhaustive plan
        enumerates distinct rearrangements only (ignored by sign flips).

    Returns
    -------
    PermutationPlan
    """
    n_subjects, n_perm = int(n_subjects), int(n_perm)
    if n_subjects < 1 or n_perm < 1:
        raise ValueError("n_subjects and n_perm must be at least 1")
    codes = keys = None
    if scheme == "permute" and blocks is not None and len(blocks):
        if len(blocks) != n_subjects:
            raise ValueError(f"{len(blocks)} block labels for {n_subjects} rows")
        codes = block_codes(blocks)
        if max(codes) == 0:
            codes = None  # one block: all rows exchangeable
    if scheme == "permute":
        keys = design_keys(design)
    possible = n_possible_patterns(n_subjects, scheme, codes, keys)
    # Pattern indices are int64: an enumeration never needs more (nor could be run).
    exhaustive = possible <= n_perm and possible * n_subjects < 2**62
    if scheme == "sign-flip" and n_subjects > _MAX_EXHAUSTIVE_BITS:
        exhaustive = False
    return PermutationPlan(scheme=scheme, n_subjects=n_subjects,
                           n_perm=possible if exhaustive else n_perm,
                           exhaustive=exhaustive, seed=int(seed), blocks=codes,
                           keys=keys if exhaustive else None)


#: Seconds of a chunk's process before its first pattern (numba's kernels loaded, the data
#: read), and of a pattern per element (voxel, vertex) of the maps: per row of data for
#: the max-T statistic (sign tables, matrix products), for a cluster or TFCE statistic
#: (its maps), measured on the demo (3 mm grid, 16 paired subjects, one AMD EPYC core).
CHUNK_START_SECONDS = 0.5
MAX_T_SECONDS = 1e-11
SPATIAL_SECONDS = 7e-9


def worthwhile_chunks(n_perm, n_elements, n_rows, spatial, most):
    """Chunks of a test that run in parallel when the user does not choose (at most
    ``most``): as many as give each at least twice :data:`CHUNK_START_SECONDS` of
    estimated work, at least one. The demo's max-T test (10,000 sign flips, 0.25 s of
    work) is one chunk, not two that each pay the start; its TFCE test is two. An
    unknown ``n_elements`` (None: maps that come at run time) counts as large."""
    if n_elements is None:
        return max(1, int(most))
    per_pattern = n_elements * (SPATIAL_SECONDS if spatial else n_rows * MAX_T_SECONDS)
    return max(1, min(int(most), int(n_perm * per_pattern // (2 * CHUNK_START_SECONDS))))


def chunk_bounds(n_perm, n_chunks):
    """Split ``range(n_perm)`` into ``n_chunks`` contiguous near-equal parts (None: one).

    Returns
    -------
    list of (start, stop)
    """
    edges = np.linspace(0, int(n_perm), int(n_chunks or 1) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(edges) if b > a]


def check_range(plan, start, stop):
    """``(start, stop)`` as ints if 0 <= start <= stop <= n_perm, else ValueError."""
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= plan.n_perm:
        raise ValueError(f"permutation range [{start}, {stop}) outside [0, {plan.n_perm})")
    return start, stop


def _random_rows(plan, start, stop, draw):
    """Rows ``start:stop`` of the random patterns, drawn block by block."""
    rows = []
    for block in range(start // RANDOM_BLOCK, (stop - 1) // RANDOM_BLOCK + 1):
        seq = np.random.SeedSequence(plan.seed, spawn_key=(block,))
        patterns = draw(np.random.default_rng(seq), RANDOM_BLOCK)
        first = block * RANDOM_BLOCK
        rows.append(patterns[max(start - first, 0): stop - first])
    return np.concatenate(rows)


def sign_flip_patterns(plan, start, stop):
    """Sign patterns of permutation indices ``start..stop-1``.

    exhaustive: sign of subject j in pattern i = -1 if bit j of i is set ;
    random: fair coin flips from ``SeedSequence(seed, spawn_key=(i // B,))``

    Returns
    -------
    ndarray of float (stop - start, n_subjects), entries +1.0 or -1.0
    """
    if plan.scheme != "sign-flip":
        raise ValueError("plan is not a sign-flip plan")
    start, stop = check_range(plan, start, stop)
    n = plan.n_subjects
    if stop == start:
        return np.empty((0, n))
    if plan.exhaustive:
        index = np.arange(start, stop, dtype=np.uint64)[:, None]
        bits = (index >> np.arange(n, dtype=np.uint64)) & np.uint64(1)
        return 1.0 - 2.0 * bits.astype(float)

    def draw(rng, size):
        return 1.0 - 2.0 * rng.integers(0, 2, size=(size, n))

    signs = _random_rows(plan, start, stop, draw)
    if start == 0:
        signs[0] = 1.0
    return signs


def lehmer_permutations(index, n):
    """The ``index``-th permutations of ``range(n)`` in lexicographic order.

    digit_k = (index // (n - 1 - k)!) % (n - k) is the rank of element k among
    the elements not yet placed (the Lehmer code of the permutation).

    Returns
    -------
    ndarray of int (len(index), n)
    """
    index = np.asarray(index, dtype=np.int64)
    used = np.zeros((index.size, n), dtype=bool)
    orders = np.empty((index.size, n), dtype=np.int64)
    rows = np.arange(index.size)
    for pos in range(n):
        digit = (index // factorial(n - 1 - pos)) % (n - pos)
        free_rank = np.cumsum(~used, axis=1) - 1
        choice = np.argmax((free_rank == digit[:, None]) & ~used, axis=1)
        orders[:, pos] = choice
        used[rows, choice] = True
    return orders


def multiset_arrangements(index, keys):
    """The ``index``-th distinct arrangements of the multiset ``keys`` in lexicographic
    order (index < :func:`multinomial`).

    At each position the smallest value v is taken whose arrangements (those starting
    with v: M c_v / r, M the arrangements of the r values left, c_v the count of v)
    exceed what is left of the index, which is then reduced by those skipped.

    Returns
    -------
    ndarray (len(index), len(keys)) of the values of ``keys``
    """
    index = np.array(index, dtype=np.int64, ndmin=1)
    values, counts = np.unique(np.asarray(keys), return_counts=True)
    left = np.tile(counts.astype(np.int64), (index.size, 1))
    total = np.full(index.size, multinomial(keys), dtype=np.int64)
    chosen = np.empty((index.size, int(counts.sum())), dtype=np.int64)
    rows = np.arange(index.size)
    for position in range(chosen.shape[1]):
        size = chosen.shape[1] - position
        pick = np.full(index.size, -1)
        for value in range(values.size):
            starting = total * left[:, value] // size
            take = (pick < 0) & (index < starting)
            pick[take] = value
            total[take] = starting[take]
            skip = pick < 0
            index[skip] -= starting[skip]
        chosen[:, position] = pick
        left[rows, pick] -= 1
    return values[chosen]


def arrangement_rank(keys):
    """Rank of the arrangement ``keys`` among its multiset's (inverse of
    :func:`multiset_arrangements`)."""
    keys = list(np.asarray(keys).tolist())
    rank = 0
    for position, key in enumerate(keys):
        rest = keys[position:]
        total = multinomial(rest)
        for value in sorted(set(rest)):
            if value == key:
                break
            rank += total * rest.count(value) // len(rest)
    return rank


def arrangement_orders(arrangements, keys):
    """Row orders (``Y[order]``) giving each arrangement of the design's rows.

    Row k of the data is refitted with a design row of key ``arrangement[k]``: the
    j-th design row of a key takes the j-th data row given that key, so the design's
    own arrangement gives the identity.
    """
    keys = np.asarray(keys)
    orders = np.empty(arrangements.shape, dtype=np.int64)
    for key in np.unique(keys):
        design_rows = np.flatnonzero(keys == key)
        given = np.argsort(arrangements != key, axis=1, kind="stable")[:, :design_rows.size]
        orders[:, design_rows] = given
    return orders


def row_permutations(plan, start, stop):
    """Row orders of permutation indices ``start..stop-1`` (permuted data: ``Y[order]``).

    exhaustive: block digits of i in mixed radix (n_b!), each a Lehmer code ;
    random: ``rng.permuted`` of each block's rows, from ``SeedSequence(seed, (i // B,))``

    Returns
    -------
    ndarray of int (stop - start, n_subjects); rows only move within their block
    """
    if plan.scheme != "permute":
        raise ValueError("plan is not a row-permutation plan")
    start, stop = check_range(plan, start, stop)
    n = plan.n_subjects
    if stop == start:
        return np.empty((0, n), dtype=np.int64)
    blocks = plan.block_rows()
    if plan.exhaustive:
        remaining = np.arange(start, stop, dtype=np.int64)
        orders = np.empty((remaining.size, n), dtype=np.int64)
        for rows in reversed(blocks):  # the last block is the least significant digit
            if plan.keys is None:
                radix = factorial(rows.size)
                orders[:, rows] = rows[lehmer_permutations(remaining % radix, rows.size)]
            else:
                keys = np.asarray(plan.keys)[rows]
                radix = multinomial(keys)
                digits = (remaining % radix + arrangement_rank(keys)) % radix
                orders[:, rows] = rows[arrangement_orders(
                    multiset_arrangements(digits, keys), keys)]
            remaining //= radix
        return orders

    def draw(rng, size):
        orders = np.empty((size, n), dtype=np.int64)
        for rows in blocks:
            local = rng.permuted(np.tile(np.arange(rows.size), (size, 1)), axis=1)
            orders[:, rows] = rows[local]
        return orders

    orders = _random_rows(plan, start, stop, draw)
    if start == 0:
        orders[0] = np.arange(n)
    return orders


def identity_pattern(plan):
    """The identity as a (1, n_subjects) pattern of the plan's scheme (index 0)."""
    if plan.scheme == "sign-flip":
        return np.ones((1, plan.n_subjects))
    return np.arange(plan.n_subjects)[None, :]


def plan_patterns(plan, start, stop):
    """Patterns ``start..stop-1``: signs (sign flips) or row orders (permutations)."""
    if plan.scheme == "sign-flip":
        return sign_flip_patterns(plan, start, stop)
    return row_permutations(plan, start, stop)


def pattern_weights(plan, patterns, vectors):
    """G' v for every pattern G (rows of ``patterns``) and column v of ``vectors``.

    (G' v) . R = v . (G R) for every column of R: G multiplies rows by signs, or
    moves them, (G R)_i = R_order(i), so (G' v)_order(i) = v_i.

    Returns
    -------
    ndarray (n_vectors, n_patterns, n_subjects)
    """
    vectors = np.asarray(vectors, dtype=float)
    if plan.scheme == "sign-flip":
        return patterns[None, :, :] * vectors.T[:, None, :]
    weights = np.empty((vectors.shape[1],) + patterns.shape)
    rows = np.arange(patterns.shape[0])[:, None]
    for k in range(vectors.shape[1]):
        weights[k][rows, patterns] = vectors[:, k][None, :]
    return weights
