"""The largest TFCE of many maps, LANES maps at once (SIMD across maps).

The per-map kernel of :mod:`.spatial_kernels` spends most of a map in loops over
the voxels that read the neighbour table (steepest ascent, saddle candidates),
bound by their instructions. Here the maps of a group of LANES are interleaved,
``padded[v, w]`` the value of voxel v in lane w (levels and basins likewise): one
read of a voxel's neighbours serves every lane, and the levels, the steepest ascent
and the saddle candidates of the LANES maps run in vector registers (:func:`_level`,
:func:`_ascent`, :func:`_candidates`: numba intrinsics written in LLVM IR, as
numba's compiler kept the same loops written in Python scalar). The pointer jumping
and the joining order go a lane at a time (the interleaved pointers are 4 times
larger than the cache they used to fit), the sort of the saddles and the union-find
events a map at a time. Every lane computes the same levels, basins, joining order
and saddle list as :func:`.spatial_kernels.tfce_pass`, hence its largest TFCE bit
for bit.

numba's on-disk cache of a kernel checks only the file that defines it: after a change
to the helpers imported from :mod:`.spatial_kernels` (and not to this file), delete
``__pycache__/spatial_lanes.*.nbi`` (or touch this file), or the cached kernels keep
the old helpers. An installed package is rewritten whole and is not affected.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .spatial_kernels import _by_slot, _events, _jump, _slot_starts

LANES = 4  # 4 float64 values fill an AVX2 register (two SSE registers without AVX)


_I32, _I64 = ir.IntType(32), ir.IntType(64)
_F4, _I4, _L4 = (ir.VectorType(t, LANES) for t in (ir.DoubleType(), _I32, _I64))


def _contiguous(*arrays):
    """Whether every array type is C-contiguous: the intrinsics address their items
    from the data pointer (typing fails otherwise)."""
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


def _row(builder, array, index, vector):
    """The LANES items of row ``index`` of a C-contiguous (m, LANES) array, one load."""
    at = builder.gep(array.data, [builder.mul(index, ir.Constant(_I64, LANES))], inbounds=True)
    return builder.load(builder.bitcast(at, vector.as_pointer()), align=4)


def _store_row(builder, array, index, x):
    at = builder.gep(array.data, [builder.mul(index, ir.Constant(_I64, LANES))], inbounds=True)
    builder.store(x, builder.bitcast(at, x.type.as_pointer()), align=4)


def _item(builder, array, index):
    """Item ``index`` of a C-contiguous array, counted in its flat order."""
    return builder.load(builder.gep(array.data, [index], inbounds=True))


def _vector(builder, items, vector):
    out = ir.Constant(vector, ir.Undefined)
    for w, x in enumerate(items):
        out = builder.insert_element(out, x, ir.Constant(_I32, w))
    return out


def _lanes(builder, vector):
    return [builder.extract_element(vector, ir.Constant(_I32, w)) for w in range(LANES)]


def _absolute(builder, x):
    zero = ir.Constant(x.type, [0] * LANES)
    return builder.select(builder.icmp_signed("<", x, zero), builder.sub(zero, x), x)


@intrinsic
def _ascent(typingctx, padded, neighbours, level, v):
    """Steepest-ascent neighbour of voxel v in each lane (as :func:`._basins`: the
    neighbour of largest s * value above s * value(v), s the sign of its level, the
    first of equals; v itself at a peak), the sentinel n at level 0: ``padded`` (n + 1,
    LANES) float64 and ``level`` (n + 1, LANES) int32 C-contiguous, ``neighbours`` (n,
    c) uint32."""
    if not _contiguous(padded, neighbours, level):
        return None
    sig = types.UniTuple(types.uint32, LANES)(padded, neighbours, level, v)

    def codegen(context, builder, signature, args):
        values, table, levels = (context.make_array(t)(context, builder, a)
                                 for t, a in zip(signature.args[:3], args[:3]))
        v = args[3]
        own_level = _row(builder, levels, v, _I4)
        zero = ir.Constant(_I4, [0] * LANES)
        sign = builder.select(builder.icmp_signed(">", own_level, zero),
                              ir.Constant(_F4, [1.0] * LANES), ir.Constant(_F4, [-1.0] * LANES))
        itself = _vector(builder, [builder.trunc(v, _I32)] * LANES, _I4)
        highest = cgutils.alloca_once_value(
            builder, builder.fmul(sign, _row(builder, values, v, _F4)))
        best = cgutils.alloca_once_value(builder, itself)
        n_columns = cgutils.unpack_tuple(builder, table.shape)[1]
        first = builder.mul(v, n_columns)
        with cgutils.for_range(builder, n_columns) as loop:
            u = _item(builder, table, builder.add(first, loop.index))
            x = builder.fmul(sign, _row(builder, values, builder.zext(u, _I64), _F4))
            top = builder.load(highest)
            higher = builder.fcmp_ordered(">", x, top)  # False against NaN (the sentinel)
            builder.store(builder.select(higher, x, top), highest)
            builder.store(builder.select(higher, _vector(builder, [u] * LANES, _I4),
                                         builder.load(best)), best)
        n_rows = cgutils.unpack_tuple(builder, values.shape)[0]
        sentinel = builder.trunc(builder.sub(n_rows, ir.Constant(_I64, 1)), _I32)
        out = builder.select(builder.icmp_signed("!=", own_level, zero), builder.load(best),
                             _vector(builder, [sentinel] * LANES, _I4))
        return context.make_tuple(builder, signature.return_type, _lanes(builder, out))
    return sig, codegen


@intrinsic
def _candidates(typingctx, forward, level, basin, n_levels, pair, saddle, v, count):
    """The saddle candidates of voxel v (as :func:`._saddles`) of every lane w stored at
    ``pair[w, count[w]]`` and ``saddle[w, count[w]]``, ``count`` then counting those
    kept. ``level`` and ``basin`` (n + 1, LANES) int32, ``n_levels`` and ``count``
    (LANES,) int64, ``pair`` and ``saddle`` (LANES, m) int64 and int32, all
    C-contiguous; ``forward`` (n, c) uint32."""
    if not _contiguous(forward, level, basin, n_levels, pair, saddle, count):
        return None
    sig = types.none(forward, level, basin, n_levels, pair, saddle, v, count)

    def codegen(context, builder, signature, args):
        table, levels, basins, tops, pairs, slots = (
            context.make_array(t)(context, builder, a)
            for t, a in zip(signature.args[:6], args[:6]))
        v, count = args[6], context.make_array(signature.args[7])(context, builder, args[7])
        zero = ir.Constant(_I4, [0] * LANES)
        own_basin, own_level = _row(builder, basins, v, _I4), _row(builder, levels, v, _I4)
        own_size = _absolute(builder, own_level)
        own_on = builder.icmp_signed(">=", own_basin, zero)
        own_low = builder.sext(own_basin, _L4)
        n_top = builder.trunc(_row(builder, tops, ir.Constant(_I64, 0), _L4), _I4)
        first_row = ir.Constant(_I64, 0)
        at = cgutils.alloca_once_value(builder, _row(builder, count, first_row, _L4))
        n_columns = cgutils.unpack_tuple(builder, table.shape)[1]
        width = cgutils.unpack_tuple(builder, pairs.shape)[1]
        first = builder.mul(v, n_columns)
        with cgutils.for_range(builder, n_columns) as loop:
            u = builder.zext(_item(builder, table, builder.add(first, loop.index)), _I64)
            other, other_basin = _row(builder, levels, u, _I4), _row(builder, basins, u, _I4)
            pair = builder.or_(builder.shl(builder.sext(other_basin, _L4),
                                           ir.Constant(_L4, [32] * LANES)), own_low)
            size = _absolute(builder, other)
            size = builder.select(builder.icmp_signed("<", own_size, size), own_size, size)
            slot = builder.sub(n_top, size)
            keep = builder.and_(builder.and_(
                builder.icmp_signed(">", builder.mul(other, own_level), zero),
                builder.icmp_signed("!=", other_basin, own_basin)), own_on)
            here = builder.load(at)
            for w, (j, p, s) in enumerate(zip(*(_lanes(builder, x) for x in (here, pair, slot)))):
                index = builder.add(builder.mul(ir.Constant(_I64, w), width), j)
                builder.store(p, builder.gep(pairs.data, [index], inbounds=True))
                builder.store(s, builder.gep(slots.data, [index], inbounds=True))
            builder.store(builder.add(here, builder.zext(keep, _L4)), at)
        _store_row(builder, count, first_row, builder.load(at))
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _level(typingctx, padded, bounds, scale, n_levels, positive, negative, level, v):
    """:func:`.spatial_kernels._signed_levels`' level of voxel v in every lane, stored
    at ``level[v]``: lane w has the thresholds ``bounds[1:n_levels[w] + 1, w]`` between
    -inf and +inf, and ``scale[w]`` = n_levels[w] / its last threshold. ``padded`` (n +
    1, LANES) and ``bounds`` float64, ``scale`` (LANES,) float64, ``n_levels`` (LANES,)
    int64 and ``level`` (n + 1, LANES) int32, all C-contiguous."""
    if not _contiguous(padded, bounds, scale, n_levels, level):
        return None
    sig = types.none(padded, bounds, scale, n_levels, positive, negative, level, v)

    def codegen(context, builder, signature, args):
        values, steps, scales, tops = (context.make_array(t)(context, builder, a)
                                       for t, a in zip(signature.args[:4], args[:4]))
        positive, negative = args[4], args[5]
        levels = context.make_array(signature.args[6])(context, builder, args[6])
        first_row = ir.Constant(_I64, 0)
        x = _row(builder, values, args[7], _F4)
        zero = ir.Constant(_F4, [0.0] * LANES)
        a = builder.select(builder.fcmp_ordered("<", x, zero), builder.fsub(zero, x), x)
        top = _row(builder, tops, first_row, _L4)
        # the level, or one off it by rounding (min before the conversion: no overflow)
        guess = builder.fmul(a, _row(builder, scales, first_row, _F4))
        most = builder.sitofp(top, _F4)
        guess = builder.select(builder.fcmp_ordered("<", guess, most), guess, most)
        k = builder.fptosi(guess, _L4)
        one, lanes, bumped = ir.Constant(_I64, 1), ir.Constant(_I64, LANES), []
        for w, (k_w, a_w) in enumerate(zip(_lanes(builder, k), _lanes(builder, a))):
            column = ir.Constant(_I64, w)
            below = _item(builder, steps, builder.add(builder.mul(k_w, lanes), column))
            above = _item(builder, steps, builder.add(
                builder.mul(builder.add(k_w, one), lanes), column))
            k_w = builder.add(k_w, builder.zext(builder.fcmp_ordered(">=", a_w, above), _I64))
            bumped.append(builder.sub(
                k_w, builder.zext(builder.fcmp_ordered("<", a_w, below), _I64)))
        k = builder.trunc(_vector(builder, bumped, _L4), _I4)
        above, below = builder.fcmp_ordered(">", x, zero), builder.fcmp_ordered("<", x, zero)
        off = ir.Constant(above.type, [0] * LANES)
        on = builder.or_(builder.select(positive, above, off), builder.select(negative, below, off))
        nil = ir.Constant(_I4, [0] * LANES)
        k = builder.select(on, k, nil)
        k = builder.select(above, k, builder.sub(nil, k))
        _store_row(builder, levels, args[7], k)
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True)
def _levels(padded, positive, negative, bounds, scale, n_levels, level):
    """:func:`.spatial_kernels._signed_levels` of every lane into ``level`` (see
    :func:`_level`)."""
    n = padded.shape[0] - 1
    for v in range(n):
        _level(padded, bounds, scale, n_levels, positive, negative, level, v)
    level[n] = 0


@njit(cache=True, nogil=True)
def _ascents(padded, neighbours, level, n_levels, up, peak, counts, n_basins):
    """Steepest-ascent pointers into ``up`` (LANES, n + 1; the sentinel n at level 0
    and at n), the peaks' numbers (in voxel order) into ``peak`` (LANES, n + 1; -1 at
    the sentinel), their count into ``n_basins``, and the voxels counted by slot + 1
    (slot = n_levels - |level|, level 0 last) into ``counts`` (LANES, K + 2), zeros on
    entry. The peaks are numbered after the ascents, a lane at a time (a count in a
    register: every voxel's add to a lane's count in memory cost 0.05 ms per demo
    map)."""
    n = padded.shape[0] - 1
    counted, width = counts.ravel(), counts.shape[1]
    for v in range(n):
        best = _ascent(padded, neighbours, level, v)
        for w in range(LANES):
            up[w, v] = best[w]
            k = abs(level[v, w])
            counted[np.uint64(w * width + n_levels[w] + 1 - k)] += 1  # (unsigned: unchecked)
    for w in range(LANES):
        count, pointers, numbers = 0, up[w], peak[w]
        for v in range(np.uint64(n)):
            numbers[v] = count
            count += pointers[v] == v
        n_basins[w] = count
        pointers[n], numbers[n] = n, -1


@njit(cache=True, nogil=True)
def _join(level, n_levels, starts, by_voxel, up, peak, basin, joining):
    """Every voxel's basin (its pointer's peak number: -1 at level 0, whose pointer is
    the sentinel) into ``basin`` (n + 1, LANES; -1 at the sentinel), then, a lane at a
    time, the voxels of level > 0 by decreasing level into ``joining`` (LANES, n): their
    index if ``by_voxel``, else their basin (then those of level 0, in slot n_levels[w],
    not read)."""
    n = up.shape[1] - 1
    for v in range(n):
        for w in range(LANES):
            basin[v, w] = peak[w, up[w, v]]
    basin[n] = -1
    # flat unsigned indices (numba checks every signed index for wraparound), no branch
    levels, basins = level.ravel(), basin.ravel()
    for w in range(LANES):
        at, row = starts[w].copy(), joining[w]
        for v in range(n):
            i = np.uint64(v * LANES + w)
            slot = np.uint64(n_levels[w] - abs(levels[i]))
            j = np.uint64(at[slot])
            row[j] = v if by_voxel else basins[i]
            at[slot] = j + np.uint64(1)


@njit(cache=True, nogil=True)
def _saddles(forward, level, basin, n_levels, pair, saddle, n_pairs):
    """The saddle candidates of :func:`.spatial_kernels._saddles` of every lane, in its
    order, not yet sorted: into ``pair`` and ``saddle`` (LANES, n * forward.shape[1] +
    1), counted in ``n_pairs``."""
    n_pairs[:] = 0
    for v in range(basin.shape[0] - 1):
        _candidates(forward, level, basin, n_levels, pair, saddle, v, n_pairs)


@njit(cache=True, nogil=True)
def tfce_max_batch(maps, neighbours, forward, thresholds, n_levels, positive, negative, E, H,
                   weights=None):
    """Largest TFCE of every row of ``maps`` (n_maps, n), as
    :func:`.spatial_kernels.tfce_pass`; row m has the thresholds ``thresholds[m,
    :n_levels[m]]`` (0 levels: TFCE 0)."""
    n_maps, n = maps.shape
    # unsigned indices: numba checks every signed index for wraparound
    neighbours, forward = neighbours.view(np.uint32), forward.view(np.uint32)
    most = max(thresholds.shape[1], 1)
    padded, level = np.empty((n + 1, LANES)), np.empty((n + 1, LANES), np.int32)
    up, peak = np.empty((LANES, n + 1), np.uint32), np.empty((LANES, n + 1), np.int32)
    basin = np.empty((n + 1, LANES), np.int32)
    joining = np.empty((LANES, n), np.int32)
    pair = np.empty((LANES, n * forward.shape[1] + 1), np.int64)
    saddle = np.empty(pair.shape, np.int32)
    bounds, scale = np.empty((most + 2, LANES)), np.empty(LANES)
    lane_levels, counts = np.empty(LANES, np.int64), np.empty((LANES, most + 2), np.int64)
    starts = np.zeros((LANES, most + 1), np.int64)
    n_basins, n_pairs = np.empty(LANES, np.int64), np.empty(LANES, np.int64)
    out = np.zeros(n_maps)
    for first in range(0, n_maps, LANES):
        for w in range(LANES):  # a lane without a map or levels: zeros, below a threshold 1
            m = first + w
            on = m < n_maps and n_levels[m] > 0
            k = n_levels[m] if on else 1
            lane_levels[w] = k
            bounds[:, w] = np.inf
            bounds[0, w] = -np.inf
            if on:
                bounds[1:k + 1, w] = thresholds[m, :k]
                padded[:n, w] = maps[m]
            else:
                bounds[1, w] = 1.0
                padded[:n, w] = 0.0
            padded[n, w] = np.nan
            scale[w] = k / bounds[k, w]
        counts[:] = 0
        _levels(padded, positive, negative, bounds, scale, lane_levels, level)
        _ascents(padded, neighbours, level, lane_levels, up, peak, counts, n_basins)
        for w in range(LANES):
            _jump(up[w])
            starts[w, :lane_levels[w] + 1] = _slot_starts(counts[w], lane_levels[w])
        _join(level, lane_levels, starts, weights is not None, up, peak, basin, joining)
        _saddles(forward, level, basin, lane_levels, pair, saddle, n_pairs)
        for w in range(min(LANES, n_maps - first)):
            m, k = first + w, n_levels[first + w]
            if k > 0:
                pairs, saddle_starts = _by_slot(pair[w], saddle[w], n_pairs[w], k)
                out[m] = _events(n, level[:, w], basin[:, w], n_basins[w], starts[w, :k + 1],
                                 joining[w], pairs, saddle_starts, thresholds[m, :k], positive,
                                 E, H, False, weights)[0]
    return out
