"""Numba kernels of :mod:`.spatial`: TFCE and clusters by union-find.

Voxels are the masked voxels of a :class:`~.spatial.VoxelGraph`; a neighbour
index equal to the number of voxels is the sentinel "no neighbour". A voxel's
*side* is +1 or -1 when it belongs to the positive or negative part of the map
being enhanced, 0 when it does not.

TFCE
----
tfce(v) = sum_{k <= level(v)} size(cluster of v at h_k)^E h_k^H, with level(v)
the number of thresholds h_1 < ... < h_K that |value(v)| reaches.

1. Basins: every voxel points to its steepest-ascent neighbour of its side
   (itself at a local peak); following the pointers partitions the voxels into
   basins, one per peak. Every voxel of a basin at level >= k is joined to the
   peak through voxels at level >= k, so a cluster at h_k is a union of basins,
   joined where a neighbour pair across two basins has both voxels at level
   >= k (a *saddle* at the smaller of the two levels).
2. Events by decreasing level (two counting sorts): at level k the voxels of
   level k join their basin's set, then the saddles of level k merge sets; a
   union-find over the few thousand basins (union by size, path compression).
   After the events of level k the sets are the clusters at h_k.
3. A set's size changes only at its events, so its contributions over the
   levels it kept one size are added at once, size^E (prefix(a) - prefix(b))
   with prefix(k) = sum_{j <= k} h_j^H. For the largest TFCE a set carries the
   largest sum of any of its voxels so far (all its voxels receive the same
   contributions from then on; merged sets keep the larger); for the voxel map
   a basin carries its offset from its parent's running sum (a weighted
   union-find) and a voxel records the sum of its basin when it joins:
   tfce(v) = final sum of v's basin - sum of v's basin before level(v).

Clusters at one threshold are a union-find over the voxels, in voxel order.

Loops whose branches would depend on the data (steepest ascent, saddles) are
written with selects and counted stores, which the compiler keeps branch-free.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def find(parent, v):
    """Root of v's set, compressing the path."""
    root = v
    while parent[root] != root:
        root = parent[root]
    while parent[v] != root:
        up = parent[v]
        parent[v] = root
        v = up
    return root


@njit(cache=True, nogil=True)
def _find_weighted(parent, offset, v):
    """Root of v's set; the path is compressed, each node's offset becoming the
    sum of the offsets from it to the root."""
    root = v
    total = 0.0
    while parent[root] != root:
        total += offset[root]
        root = parent[root]
    while v != root and parent[v] != root:
        up, step = parent[v], offset[v]
        offset[v], parent[v] = total, root
        v = up
        total -= step
    return root


@njit(cache=True, nogil=True)
def sides(values, positive, negative, threshold):
    """+1 where ``positive`` and value > threshold, -1 where ``negative`` and
    -value > threshold, else 0 (threshold >= 0: the two sets are disjoint)."""
    side = np.zeros(values.size, np.int8)
    for v in range(values.size):
        if positive and values[v] > threshold:
            side[v] = 1
        elif negative and -values[v] > threshold:
            side[v] = -1
    return side


@njit(cache=True, nogil=True)
def _levels(values, side, thresholds):
    """searchsorted(thresholds, |value|, "right") on the sides, 0 off them."""
    n_levels = thresholds.size
    scale = n_levels / thresholds[n_levels - 1]
    level = np.zeros(values.size, np.int32)
    for v in range(values.size):
        if side[v] != 0:
            x = abs(values[v])
            k = min(max(int(np.floor(x * scale)), 0), n_levels)
            while k < n_levels and x >= thresholds[k]:
                k += 1
            while k > 0 and x < thresholds[k - 1]:
                k -= 1
            level[v] = k
    return level


