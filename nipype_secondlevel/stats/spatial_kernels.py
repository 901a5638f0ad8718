"""Numba kernels of :mod:`.spatial`: TFCE and clusters by union-find.

Voxels are the elements of a :class:`~.spatial.NeighbourGraph`; a neighbour
index equal to the number of voxels is the sentinel "no neighbour". A voxel's
*side* is +1 or -1 when it belongs to the positive or negative part of the map
being enhanced, 0 when it does not.

TFCE
----
tfce(v) = sum_{k <= level(v)} size(cluster of v at h_k)^E h_k^H, with level(v)
the number of thresholds h_1 < ... < h_K that |value(v)| reaches. A cluster's size
is its number of voxels, or with ``weights`` the sum of its voxels' weights (a
mesh's vertex areas: PALM's area-weighted TFCE and cluster extent). Without
weights the kernels count in int64, as before weights existed.

1. Levels and basins: a voxel's level is signed by its side, 0 below h_1 (it
   takes part in no event). Every voxel of a level > 0 points to its
   steepest-ascent neighbour of its side (itself at a local peak); following
   the pointers partitions these voxels into basins, one per peak. Every voxel
   of a basin at level >= k is joined to the peak through voxels at level >= k,
   so a cluster at h_k is a union of basins, joined where a neighbour pair
   across two basins has both voxels at level >= k (a *saddle* at the smaller
   of the two levels).
2. Events by decreasing level (two counting sorts): at level k the voxels of
   level k join their basin's set, then the saddles of level k merge sets of
   the few thousand basins: for the voxel map a union-find (union by size, path
   compression); for the largest TFCE every basin points to its set's root, and
   a union moves the basins of the set with fewer of them to the other's root
   (a find is one read).
   After the events of level k the sets are the clusters at h_k. For the largest
   TFCE of counts the voxels of level k are first counted by basin (a find per
   basin, not per run of equal basins).
3. A set's size changes only at its events, so its contributions over the
   levels it kept one size are added at once, size^E (prefix(a) - prefix(b))
   with prefix(k) = sum_{j <= k} h_j^H. For the largest TFCE a set carries the
   largest sum of any of its voxels so far (all its voxels receive the same
   contributions from then on; merged sets keep the larger); for the voxel map
   a basin carries its offset from its parent's running sum (a weighted
   union-find) and a voxel records the sum of its basin when it joins:
   tfce(v) = final sum of v's basin - sum of v's basin before level(v).

The largest TFCE does not depend on how the clusters are cut into basins nor
on the order of the events within a level (every set's contributions use its
size at the level above, maxima and sizes combine exactly), so its bits are
those of a labelling per threshold (with weights, up to the rounding of their
sums, whose order follows the events).

Clusters at one threshold are a union-find over the voxels, in voxel order,
joining every neighbour pair once (the ``forward`` table).

Nothing here assumes a grid: ``neighbours`` and ``forward`` may describe any
graph (a mesh's vertices), padded with the sentinel. The ``*_batch`` kernels
(the TFCE maxima's in :mod:`.spatial_lanes`, several maps at once) take many
maps in one call and reuse their work arrays: fresh arrays of a map's size cost
page faults worth a third of a map's time. Loops whose
branches would depend on the data (steepest ascent, saddles) are written with
selects and counted stores, which the compiler keeps branch-free.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload


def _unit(weights, v):
    """The extent of element ``v``: 1 (``weights`` None) or ``weights[v]`` (numba only)."""


def _extents(weights, n):
    """n zero extents: int64 counts (``weights`` None) or float sums (numba only)."""


@overload(_unit, inline="always")
def _unit_typed(weights, v):
    if isinstance(weights, types.NoneType):
        return lambda weights, v: 1
    return lambda weights, v: weights[v]


@overload(_extents, inline="always")
def _extents_typed(weights, n):
    if isinstance(weights, types.NoneType):
        return lambda weights, n: np.zeros(n, np.int64)
    return lambda weights, n: np.zeros(n)


@njit(cache=True, nogil=True)
def find(parent, v):
    """Root of v's set (uint64, as :func:`_find_weighted`), compressing the path."""
    root = v = np.uint64(v)
    while np.uint64(parent[root]) != root:
        root = np.uint64(parent[root])
    while np.uint64(parent[v]) != root:
        up = np.uint64(parent[v])
        parent[v] = root
        v = up
    return root


