"""Null distributions of one chunk of patterns, and the observed maps.

The data come as :class:`VoxelColumns`: the (n_rows, n_voxels) matrix read
on demand in voxel chunks whose size follows a memory budget (``mem_gb``).
Voxel max statistics and exceedance counts are voxel-separable: each voxel
chunk gives its part of the maxima (combined by ``max``, exactly) and its
voxels' counts. Cluster and TFCE statistics need whole maps: patterns are taken
in batches sized by the budget, and for every batch the voxel chunks are
streamed (read once and kept when all of them fit in the budget).

Two computations of the same statistics:

* sign tables (:mod:`.sign_tables`) for sign flips of a t contrast without
  nuisance (one-sample, paired differences) and at most
  :data:`SIGN_TABLE_MAX_SUBJECTS` subjects;
* matrix products (:func:`~.projections.projection_pass`) for everything else
  (Freedman-Lane, permutations, F contrasts, cluster and TFCE statistics).

Both are numba kernels, imported where they run: the merge of a max-T test, which has
the statistic from the first chunk, imports no numba (0.24 s of its 0.34 s).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ...spec import DEFAULTS
from .. import spatial
from ..glm import BLAS_THREADS
from .model import VOXEL_BLOCK, prepare_data, score_to_t, spatial_map
from .plans import (
    RANDOM_BLOCK,
    check_range,
    identity_pattern,
    pattern_weights,
    plan_patterns,
    sign_flip_patterns,
)
from .repeats import chunk_work, own_pattern_batches, pattern_classes, sign_symmetric

#: Relative tolerance under which a null value ties with the observed one, so
#: that rounding of mathematically equal statistics cannot change a p value.
TIE_RTOL = 1e-10

#: Patterns per matrix product.
PATTERN_BATCH = 128

#: Most subjects for the sign-table computation (beyond it, a pattern's score
#: costs more table rows than a matrix product costs multiplications).
SIGN_TABLE_MAX_SUBJECTS = 128

#: Bytes of fixed working memory of a chunk (pattern batches, voxel tiles).
FIXED_BYTES = 64 * 2**20


@dataclass(frozen=True)
class VoxelColumns:
    """The data matrix (n_rows, n_voxels), read by columns on demand.

    Attributes
    ----------
    n_rows, n_voxels : int
    read : callable
        ``read(start, stop)`` -> float64 array (n_rows, stop - start).
    bytes_per_voxel : int
        Memory one voxel column of a read costs (the array and its sources).
    """

    n_rows: int
    n_voxels: int
    read: Callable
    bytes_per_voxel: int

    @classmethod
    def from_array(cls, Y):
        """Columns of an array in memory (or a memory map)."""
        Y = np.asanyarray(Y)
        return cls(Y.shape[0], Y.shape[1], lambda a, b: np.asarray(Y[:, a:b], dtype=float),
                   8 * Y.shape[0])

    def differences(self, first, second):
        """Paired differences ``Y[first] - Y[second]``, computed chunk by chunk."""
        first, second = np.asarray(first), np.asarray(second)

        def read(a, b):
            Y = self.read(a, b)
            return Y[first] - Y[second]

        return VoxelColumns(first.size, self.n_voxels, read,
                            self.bytes_per_voxel + 8 * first.size)


@dataclass(frozen=True)
class PermutationOptions:
    """Which statistics to compute, shared by chunks, observed maps and merge.

    Attributes
    ----------
    tail : {"two-sided", "positive", "negative"}
        Two-sided tests use |t|; "negative" tests -t; F is always "positive".
    cluster_threshold : float or None
        Cluster-forming threshold on the spatial map (t, or z of F; see
        :func:`~.model.cluster_forming_threshold`); None: no cluster statistics.
    tfce : bool
        TFCE statistics (on t, or on z of F).
    tfce_dh : "auto" or float
    tfce_E, tfce_H : float
    connectivity : {1, 2, 3}
        Neighbourhood of clusters and TFCE (1 = 6 neighbours, as nilearn).
    uncorrected : bool
        Count, per voxel, the patterns reaching the observed statistic.
    """

    tail: str = "two-sided"
    cluster_threshold: float | None = None
    tfce: bool = False
    tfce_dh: object = "auto"
    tfce_E: float = spatial.TFCE_E
    tfce_H: float = spatial.TFCE_H
    connectivity: int = 1
    uncorrected: bool = True

    def __post_init__(self):
        spatial.check_tail(self.tail)

    @property
    def spatial(self):
        """True when cluster or TFCE statistics are requested."""
        return self.cluster_threshold is not None or self.tfce


@dataclass
class NullChunk:
    """Null statistics of permutation indices ``start..stop-1``.

    Attributes
    ----------
    start, stop : int
    max_statistic : ndarray (stop - start,)
        Max over voxels of the tail statistic (|t|, t, -t, or F).
    exceedances : ndarray of int (n_voxels,) or None
        Per voxel, patterns whose tail statistic >= the observed one (with cluster
        and TFCE statistics: every pattern of the plan that one of the chunk's
        represents, see :mod:`.repeats`; their sum over the chunks is the same).
    max_cluster_size, max_cluster_mass, max_tfce : ndarray (stop - start,) or None
    copies : ndarray of int (k, 2) or None
        (index, earlier index of another chunk) of the patterns whose maxima are
        those of the earlier one, NaN here (filled by the merge, see :mod:`.repeats`).
    statistic : ndarray (n_voxels,) or None
        t or F of the unpermuted data, held by the chunk starting at index 0 (computed
        from the data it reads anyway): the merge's :func:`observed_maps` takes it
        instead of reading all the data again.
    """

    start: int
    stop: int
    max_statistic: np.ndarray
    exceedances: np.ndarray | None
    max_cluster_size: np.ndarray | None = None
    max_cluster_mass: np.ndarray | None = None
    max_tfce: np.ndarray | None = None
    copies: np.ndarray | None = None
    statistic: np.ndarray | None = None


def tail_statistic(values, tail):
    """The statistic large values of which are significant: |t|, t or -t."""
    spatial.check_tail(tail)
    if tail == "two-sided":
        return np.abs(values)
    return values if tail == "positive" else -values


def tie_threshold(observed):
    """Null values >= this count as reaching ``observed``: obs - TIE_RTOL |obs|."""
    return observed - TIE_RTOL * np.abs(observed)


def uses_sign_tables(model, plan):
    """True when the sign-table kernels compute the chunk (see the module notes)."""
    return (plan.scheme == "sign-flip" and model.statistic == "t"
            and model.nuisance.shape[1] == 0
            and model.n_subjects <= SIGN_TABLE_MAX_SUBJECTS)


def voxel_chunk_width(model, columns, mem_gb, share=0.5):
    """Voxels per chunk: ``share`` of ``mem_gb`` (less fixed working memory) per chunk.

    A voxel costs its read (``columns.bytes_per_voxel``, freed once the chunk is
    prepared) and 2 n float64: the prepared residuals, and either the nuisance fit
    while they are prepared or the weighted data of the sign tables after. The
    width is a whole number of :data:`~.model.VOXEL_BLOCK` blocks (at least one).
    """
    per_voxel = columns.bytes_per_voxel + 16 * model.n_subjects
    budget = max(float(mem_gb) * 2**30 * share - FIXED_BYTES, 0)
    blocks = max(int(budget // (per_voxel * VOXEL_BLOCK)), 1)
    return min(blocks, -(-columns.n_voxels // VOXEL_BLOCK)) * VOXEL_BLOCK


def prepared_chunks(model, columns, width):
    """Yield (slice, :class:`~.model.PreparedData`) over the voxel chunks.

    Loops over it ``del`` each chunk before taking the next, so that one chunk is held at a
    time: the loop variable would keep it while the next is read and prepared.
    """
    for lo in range(0, columns.n_voxels, width):
        hi = min(lo + width, columns.n_voxels)
        # the read is freed before the chunk is used: only its residuals stay
        yield slice(lo, hi), prepare_data(model, columns.read(lo, hi))


def _tiles(n_voxels):
    return [slice(a, min(a + VOXEL_BLOCK, n_voxels)) for a in range(0, n_voxels, VOXEL_BLOCK)]


def _pattern_batches(plan, start, stop, basis):
    """Yield (rows of the chunk, weights) in batches of PATTERN_BATCH patterns,
    drawing the patterns of each random block once."""
    lo = start
    while lo < stop:
        hi = min((lo // RANDOM_BLOCK + 1) * RANDOM_BLOCK, stop)
        patterns = plan_patterns(plan, lo, hi)
        for a in range(0, hi - lo, PATTERN_BATCH):
            b = min(a + PATTERN_BATCH, hi - lo)
            yield slice(lo - start + a, lo - start + b), pattern_weights(
                plan, patterns[a:b], basis)
        lo = hi


def statistic_map(model, data, plan):
    """t or F of the unpermuted data over the prepared voxels (index 0)."""
    from .projections import projection_pass
    identity = pattern_weights(plan, identity_pattern(plan), model.basis)
    out = np.empty(data.n_voxels)
    for cols in _tiles(data.n_voxels):
        out[cols] = projection_pass(model, identity, data.residuals[:, cols],
                                    data.scale[cols], "positive", store=True)[2][0]
    return out


def _statistics(model, plan, chunks, n_voxels):
    """t or F of the unpermuted data over ``chunks`` (n_voxels,), a chunk at a time."""
    values = np.empty(n_voxels)
    for cols, data in chunks:
        values[cols] = statistic_map(model, data, plan)
        del data
    return values


def _observed_too(model, plan, chunks, values):
    """``chunks``, the t or F of the unpermuted data of each written into ``values``."""
    for cols, data in chunks:
        values[cols] = statistic_map(model, data, plan)
        yield cols, data
        del data


def _no_progress(done, total, unit):
    """The default ``progress`` of :func:`null_chunk`: nothing."""


def _sign_table_maxima(model, plan, start, stop, chunks, n_voxels, options, progress):
    """Max tail t over voxels and exceedance counts, by sign tables."""
    from . import sign_tables
    groups = sign_tables.subject_groups(plan.n_subjects)
    codes = sign_tables.pattern_codes(sign_flip_patterns(plan, start, stop), groups)
    best = np.full(stop - start, -np.inf)
    exceed = []
    u = model.interest[:, 0]
    for cols, data in chunks:
        weighted = data.residuals * u[:, None]
        threshold = None
        if options.uncorrected:
            threshold = tie_threshold(sign_tables.tail_score(
                sign_tables.identity_scores(weighted, groups), options.tail))
        maxima, counts = sign_tables.maxima_and_exceedances(weighted, codes, groups,
                                                            options.tail, threshold)
        np.maximum(best, maxima, out=best)
        exceed.append(counts)
        progress(cols.stop, n_voxels, "voxels")
        del data, weighted
    # t is an odd, increasing function of the score: max tail t = t(max tail score)
    return score_to_t(best, model.dof), np.concatenate(exceed) if options.uncorrected else None


def _matrix_maxima(model, plan, start, stop, chunks, n_voxels, options, progress):
    """Max tail statistic over voxels and exceedance counts, by matrix products."""
    from .projections import projection_pass
    best = np.full(stop - start, -np.inf)
    exceed = []
    for cols, data in chunks:
        tiles = _tiles(data.n_voxels)
        threshold = None
        counts = np.zeros(data.n_voxels, dtype=np.int64)
        if options.uncorrected:
            threshold = tie_threshold(tail_statistic(statistic_map(model, data, plan),
                                                     options.tail))
        for rows, weights in _pattern_batches(plan, start, stop, model.basis):
            for cols in tiles:
                _, above, _ = projection_pass(
                    model, weights, data.residuals[:, cols], data.scale[cols], options.tail,
                    None if threshold is None else threshold[cols], maxima=best[rows])
                if above is not None:
                    counts[cols] += above
        exceed.append(counts)
        progress(cols.stop, n_voxels, "voxels")
        del data
    return best, np.concatenate(exceed) if options.uncorrected else None


def _spatial_null(model, plan, start, stop, columns, graph, options, mem_gb, progress, share):
    """Maxima, counts, cluster and TFCE statistics from whole maps per pattern, each
    distinct pattern of the plan once when ``share`` (:mod:`.repeats`)."""
    from .projections import projection_pass

    n_vox = columns.n_voxels
    width = voxel_chunk_width(model, columns, mem_gb, share=0.25)
    kept = list(prepared_chunks(model, columns, width)) if width >= n_vox else None

    def chunks():
        return kept if kept is not None else prepared_chunks(model, columns, width)

    threshold = observed = None
    if options.uncorrected or start == 0:
        observed = _statistics(model, plan, chunks(), n_vox)
    if options.uncorrected:
        threshold = tie_threshold(tail_statistic(observed, options.tail))
    classes = None
    if share:
        classes = pattern_classes(plan, sign_symmetric(plan, model.statistic, options.tail))
    work = chunk_work(classes, start, stop)
    n_own = work.own.size
    budget = float(mem_gb) * 2**30 * 0.25  # the maps of a batch of patterns
    # at most one matrix product's patterns: a larger buffer costs page faults
    # and cache misses, and computes nothing more
    batch = int(max(1, min(n_own, PATTERN_BATCH, budget // (8 * n_vox))))
    buffer = np.empty((batch + 1, n_vox))
    best = np.full(n_own, -np.inf)
    exceed = np.zeros(n_vox, dtype=np.int64) if options.uncorrected else None
    clusters = options.cluster_threshold is not None
    sizes = np.zeros(n_own) if clusters else None
    masses = np.zeros(n_own) if clusters else None
    tfces = np.zeros(n_own) if options.tfce else None
    done = 0
    for patterns in own_pattern_batches(plan, work.own, batch):
        rows = slice(done, done + len(patterns))
        # An even number of rows in every matrix product: OpenBLAS computes the last
        # row of an odd one with another kernel, whose sums round differently, so a
        # pattern's bits would depend on its place in the batch.
        pad = len(patterns) * model.basis.shape[1] % 2
        weights = pattern_weights(plan, np.concatenate([patterns, patterns[:pad]]),
                                  model.basis)
        multiplicity = np.append(work.multiplicity[rows], np.zeros(pad, np.int64))
        maps = buffer[:len(multiplicity)]
        maxima = np.full(len(multiplicity), -np.inf)
        for cols, data in chunks():
            for tile in _tiles(data.n_voxels):
                at = slice(cols.start + tile.start, cols.start + tile.stop)
                _, above, _ = projection_pass(
                    model, weights, data.residuals[:, tile], data.scale[tile],
                    options.tail, None if threshold is None else threshold[at],
                    maxima=maxima, store=True, out=maps[:, at], multiplicity=multiplicity)
                if above is not None:
                    exceed[at] += above
            del data
        best[rows] = maxima[:len(patterns)]
        store_spatial_maxima(spatial_map(model, maps[:len(patterns)]), graph, options, rows,
                             sizes, masses, tfces)
        done = rows.stop
        progress(done, n_own, "distinct patterns")
    sizes, masses, tfces = (None if v is None else work.spread(v) for v in (sizes, masses, tfces))
    return NullChunk(start, stop, work.spread(best), exceed, sizes, masses, tfces, work.copies,
                     observed if start == 0 else None)


def spatial_graph(mask, options):
    """The neighbour graph the options' cluster and TFCE statistics use (None: none asked)."""
    if not options.spatial:
        return None
    if mask is None:
        raise ValueError("cluster and TFCE statistics need a mask")
    if isinstance(mask, spatial.NeighbourGraph):  # a mesh's or grayordinates' graph
        return mask
    return spatial.voxel_graph(mask, options.connectivity)