@njit(cache=True, nogil=True)
def _level_starts(level, n_levels):
    """Where each level's items start once sorted by decreasing level, ignoring
    level 0: slot s = n_levels - level holds [starts[s], starts[s + 1])."""
    starts = np.zeros(n_levels + 1, np.int64)
    for i in range(level.size):
        if level[i] > 0:
            starts[n_levels - level[i] + 1] += 1
    for s in range(1, n_levels + 1):
        starts[s] += starts[s - 1]
    return starts


@njit(cache=True, nogil=True)
def _scatter(level, n_levels, starts, payload):
    """payload[i] of the items of level > 0, stably sorted by decreasing level."""
    out = np.empty(starts[n_levels], payload.dtype)
    at = starts[:n_levels].copy()
    for i in range(level.size):
        if level[i] > 0:
            slot = n_levels - level[i]
            out[at[slot]] = payload[i]
            at[slot] += 1
    return out


@njit(cache=True, nogil=True)
def _basins(values, neighbours, side):
    """Basin (0..n_basins-1) of every voxel, -1 off the sides and for the
    sentinel (index n).

    Ascent from a voxel of side s goes to the neighbour of largest s * value
    above its own: never to the other side, where s * value < 0, nor to the
    sentinel, whose value is NaN. Pointers are resolved by pointer jumping.
    """
    n = values.size
    padded = np.empty(n + 1)
    padded[:n] = values
    padded[n] = np.nan
    up = np.arange(n).astype(np.int32)
    for v in range(n):
        s = side[v]
        if s != 0:
            highest = s * values[v]
            best = v
            for c in range(neighbours.shape[1]):
                u = neighbours[v, c]
                x = s * padded[u]
                higher = x > highest
                best = u if higher else best
                highest = x if higher else highest
            up[v] = best
    changed = True
    while changed:
        changed = False
        for v in range(n):
            above = up[v]
            top = up[above]
            up[v] = top
            changed |= top != above
    basin = np.full(n + 1, -1, np.int32)
    n_basins = 0
    for v in range(n):
        if side[v] != 0 and up[v] == v:
            basin[v] = n_basins
            n_basins += 1
    for v in range(n):
        if side[v] != 0:
            basin[v] = basin[up[v]]
    return basin, n_basins


@njit(cache=True, nogil=True)
def _saddles(forward, side, level, basin, n_levels):
    """Neighbour pairs across two basins of a side: (basin, basin) arrays and
    the level starts (as :func:`_level_starts`) of the pairs sorted by
    decreasing saddle level, the smaller level of the two voxels."""
    n = side.size
    first = np.empty(n * forward.shape[1] + 1, np.int32)
    second = np.empty_like(first)
    saddle = np.empty_like(first)
    n_pairs = 0
    for v in range(n):
        own_side, own_basin, own_level = side[v], basin[v], level[v]
        if own_side != 0:
            for c in range(forward.shape[1]):
                u = forward[v, c]
                w = min(u, n - 1)  # a voxel for the sentinel: the pair is not counted
                first[n_pairs], second[n_pairs] = basin[u], own_basin
                saddle[n_pairs] = min(level[w], own_level)
                n_pairs += (u < n) & (side[w] == own_side) & (basin[u] != own_basin)
    saddle = saddle[:n_pairs]
    starts = _level_starts(saddle, n_levels)
    return (_scatter(saddle, n_levels, starts, first), _scatter(saddle, n_levels, starts, second),
            starts)


@njit(cache=True, nogil=True, inline="always")
def _extent(size, E):
    """size ** E (a square root for the usual E = 0.5)."""
    return np.sqrt(size) if E == 0.5 else size ** E