@njit(cache=True, nogil=True)
def _find_weighted(parent, offset, v):
    """Root of v's set; the path is compressed, each node's offset becoming the
    sum of the offsets from it to the root. Nodes are unsigned (uint64): numba checks
    every signed index for wraparound."""
    root = v = np.uint64(v)
    total = 0.0
    while np.uint64(parent[root]) != root:
        total += offset[root]
        root = np.uint64(parent[root])
    while v != root and np.uint64(parent[v]) != root:
        up, step = np.uint64(parent[v]), offset[v]
        offset[v], parent[v] = total, root
        v = up
        total -= step
    return root


@njit(cache=True, nogil=True)
def _signed_levels(values, positive, negative, thresholds, level):
    """Level of every voxel, signed by its side, into ``level`` (size n + 1, 0 at
    the sentinel); returns the starts of the levels' slots once the voxels are
    sorted by decreasing |level| (slot s = K - |level| holds [starts[s],
    starts[s + 1]); level 0 is left out).

    level = searchsorted(thresholds, |value|, "right"), +level on the positive
    side (value > 0 and ``positive``), -level on the negative side, 0 off the
    sides. A voxel of level 0 takes part in no event (it is below the first
    threshold), so it is treated as off its side.
    """
    n = values.size
    n_levels = thresholds.size
    bounds = np.empty(n_levels + 2)  # thresholds between -inf and +inf
    bounds[0], bounds[n_levels + 1] = -np.inf, np.inf
    bounds[1:n_levels + 1] = thresholds
    scale = n_levels / thresholds[n_levels - 1]
    counts = np.zeros(n_levels + 2, np.int64)  # by slot + 1; level 0 counted last
    for v in range(n):
        x = values[v]
        a = abs(x)
        k = min(int(a * scale), n_levels)  # the level, or one off it by rounding
        k += np.int32(a >= bounds[k + 1]) - np.int32(a < bounds[k])
        k = k if (positive and x > 0) or (negative and x < 0) else 0
        level[v] = k if x > 0 else -k
        counts[n_levels + 1 - k] += 1
    level[n] = 0
    return _slot_starts(counts, n_levels)


@njit(cache=True, nogil=True)
def _slot_starts(counts, n_levels):
    """Starts of the slots 0..n_levels-1 (and their end) from the counts of slot + 1."""
    starts = np.zeros(n_levels + 1, np.int64)
    for s in range(1, n_levels + 1):
        starts[s] = starts[s - 1] + counts[s]
    return starts


@njit(cache=True, nogil=True)
def _basins(values, neighbours, level, starts, by_voxel, padded, up, basin, joining):
    """Basin (0..n_basins-1) of every voxel into ``basin`` (-1 off the sides and
    at the sentinel, index n), and the voxels of level > 0 sorted by decreasing
    level into ``joining`` (their index if ``by_voxel``, else their basin).
    Returns n_basins.

    Ascent from a voxel of side s goes to the neighbour of largest s * value
    above its own: never to the other side, where s * value < 0, nor to the
    sentinel, whose value is NaN, nor to a voxel of level 0, whose |value| is
    below its own. Peaks are numbered in voxel order; pointers are resolved by
    pointer jumping (:func:`_jump`).
    """
    n = values.size
    n_levels = starts.size - 1
    padded[:n] = values
    padded[n] = np.nan
    n_basins = 0
    for v in range(n):
        best = v
        if level[v] != 0:
            s = 1.0 if level[v] > 0 else -1.0
            highest = s * values[v]
            for c in range(neighbours.shape[1]):
                u = neighbours[v, c]
                x = s * padded[u]
                higher = x > highest
                best = u if higher else best
                highest = x if higher else highest
        up[v] = best
        peak = (best == v) & (level[v] != 0)
        basin[v] = n_basins if peak else -1
        n_basins += peak
    basin[n] = -1
    _jump(up)
    at = starts[:n_levels].copy()
    for v in range(n):
        k = abs(level[v])
        if k != 0:
            b = basin[up[v]]  # a peak's own number (up[peak] = peak)
            basin[v] = b
            joining[at[n_levels - k]] = v if by_voxel else b
            at[n_levels - k] += 1
    return n_basins


