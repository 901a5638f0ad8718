"""Sign tables: exact max-T and exceedance counts of sign flips, fast.

For a model without nuisance (one-sample, paired differences) the score of a
sign pattern s at voxel v is sum_j s_j w_jv, with w_j = u_j r_j (u the contrast
direction, r_j subject j's normalised data). The subjects are split into groups
of :data:`TABLE_BITS`; the *sign table* of a group holds the partial sums of all
2**k sign patterns of its subjects, and a pattern's score is a sum of one row
per group, always in the association

    score = table_0[c_0] + ((table_1[c_1] + table_2[c_2]) + ...)      (c_g: codes)

so that every path gives the same bits for the same pattern and voxel.

:func:`maxima_and_exceedances` (numba) computes, in one pass over voxel tiles
whose tables stay in cache, the max over voxels of every pattern's tail score
(max-T) and, per voxel, the number of patterns reaching the observed score
(uncorrected p). :func:`reference_pass` is the same computation in plain numpy,
which the tests compare with bit for bit.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: Subjects per sign table (a table has 2**8 = 256 rows).
TABLE_BITS = 8

#: Voxels per tile of :func:`maxima_and_exceedances` (two tables of a tile
#: take 1 MiB, in the L2 cache of a core).
VOXEL_TILE = 256


def subject_groups(n_subjects):
    """Subjects of every sign table: 0..7, 8..15, ..."""
    return [np.arange(a, min(a + TABLE_BITS, n_subjects))
            for a in range(0, n_subjects, TABLE_BITS)]


def pattern_codes(signs, groups):
    """Row of every pattern in every group's table: bit j set iff subject j is flipped.

    Returns
    -------
    ndarray of int64 (n_groups, n_patterns)
    """
    negative = (np.asarray(signs) < 0).astype(np.int64)
    return np.stack([negative[:, g] @ (1 << np.arange(g.size, dtype=np.int64))
                     for g in groups])


def sign_table(weighted):
    """Partial sums of every sign pattern of a few subjects.

    table[c] = sum_j s_j(c) w_j ;  s_j(c) = -1 if bit j of c is set, else +1

    Built by doubling (rows so far plus w_j, then minus w_j), so every entry is
    summed subject by subject from subject 0, and a pattern's row and its
    complement's are exact negatives.

    Parameters
    ----------
    weighted : array (k, w), 1 <= k <= TABLE_BITS

    Returns
    -------
    ndarray (2**k, w) of float64
    """
    weighted = np.asarray(weighted, dtype=float)
    k, w = weighted.shape
    table = np.empty((1 << k, w))
    table[0] = weighted[0]
    np.negative(weighted[0], out=table[1])
    for j in range(1, k):
        half = 1 << j
        np.subtract(table[:half], weighted[j], out=table[half:2 * half])
        table[:half] += weighted[j]
    return table


def table_sums(tables, codes):
    """Scores of patterns from their table rows, in the fixed association.

    tables[0][c_0] + ((tables[1][c_1] + tables[2][c_2]) + ...)

    Returns
    -------
    ndarray (n_patterns, w)
    """
    rest = None
    for table, code in zip(tables[1:], codes[1:]):
        rows = table[code]
        rest = rows if rest is None else np.add(rest, rows, out=rest)
    first = tables[0][codes[0]]
    return first if rest is None else np.add(first, rest, out=rest)


def identity_scores(weighted, groups):
    """Scores of the identity pattern (no flip), with the bits of :func:`table_sums`."""
    parts = []
    for g in groups:
        part = np.array(weighted[g[0]], dtype=float)
        for j in g[1:]:
            part += weighted[j]
        parts.append(part)
    rest = None
    for part in parts[1:]:
        rest = part if rest is None else rest + part
    return parts[0] if rest is None else parts[0] + rest


def tail_score(score, tail):
    """The score large values of which are significant: |s|, s or -s."""
    if tail == "two-sided":
        return np.abs(score)
    return score if tail == "positive" else -score


def reference_pass(weighted, codes, groups, tail, threshold=None):
    """Plain-numpy maxima and exceedance counts (the kernels' reference).

    maxima[p] = max_v tail(score[p, v]) ; counts[v] = #{p : tail(score[p, v]) >= threshold[v]}

    Memory is (n_patterns, w): meant for tests and small problems.
    """
    tables = [sign_table(weighted[g]) for g in groups]
    scores = tail_score(table_sums(tables, list(codes)), tail)
    counts = None if threshold is None else (scores >= threshold).sum(axis=0)
    return scores.max(axis=1), counts


# ---------------------------------------------------------------- fused pass


@intrinsic
def _vector_max(typingctx, a, b):
    """max(a, b) of two float64 as LLVM's ``maxnum``, which the loop vectoriser
    turns into SIMD max reductions (numba's ``max`` stays scalar). Exact: it
    returns one of its operands (either zero when comparing -0.0 with +0.0)."""
    signature = types.float64(types.float64, types.float64)

    def codegen(context, builder, sig, args):
        double = ir.DoubleType()
        maxnum = builder.module.declare_intrinsic(
            "llvm.maxnum", [double], ir.FunctionType(double, [double, double]))
        return builder.call(maxnum, args, fastmath=("nnan", "nsz"))

    return signature, codegen


@njit(cache=True, nogil=True, inline="always")
def _rest_changed(codes, p):
    """True when pattern p's rows of groups 1.. differ from pattern p - 1's."""
    for g in range(1, codes.shape[0]):
        if codes[g, p] != codes[g, p - 1]:
            return True
    return False


@njit(cache=True, nogil=True, fastmath={"nnan", "ninf"}, inline="always")
def _scan_pattern(first, rest, threshold, counts, width, best, two_sided, sign, count):
    """One pattern over a tile: scores first + rest, their tail score's running
    max, and (if ``count``) per voxel +1 where it is >= threshold. The four
    loops are written out so that each is vectorised."""
    if two_sided and count:
        for v in range(width):
            value = abs(first[v] + rest[v])
            counts[v] += value >= threshold[v]
            best = _vector_max(best, value)
    elif two_sided:
        for v in range(width):
            best = _vector_max(best, abs(first[v] + rest[v]))
    elif count:
        for v in range(width):
            value = sign * (first[v] + rest[v])
            counts[v] += value >= threshold[v]
            best = _vector_max(best, value)
    else:
        for v in range(width):
            best = _vector_max(best, sign * (first[v] + rest[v]))
    return best


@njit(cache=True, nogil=True, fastmath={"nnan", "ninf"})
def _sign_table_pass(weighted, codes, sizes, bits, two_sided, sign, threshold, count,
                     tile):
    """Numba body of :func:`maxima_and_exceedances` (the arithmetic of numpy's).

    The data are finite, so the no-NaN/no-inf flags change no result; sums
    are never reassociated. With one table the scores are its rows plus 0.0.
    """
    n_vox = weighted.shape[1]
    n_groups = sizes.size
    n_pat = codes.shape[1]
    maxima = np.full(n_pat, -np.inf)
    counts = np.zeros(n_vox, np.int64)
    table = np.empty((n_groups, 1 << bits, tile))
    rest = np.zeros(tile)
    for lo in range(0, n_vox, tile):
        width = min(tile, n_vox - lo)
        for g in range(n_groups):  # the tile's sign tables, as sign_table()
            first = g * bits
            for v in range(width):
                table[g, 0, v] = weighted[first, lo + v]
                table[g, 1, v] = -weighted[first, lo + v]
            for j in range(1, sizes[g]):
                half = 1 << j
                for c in range(half):
                    for v in range(width):
                        w = weighted[first + j, lo + v]
                        table[g, half + c, v] = table[g, c, v] - w
                        table[g, c, v] = table[g, c, v] + w
        tile_threshold = threshold[lo:lo + width]
        tile_counts = counts[lo:lo + width]
        for p in range(n_pat):
            if n_groups == 2:
                row_rest = table[1, codes[1, p]]
            elif n_groups > 2:
                if p == 0 or _rest_changed(codes, p):
                    rest[:] = table[1, codes[1, p]]
                    for g in range(2, n_groups):
                        rest += table[g, codes[g, p]]
                row_rest = rest
            else:
                row_rest = rest  # zeros
            maxima[p] = _scan_pattern(table[0, codes[0, p]], row_rest, tile_threshold,
                                      tile_counts, width, maxima[p], two_sided, sign, count)
    return maxima, counts


def _tail_arguments(tail, threshold, n_vox):
    count = threshold is not None
    threshold = np.ascontiguousarray(threshold if count else np.zeros(n_vox), dtype=float)
    return tail == "two-sided", -1.0 if tail == "negative" else 1.0, threshold, count


def maxima_and_exceedances(weighted, codes, groups, tail, threshold=None):
    """Max over voxels of every pattern's tail score, and per-voxel exceedance counts.

    Equal, bit for bit, to :func:`reference_pass`; memory is the sign tables of
    one voxel tile (:data:`VOXEL_TILE`).

    Parameters
    ----------
    weighted : array (n, n_voxels)
        u_j r_jv.
    codes : array of int (n_groups, n_patterns)
    groups : list of arrays (:func:`subject_groups`)
    tail : {"two-sided", "positive", "negative"}
    threshold : array (n_voxels,) or None
        A pattern counts at a voxel when its tail score is >= this; None: no counts.

    Returns
    -------
    maxima : ndarray (n_patterns,)
    counts : ndarray of int64 (n_voxels,) or None
    """
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    # patterns sharing the rows of groups 1.. one after the other: their sum
    # is computed once (lexsort: the last key, group n-1, is the primary one)
    order = np.lexsort(codes) if codes.shape[1] else np.arange(0)
    two_sided, sign, threshold, count = _tail_arguments(tail, threshold, weighted.shape[1])
    maxima, counts = _sign_table_pass(
        np.ascontiguousarray(weighted, dtype=float), np.ascontiguousarray(codes[:, order]),
        sizes, TABLE_BITS, two_sided, sign, threshold, count, VOXEL_TILE)
    out = np.empty_like(maxima)
    out[order] = maxima
    return out, counts if count else None