@njit(cache=True, nogil=True)
def tfce_pass(values, neighbours, forward, thresholds, positive, negative, E, H, voxel_map):
    """Largest TFCE of the sides, and the voxel map if ``voxel_map`` (else empty).

    The voxel map is negative on the negative side when both sides are
    enhanced (see the module notes for the algorithm).
    """
    n = values.size
    n_levels = thresholds.size
    side = sides(values, positive, negative, 0.0)
    level = _levels(values, side, thresholds)
    basin, n_basins = _basins(values, neighbours, side)
    starts = _level_starts(level, n_levels)
    joining = _scatter(level, n_levels, starts,
                       np.arange(n).astype(np.int32) if voxel_map else basin[:n])
    first, second, saddle_starts = _saddles(forward, side, level, basin, n_levels)
    prefix = np.zeros(n_levels + 1)
    for k in range(n_levels):
        prefix[k + 1] = prefix[k] + thresholds[k] ** H
    parent = np.full(n_basins, -1, np.int64)
    size = np.zeros(n_basins, np.int64)
    since = np.zeros(n_basins, np.int64)  # contributions of levels since..k+1 not added
    total = np.zeros(n_basins)  # voxel map: the root's running sum; else largest of its voxels
    offset = np.zeros(n_basins)  # voxel map: a basin's sum minus its parent's
    out = np.zeros(n if voxel_map else 0)
    for slot in range(n_levels):
        k = n_levels - slot
        for i in range(starts[slot], starts[slot + 1]):  # voxels of level k join
            b = basin[joining[i]] if voxel_map else joining[i]
            if parent[b] < 0:
                parent[b], since[b] = b, k
            r = _find_weighted(parent, offset, b) if voxel_map else find(parent, b)
            if since[r] != k:
                total[r] += _extent(size[r], E) * (prefix[since[r]] - prefix[k])
                since[r] = k
            size[r] += 1
            if voxel_map:
                out[joining[i]] = -(total[r] + (offset[b] if b != r else 0.0))
        for j in range(saddle_starts[slot], saddle_starts[slot + 1]):  # basins meet at k
            if voxel_map:
                a = _find_weighted(parent, offset, first[j])
                b = _find_weighted(parent, offset, second[j])
            else:
                a, b = find(parent, first[j]), find(parent, second[j])
            if a == b:
                continue
            for r in (a, b):
                if since[r] != k:
                    total[r] += _extent(size[r], E) * (prefix[since[r]] - prefix[k])
                    since[r] = k
            if size[a] < size[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
            if voxel_map:
                offset[b] = total[b] - total[a]
            else:
                total[a] = max(total[a], total[b])
    best = 0.0
    for r in range(n_basins):
        if parent[r] == r:
            total[r] += _extent(size[r], E) * prefix[since[r]]
            best = max(best, total[r])
    if voxel_map:
        final = np.empty(n_basins)
        for b in range(n_basins):
            r = _find_weighted(parent, offset, b)
            final[b] = total[r] + (offset[b] if b != r else 0.0)
        for v in range(n):
            if level[v] > 0:
                out[v] += final[basin[v]]
                if side[v] < 0 and positive:
                    out[v] = -out[v]
    return best, out


@njit(cache=True, nogil=True)
def cluster_pass(values, neighbours, threshold, positive, negative, voxel_map):
    """Largest cluster size and mass, and the size and mass maps if
    ``voxel_map`` (else empty); masses summed in voxel order, as np.bincount."""
    n = values.size
    side = sides(values, positive, negative, threshold)
    parent = np.arange(n)
    for v in range(n):
        if side[v] != 0:
            for c in range(neighbours.shape[1]):
                u = neighbours[v, c]
                if u < n and side[u] == side[v]:
                    a, b = find(parent, u), find(parent, v)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    size = np.zeros(n, np.int64)
    mass = np.zeros(n)
    for v in range(n):
        if side[v] != 0:
            r = find(parent, v)
            size[r] += 1
            mass[r] += side[v] * values[v] - threshold
    if voxel_map:
        size_map, mass_map = np.zeros(n, np.int64), np.zeros(n)
        for v in range(n):
            if side[v] != 0:
                size_map[v], mass_map[v] = size[parent[v]], mass[parent[v]]
        return 0, 0.0, size_map, mass_map
    return (size.max() if n else 0, mass.max() if n else 0.0, np.zeros(0, np.int64),
            np.zeros(0))