@njit(cache=True, nogil=True)
def _jump(up):
    """Every pointer of ``up`` to its root: two passes of pointer jumping in opposite
    directions (a pass carries the pointers it has already moved on along its
    direction), then a pass following every pointer to its root (few have more than a
    step left: no pass only to see that none moved)."""
    n = np.uint64(up.size)  # unsigned indices: numba checks signed ones for wraparound
    for v in range(n):
        up[v] = up[up[v]]
    for i in range(n):
        v = n - np.uint64(1) - i
        up[v] = up[up[v]]
    for v in range(n):
        top = up[up[v]]
        while up[top] != top:
            top = up[top]
        up[v] = top


@njit(cache=True, nogil=True)
def _saddles(forward, level, basin, n_levels, pair, saddle):
    """Neighbour pairs across two basins of a side, as basin_u * 2**32 + basin_v,
    sorted by decreasing saddle level (the smaller level of the two voxels), and
    the starts of the levels' slots (as :func:`_signed_levels`). ``pair`` and
    ``saddle`` are work arrays of n * forward.shape[1] + 1 items."""
    n = basin.size - 1
    n_pairs = 0
    for v in range(n):
        own_basin = basin[v]
        if own_basin >= 0:
            own_level = level[v]
            for c in range(forward.shape[1]):
                u = forward[v, c]
                other = level[u]  # 0 for the sentinel and off the sides
                pair[n_pairs] = (np.int64(basin[u]) << 32) | own_basin
                saddle[n_pairs] = n_levels - min(abs(other), abs(own_level))
                n_pairs += (other * own_level > 0) & (basin[u] != own_basin)
    return _by_slot(pair, saddle, n_pairs, n_levels)


@njit(cache=True, nogil=True)
def _by_slot(pair, saddle, n_pairs, n_levels):
    """The first ``n_pairs`` pairs sorted by their slot (a counting sort, stable),
    and the starts of the slots (unsigned indices: numba checks signed ones for
    wraparound)."""
    counts = np.zeros(n_levels + 1, np.int64)
    for j in range(np.uint64(n_pairs)):
        counts[np.uint64(saddle[j] + 1)] += 1
    starts = _slot_starts(counts, n_levels)
    at = starts[:n_levels].copy()
    out = np.empty(n_pairs, np.int64)
    for j in range(np.uint64(n_pairs)):
        slot = np.uint64(saddle[j])
        i = np.uint64(at[slot])
        out[i] = pair[j]
        at[slot] = i + np.uint64(1)
    return out, starts


@njit(cache=True, nogil=True, inline="always")
def _extent(size, E):
    """size ** E (a square root for the usual E = 0.5)."""
    return np.sqrt(size) if E == 0.5 else size ** E