def store_spatial_maxima(shown, graph, options, rows, sizes, masses, tfces):
    """The cluster (size, mass) and TFCE maxima of a batch of maps ``shown``, in ``rows``."""
    if options.cluster_threshold is not None:
        sizes[rows], masses[rows] = spatial.cluster_maxima(
            shown, graph, options.cluster_threshold, options.tail)
    if options.tfce:
        tfces[rows] = spatial.tfce_maxima(shown, graph, options.tail, options.tfce_dh,
                                          options.tfce_E, options.tfce_H)


def store_spatial_maps(out, shown, graph, options):
    """The observed cluster (size, mass) and TFCE maps of the map ``shown``, set on ``out``."""
    if options.cluster_threshold is not None:
        out.cluster_size, out.cluster_mass = spatial.cluster_maps(
            shown, graph, options.cluster_threshold, options.tail)
    if options.tfce:
        out.tfce = spatial.tfce_map(shown, graph, options.tail, options.tfce_dh,
                                    options.tfce_E, options.tfce_H)


def _checked(model, columns, plan, options):
    """(columns as VoxelColumns, options), checked against the model and the plan."""
    options = options or PermutationOptions()
    if not isinstance(columns, VoxelColumns):
        columns = VoxelColumns.from_array(columns)
    if plan.n_subjects != model.n_subjects or columns.n_rows != model.n_subjects:
        raise ValueError("plan, model and data have different numbers of rows")
    if model.statistic == "F" and options.tail != "positive":
        raise ValueError("F contrasts are tested on the positive side only (tail='positive')")
    return columns, options