@njit(cache=True, nogil=True)
def _events(n, level, basin, n_basins, starts, joining, pairs, saddle_starts, thresholds,
            positive, E, H, voxel_map, weights):
    """The union-find by decreasing level (see the module notes): the largest TFCE,
    and the voxel map if ``voxel_map``; ``joining`` holds voxels if ``voxel_map`` or
    ``weights`` is not None, else basins."""
    n_levels = thresholds.size
    prefix = np.zeros(n_levels + 1)
    for k in range(n_levels):
        prefix[k + 1] = prefix[k] + thresholds[k] ** H
    parent = np.full(n_basins, -1, np.int64)  # the voxel map's union-find, else roots
    n_lists = 0 if voxel_map else n_basins  # a root's basins: a list by ``after`` to ``tail``
    end = np.uint64(n_basins)  # after the last basin of a list
    after, tail = np.full(n_lists, end, np.uint64), np.arange(n_lists, dtype=np.uint64)
    members = np.ones(n_lists, np.int64)
    size = _extents(weights, n_basins)
    by_voxel = voxel_map or weights is not None
    since = np.zeros(n_basins, np.int64)  # contributions of levels since..k+1 not added
    total = np.zeros(n_basins)  # voxel map: the root's running sum; else largest of its voxels
    offset = np.zeros(n_basins)  # voxel map: a basin's sum minus its parent's
    out = np.zeros(n if voxel_map else 0)
    count = np.zeros(0 if by_voxel else n_basins, np.int64)  # joiners of a basin at k
    counted = np.empty(0 if by_voxel else n_basins, np.int64)  # the basins counted at k
    for slot in range(n_levels):
        k = n_levels - slot
        if by_voxel:
            last = r = np.uint64(n_basins)  # no basin yet
            before = 0.0
            for i in range(starts[slot], starts[slot + 1]):  # voxels of level k join
                b = np.uint64(basin[joining[i]])
                if b != last:  # (no set changes between the joins of a level)
                    if parent[b] < 0:
                        parent[b], since[b] = b, k
                    r = _find_weighted(parent, offset, b) if voxel_map else np.uint64(parent[b])
                    if since[r] != k:
                        total[r] += _extent(size[r], E) * (prefix[since[r]] - prefix[k])
                        since[r] = k
                    last, before = b, -(total[r] + (offset[b] if b != r else 0.0))
                size[r] += _unit(weights, joining[i])
                if voxel_map:
                    out[joining[i]] = before
        else:  # basins of the voxels of level k, counted first: one find per basin
            n_counted = 0
            for i in range(starts[slot], starts[slot + 1]):
                b = np.uint64(joining[i])
                counted[n_counted] = b
                n_counted += count[b] == 0
                count[b] += 1
            for t in range(n_counted):
                b = np.uint64(counted[t])
                if parent[b] < 0:
                    parent[b], since[b] = b, k
                r = np.uint64(parent[b])
                if since[r] != k:
                    total[r] += _extent(size[r], E) * (prefix[since[r]] - prefix[k])
                    since[r] = k
                size[r] += count[b]
                count[b] = 0
        for j in range(saddle_starts[slot], saddle_starts[slot + 1]):  # basins meet at k
            p = np.uint64(pairs[j])
            a, b = p >> np.uint64(32), p & np.uint64(0xFFFFFFFF)
            if voxel_map:
                a, b = _find_weighted(parent, offset, a), _find_weighted(parent, offset, b)
            else:
                a, b = np.uint64(parent[a]), np.uint64(parent[b])
            if a == b:
                continue
            for r in (a, b):
                if since[r] != k:
                    total[r] += _extent(size[r], E) * (prefix[since[r]] - prefix[k])
                    since[r] = k
            if voxel_map:
                if size[a] < size[b]:
                    a, b = b, a
                parent[b] = a
                offset[b] = total[b] - total[a]
            else:  # (which root stays changes no bits: sizes add, totals take the max)
                if members[a] < members[b]:
                    a, b = b, a
                m = b
                while m != end:
                    parent[m] = a
                    m = after[m]
                after[tail[a]], tail[a] = b, tail[b]
                members[a] += members[b]
                total[a] = max(total[a], total[b])
            size[a] += size[b]
    best = 0.0
    for r in range(n_basins):
        if parent[r] == r:
            total[r] += _extent(size[r], E) * prefix[since[r]]
            best = max(best, total[r])
    if voxel_map:
        final = np.empty(n_basins)
        for b in range(n_basins):
            r = _find_weighted(parent, offset, b)
            final[b] = total[r] + (offset[b] if parent[b] != b else 0.0)
        for v in range(n):
            if level[v] != 0:
                out[v] += final[basin[v]]
                if level[v] < 0 and positive:
                    out[v] = -out[v]
    return best, out