def null_chunk(model, columns, plan, start, stop, mask=None, options=None,
               mem_gb=DEFAULTS["mem_gb"], progress=_no_progress, share_repeats=True):
    """Null statistics for one chunk of permutation indices.

    For each pattern i in ``start..stop-1``: the max over voxels of the tail
    statistic (max-T or max-F), and if requested the largest cluster size and
    mass at ``options.cluster_threshold`` and the largest |TFCE|; plus, per
    voxel, how many patterns reach the observed statistic (uncorrected p).

    The result depends only on the indices, not on how ``range(n_perm)`` is
    split nor on ``mem_gb``, so chunks can be computed in any order, in
    separate processes, and combined by :func:`~.merge.merge_null_chunks`.

    Parameters
    ----------
    model : LinearModel
    columns : VoxelColumns or array (n, n_voxels)
    plan : PermutationPlan
    start, stop : int
    mask : array of bool, 3D, NeighbourGraph, or None
        Places the voxels (``mask.sum() == n_voxels``) for cluster and TFCE
        statistics; or the graph of the elements (vertices, grayordinates).
    options : PermutationOptions or None
    mem_gb : float
        Memory budget (GiB) of the data held at a time.
    progress : callable
        ``progress(done, total, unit)`` after every part of the work (voxels,
        or distinct patterns for cluster and TFCE statistics).
    share_repeats : bool
        Cluster and TFCE statistics: compute each distinct pattern of the plan
        once (:mod:`.repeats`; the merged results are the same bits).

    Returns
    -------
    NullChunk
    """
    columns, options = _checked(model, columns, plan, options)
    start, stop = check_range(plan, start, stop)
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        if options.spatial:
            graph = spatial_graph(mask, options)
            return _spatial_null(model, plan, start, stop, columns, graph, options, mem_gb,
                                 progress, share_repeats)
        chunks = prepared_chunks(model, columns, voxel_chunk_width(model, columns, mem_gb))
        statistic = np.empty(columns.n_voxels) if start == 0 else None
        if statistic is not None:
            chunks = _observed_too(model, plan, chunks, statistic)
        maxima = _sign_table_maxima if uses_sign_tables(model, plan) else _matrix_maxima
        best, exceed = maxima(model, plan, start, stop, chunks, columns.n_voxels, options,
                              progress)
    return NullChunk(start=start, stop=stop, max_statistic=best, exceedances=exceed,
                     statistic=statistic)