@njit(cache=True, nogil=True)
def tfce_pass(values, neighbours, forward, thresholds, positive, negative, E, H, voxel_map,
              weights=None):
    """Largest TFCE of the sides, and the voxel map if ``voxel_map`` (else empty);
    cluster sizes are sums of ``weights`` (n,) when given, else counts.

    The voxel map is negative on the negative side when both sides are
    enhanced (see the module notes for the algorithm).
    """
    n = values.size
    level = np.empty(n + 1, np.int32)
    up, basin, joining = np.empty(n, np.int32), np.empty(n + 1, np.int32), np.empty(n, np.int32)
    pair = np.empty(n * forward.shape[1] + 1, np.int64)
    return _tfce_work(values, neighbours, forward, thresholds, positive, negative, E, H,
                      voxel_map, weights, level, np.empty(n + 1), up, basin, joining, pair,
                      np.empty(pair.size, np.int32))


@njit(cache=True, nogil=True)
def _tfce_work(values, neighbours, forward, thresholds, positive, negative, E, H, voxel_map,
               weights, level, padded, up, basin, joining, pair, saddle):
    """:func:`tfce_pass` with its work arrays given."""
    # unsigned indices: numba checks every signed index for wraparound (1.14x)
    neighbours, forward = neighbours.view(np.uint32), forward.view(np.uint32)
    up = up.view(np.uint32)
    starts = _signed_levels(values, positive, negative, thresholds, level)
    n_basins = _basins(values, neighbours, level, starts, voxel_map or weights is not None,
                       padded, up, basin, joining)
    pairs, saddle_starts = _saddles(forward, level, basin, thresholds.size, pair, saddle)
    return _events(values.size, level, basin, n_basins, starts, joining, pairs,
                   saddle_starts, thresholds, positive, E, H, voxel_map, weights)


@njit(cache=True, nogil=True)
def _clusters(values, forward, threshold, positive, negative, weights, side, parent, size,
              mass):
    """Clusters of the sides into work arrays of n items: ``side`` is +1 where
    ``positive`` and value > threshold, -1 where ``negative`` and -value >
    threshold, else 0 (threshold >= 0); every voxel of a side points in
    ``parent`` to its cluster's root (its first voxel), whose ``size`` (its
    voxels, or the sum of their ``weights``) and ``mass`` are the cluster's
    (summed in voxel order, as np.bincount); 0 elsewhere."""
    n = values.size
    for v in range(n):
        x = values[v]
        side[v] = 1 if positive and x > threshold else (
            -1 if negative and -x > threshold else 0)
        parent[v] = v
    size[:] = 0
    mass[:] = 0.0
    for v in range(n):
        if side[v] != 0:
            for c in range(forward.shape[1]):
                u = forward[v, c]
                if u < n and side[u] == side[v]:
                    a, b = find(parent, u), find(parent, v)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    for v in range(n):
        if side[v] != 0:
            r = find(parent, v)
            size[r] += _unit(weights, v)
            mass[r] += side[v] * values[v] - threshold


@njit(cache=True, nogil=True)
def cluster_pass(values, forward, threshold, positive, negative, weights=None):
    """Size (a sum of ``weights`` when given) and mass of the cluster of every voxel
    (0 outside clusters)."""
    n = values.size
    side, parent = np.empty(n, np.int8), np.empty(n, np.int64)
    size, mass = _extents(weights, n), np.empty(n)
    _clusters(values, forward, threshold, positive, negative, weights, side, parent, size,
              mass)
    size_map, mass_map = _extents(weights, n), np.zeros(n)
    for v in range(n):
        if side[v] != 0:
            size_map[v], mass_map[v] = size[parent[v]], mass[parent[v]]
    return size_map, mass_map


@njit(cache=True, nogil=True)
def cluster_max_batch(maps, forward, threshold, positive, negative, weights=None):
    """Largest cluster size (a sum of ``weights`` when given) and mass of every row of
    ``maps`` (0 without clusters)."""
    n_maps, n = maps.shape
    side, parent = np.empty(n, np.int8), np.empty(n, np.int64)
    size, mass = _extents(weights, n), np.empty(n)
    sizes, masses = _extents(weights, n_maps), np.zeros(n_maps)
    for m in range(n_maps):
        if n:
            _clusters(maps[m], forward, threshold, positive, negative, weights, side, parent,
                      size, mass)
            sizes[m], masses[m] = size.max(), mass.max()
    return sizes, masses