@dataclass
class ObservedMaps:
    """Statistics of the unpermuted data (see :func:`observed_maps`).

    Attributes
    ----------
    statistic : ndarray (n_voxels,)
        t or F.
    cluster_size, cluster_mass : ndarray (n_voxels,) or None
        Size / mass of the cluster of each voxel, 0 outside clusters.
    tfce : ndarray (n_voxels,) or None
        TFCE (negative for negative clusters of a two-sided t test).
    """

    statistic: np.ndarray
    cluster_size: np.ndarray | None = None
    cluster_mass: np.ndarray | None = None
    tfce: np.ndarray | None = None


def observed_maps(model, columns, plan, mask=None, options=None, mem_gb=DEFAULTS["mem_gb"],
                  statistic=None):
    """t or F, cluster and TFCE maps of the unpermuted data.

    Parameters as :func:`null_chunk` (``plan`` sets the scheme of the identity);
    ``statistic``, the t or F of every voxel when already computed
    (:attr:`NullChunk.statistic`): the data are then not read.

    Returns
    -------
    ObservedMaps
    """
    columns, options = _checked(model, columns, plan, options)
    graph = spatial_graph(mask, options)
    if statistic is None:
        width = voxel_chunk_width(model, columns, mem_gb)
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            values = _statistics(model, plan, prepared_chunks(model, columns, width),
                                 columns.n_voxels)
    else:
        values = np.asarray(statistic, dtype=float)
    out = ObservedMaps(statistic=values)
    store_spatial_maps(out, spatial_map(model, values), graph, options)
    return out
