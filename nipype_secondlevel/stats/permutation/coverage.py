"""Permutation tests with per-voxel subjects: NaN marks a map missing at a voxel.

The same patterns as :mod:`.plans` (sign flips, or row permutations within
exchangeability blocks), applied subject by subject wherever the subject is
present (Y* is the data with row i taken from row order[i], its missing values
moving with it; a sign flips a subject's values wherever it has some). At a
voxel v with present rows r (|r| >= ``min_subjects``) the statistic is that of
:mod:`.model` on the present rows only:

* sign flips: R = R_Z(r) Y_r normalised (the nuisance fitted on r), t or F of
  diag(s_r) R refitted on X_r, on |r| - rank(X_r) dof;
* permutations: the same residuals move with their subjects to the rows
  r' = order^-1(r), where X_r' is refitted; dof |r| - rank(X_r'), and the
  statistic is 0 where the contrast is not estimable on r' (e.g. no subject of
  a group left).

Every statistic is put on the z scale of its own dof (z with the same p, of
t or of F) before voxels are compared: the max-T (max-F) null is the max over
voxels of that z, cluster and TFCE statistics are formed on z maps
(:func:`cluster_threshold` gives the cluster-forming z). Subjects are
exchangeable together with their coverage (or symmetric, for sign flips), so
the test is exact: an exhaustive plan gives the p of the full enumeration. The
maxima are over the voxels with at least ``min_subjects`` maps (a set no
pattern changes); voxels whose observed design is not estimable are in it with
statistic 0, and are not analysed (:attr:`CoverageObserved.analysed`).

Voxels sharing a set of present rows within a block of
:data:`~.model.VOXEL_BLOCK` voxels are computed together, by the projections
of :mod:`.projections` (sign flips of a constant design, one-sample or paired
differences: the voxels with the same number of present rows, the missing
rows' data 0); complete data (no NaN) take today's kernels
(:func:`~.chunks.null_chunk`, :func:`~.chunks.observed_maps`) unchanged, and
their ``statistic`` stays t (F).
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

from ...spec import DEFAULTS
from .. import glm, spatial
from ..missing import estimable, missing_patterns
from .chunks import (
    BLAS_THREADS,
    PATTERN_BATCH,
    NullChunk,
    ObservedMaps,
    PermutationOptions,
    null_chunk,
    observed_maps,
    spatial_graph,
    store_spatial_maps,
    store_spatial_maxima,
    tail_statistic,
    tie_threshold,
)
from .merge import merge_null_chunks
from .model import VOXEL_BLOCK, LinearModel, linear_model, prepare_data
from .plans import check_range, chunk_bounds, pattern_weights, plan_patterns, plan_permutations
from .projections import projection_pass


@dataclass
class CoverageObserved(ObservedMaps):
    """Observed maps of a test with per-voxel subjects (:func:`coverage_observed_maps`).

    ``statistic`` (what :func:`~.merge.merge_null_chunks` compares with the
    null maxima) is the z map; ``values`` the t or F map, ``dof`` the voxels'
    degrees of freedom (denominator's for F), ``n_present`` their maps and
    ``analysed`` the voxels with enough maps and an estimable design (the
    others are 0 in ``statistic`` and ``values``, p = 1).
    """

    values: np.ndarray | None = None
    dof: np.ndarray | None = None
    n_present: np.ndarray | None = None
    analysed: np.ndarray | None = None


def to_z(values, q, dof):
    """z with the p of t (q = 1) or of F (q, dof), as the parametric maps."""
    values = np.asarray(values, dtype=float)
    return glm.t_to_z(values, dof) if q == 1 else glm.f_to_z(values, q, dof)


def cluster_threshold(p, tail="two-sided"):
    """Cluster-forming threshold on the z maps at uncorrected ``p`` (F: positive side).

    isf_normal(p / 2) two-sided, isf_normal(p) one-sided
    """
    spatial.check_tail(tail)
    return float(stats.norm.isf(p / 2 if tail == "two-sided" else p))


@dataclass
class _Group:
    """Voxels of one block sharing their present rows."""

    rows: np.ndarray
    cols: np.ndarray  # voxel indices
    model: object  # LinearModel on X[rows], or None when not estimable there
    data: object  # PreparedData of the voxels, or None
    key: object  # what the model depends on (its rows, or the count of present rows)


class _Setup:
    """The voxel groups of the data, their observed statistics and thresholds."""

    def __init__(self, X, contrast, Y, min_subjects, tail, scheme):
        self.X = np.asarray(X, dtype=float)
        self.C = np.atleast_2d(np.asarray(contrast, dtype=float))
        self.q = self.C.shape[0]
        self.tail = tail
        n_voxels = Y.shape[1]
        present = ~np.isnan(Y)
        self.n_present = present.sum(axis=0)
        self.tested = self.n_present >= max(int(min_subjects or 1), 1)
        # sign flips of a constant design (one-sample, paired differences): the model
        # depends only on how many rows are present, missing ones weigh 0
        by_count = scheme == "sign-flip" and self.X.shape[1] == 1 and np.ptp(self.X) == 0
        models, self.groups = {}, []
        for lo in range(0, n_voxels, VOXEL_BLOCK):
            block = np.arange(lo, min(lo + VOXEL_BLOCK, n_voxels))
            block = block[self.tested[block]]
            if block.size == 0:
                continue
            for rows, cols, key in self._grouped(present, block, by_count):
                if key not in models:
                    models[key] = self.count_model(key[1]) if by_count else self.model(rows)
                model = models[key]
                values = np.asarray(Y[np.ix_(rows, cols)], dtype=float)
                data = None if model is None else prepare_data(model, np.nan_to_num(values))
                self.groups.append(_Group(rows, cols, model, data, key))
        self.values = np.zeros(n_voxels)
        self.dof = np.full(n_voxels, np.nan)
        self.analysed = np.zeros(n_voxels, dtype=bool)
        for group in self.groups:
            if group.model is None:
                continue
            identity = group.model.basis.T[:, None, :]
            self.values[group.cols] = projection_pass(
                group.model, identity, group.data.residuals, group.data.scale, "positive",
                store=True)[2][0]
            self.dof[group.cols] = group.model.dof
            self.analysed[group.cols] = True
        self.z = np.zeros(n_voxels)
        self.z[self.analysed] = to_z(self.values[self.analysed], self.q, self.dof[self.analysed])
        self.threshold = tie_threshold(tail_statistic(self.values, tail))  # on t (or F)
        self.z_threshold = tie_threshold(tail_statistic(self.z, tail))

    @staticmethod
    def _grouped(present, block, by_count):
        """(rows, voxel columns, model key) of the voxel groups of ``block``."""
        if by_count:
            every = np.arange(present.shape[0])
            counts = present[:, block].sum(axis=0)
            for m in np.unique(counts):
                yield every, block[counts == m], ("count", int(m))
            return
        for pattern in missing_patterns(present[:, block]):
            yield pattern.rows, block[pattern.voxels], pattern.rows.tobytes()

    def count_model(self, m):
        """The constant design's model on all rows, the missing ones' data 0: u = +-1 /
        sqrt(m) (the sign of c beta), dof m - 1; None when m < 2."""
        if m < 2:
            return None
        sign = np.sign(self.X[0, 0] * self.C[0, 0])
        return LinearModel(X=self.X, contrast=self.C,
                           interest=np.full((self.X.shape[0], 1), sign / np.sqrt(m)),
                           nuisance=np.zeros((self.X.shape[0], 0)), dof=float(m - 1))

    def model(self, rows):
        """The model on the design rows ``rows`` (in their order), None if not estimable."""
        Xr = self.X[rows]
        if not estimable(Xr, self.C, residual_dof=True):
            return None
        return linear_model(Xr, self.C)

    def weights(self, plan, patterns, group):
        """[(pattern indices, model (q, dof), weights (rank, k, |r|))], and the indices of
        the patterns whose rows cannot estimate the contrast.

        Sign flips keep the rows and the observed model; a permutation moves subject
        rows[a] to row inverse[rows[a]], where the design is refitted.
        """
        rows = group.rows
        if plan.scheme == "sign-flip":
            model = group.model
            everything = np.arange(len(patterns))
            return [(everything, model, pattern_weights(plan, patterns[:, rows], model.basis))
                    ], everything[:0]
        targets = np.argsort(patterns, axis=1)[:, rows]
        return permuted_bases(self.X, self.C, targets)


@dataclass(frozen=True)
class _Refit:
    """What :func:`~.projections.projection_pass` needs of a model: q and dof."""

    q: int
    dof: float


def _column_bases(M, tol=1e-10):
    """Orthonormal bases of the columns of a stack of matrices (B, m, k), as
    :func:`~.model.orthonormal_basis` does for one; (bases (B, m, k), ranks (B,)):
    the first ranks[b] columns of bases[b] span M[b]."""
    U, s, _ = np.linalg.svd(M, full_matrices=False)
    keep = s > tol * np.maximum(s.max(axis=1, initial=0.0), 1.0)[:, None]
    return U, keep.sum(axis=1)


def permuted_bases(X, C, targets):
    """The refit of every permutation of a batch on the rows its subjects land on.

    Xb = X[targets[b]] (the row of every present subject, in data order); where C
    is estimable on Xb with residual dof (C Xb^+ Xb = C, rank C Q C' = q,
    n - rank Xb >= 1), the basis [U_x, U_Z] of :func:`~.model.linear_model`:
    x = Xb Q C' (C Q C')^-1, Z = Xb (I - Q C' (C Q C')^-1 C), Q = (Xb' Xb)^+,
    U_x = x / ||x|| (t) or an orthonormal basis of x (F). All patterns at once.

    Returns
    -------
    entries : list of (indices, refit, weights (rank, k, m))
        Patterns of equal rank, their q and dof, and their bases transposed.
    lost : ndarray of int
        Patterns on which C is not estimable (statistic 0).
    """
    Xb = X[targets]  # (B, m, p)
    m, p = Xb.shape[1:]
    q = C.shape[0]
    _, s, Vt = np.linalg.svd(Xb, full_matrices=False)
    tol = s.max(axis=1, initial=0.0) * max(m, p) * np.finfo(float).eps  # as matrix_rank
    kept = s > tol[:, None]
    rank = kept.sum(axis=1)
    inverse_s2 = np.where(kept, 1.0 / np.where(kept, s, 1.0) ** 2, 0.0)
    Q = np.einsum("bki,bk,bkj->bij", Vt, inverse_s2, Vt)  # (Xb'Xb)^+
    row_space = np.einsum("bki,bk,bkj->bij", Vt, kept.astype(float), Vt)
    scale = 1e-8 * max(np.abs(C).max(), 1.0)
    ok = (np.abs(C @ row_space - C).max(axis=(1, 2)) <= scale) & (m - rank >= 1)
    cqc = C @ Q @ C.T
    ok &= np.linalg.matrix_rank(cqc) == q
    entries, lost = [], np.flatnonzero(~ok)
    good = np.flatnonzero(ok)
    if good.size:
        inverse = np.linalg.inv(cqc[good])
        QCt = Q[good] @ C.T
        x = Xb[good] @ QCt @ inverse
        Z = Xb[good] @ (np.eye(p) - QCt @ inverse @ C)
        if q == 1:
            interest = x / np.linalg.norm(x, axis=1, keepdims=True)
        else:
            interest = _column_bases(x)[0][:, :, :q]
        nuisance, z_rank = _column_bases(Z)
        for r in np.unique(rank[good]):
            at = rank[good] == r
            width = int(r) - q
            if np.any(z_rank[at] != width):  # Z of another rank than rank(X) - q: refit
                raise ValueError("permuted design: nuisance rank differs from rank(X) - q")
            basis = np.concatenate([interest[at], nuisance[at][:, :, :width]], axis=2)
            entries.append((good[at], _Refit(q, float(m - r)), basis.transpose(2, 0, 1)))
    return entries, lost


def _group_null(setup, group, plan, patterns, options, best, counts, maps, cache, by_dof):
    """Null statistics of one voxel group for a batch of patterns: z maxima into
    ``best``, or tail t (F) maxima into ``by_dof[dof]`` (z is increasing in them: put
    on z once per dof by :func:`_maxima_to_z`); counts into ``counts``, maps into
    ``maps`` (when given, (batch, n_voxels)); ``cache`` holds the batch's weights of
    every model."""
    cols = group.cols
    tail = options.tail
    if group.model is None:  # statistic 0 for every pattern
        np.maximum(best, 0.0, out=best)
        if counts is not None:
            counts[cols] += len(patterns) * (0.0 >= setup.z_threshold[cols])
        return
    if group.key not in cache:
        cache[group.key] = setup.weights(plan, patterns, group)
    entries, lost = cache[group.key]
    if lost.size:
        np.maximum.at(best, lost, 0.0)
        if counts is not None:
            counts[cols] += lost.size * (0.0 >= setup.z_threshold[cols])
    observed_dof = group.model.dof
    for indices, model, weights in entries:
        same = model.dof == observed_dof and maps is None  # counts on t (or F) then
        maxima, above, values = projection_pass(
            model, weights, group.data.residuals, group.data.scale, tail,
            setup.threshold[cols] if same and counts is not None else None, store=not same)
        if same:
            running = by_dof.setdefault(model.dof, np.full(len(best), -np.inf))
            np.maximum.at(running, indices, maxima)
            if counts is not None:
                counts[cols] += above
            continue
        signed = to_z(values, setup.q, model.dof)  # the pass stores t (F), not their tail
        z = tail_statistic(signed, tail)
        np.maximum.at(best, indices, z.max(axis=1))
        if counts is not None:
            counts[cols] += (z >= setup.z_threshold[cols]).sum(axis=0)
        if maps is not None:
            maps[np.ix_(indices, cols)] = signed


def _maxima_to_z(by_dof, q, best):
    """Fold the tail t (F) maxima of every dof into the z maxima ``best``."""
    for dof, maxima in by_dof.items():
        some = maxima > -np.inf
        best[some] = np.maximum(best[some], to_z(maxima[some], q, dof))


def coverage_null_chunk(X, contrast, Y, plan, start, stop, mask=None, options=None,
                        min_subjects=None):
    """Null statistics of patterns ``start..stop-1`` with per-voxel subjects.

    As :func:`~.chunks.null_chunk` (same :class:`~.chunks.NullChunk`, merged by
    :func:`~.merge.merge_null_chunks`), the statistics on the z scale of each
    voxel's dof. ``Y`` (n_maps, n_voxels) has NaN where a map is missing; with
    no NaN this is :func:`~.chunks.null_chunk` itself (t or F scale, today's
    kernels). ``options.cluster_threshold`` is on z (:func:`cluster_threshold`).
    """
    options = options or PermutationOptions()
    Y = np.asarray(Y)
    start, stop = check_range(plan, start, stop)
    if not np.isnan(Y).any():
        return null_chunk(linear_model(X, contrast), Y, plan, start, stop, mask, options)
    _check(X, contrast, Y, plan, options)
    setup = _Setup(X, contrast, Y, min_subjects, options.tail, plan.scheme)
    graph = spatial_graph(mask, options)
    n_chunk = stop - start
    best = np.full(n_chunk, -np.inf)
    counts = np.zeros(Y.shape[1], dtype=np.int64) if options.uncorrected else None
    clusters = options.cluster_threshold is not None
    sizes = np.zeros(n_chunk) if clusters else None
    masses = np.zeros(n_chunk) if clusters else None
    tfces = np.zeros(n_chunk) if options.tfce else None
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        for lo in range(start, stop, PATTERN_BATCH):
            hi = min(lo + PATTERN_BATCH, stop)
            patterns = plan_patterns(plan, lo, hi)
            batch_best = best[lo - start:hi - start]
            maps = np.zeros((hi - lo, Y.shape[1])) if options.spatial else None
            cache, by_dof = {}, {}
            for group in setup.groups:
                _group_null(setup, group, plan, patterns, options, batch_best, counts, maps,
                            cache, by_dof)
            _maxima_to_z(by_dof, setup.q, batch_best)
            if maps is not None:  # the batch's maps in one kernel call, as null_chunk
                store_spatial_maxima(_shown(setup, maps), graph, options,
                                     slice(lo - start, hi - start), sizes, masses, tfces)
    if counts is not None:
        counts[~setup.tested] = n_chunk  # not tested: p = 1
    return NullChunk(start, stop, best, counts, sizes, masses, tfces)


def _shown(setup, z):
    """The map clusters and TFCE are formed on: z (F: its positive side)."""
    return z if setup.q == 1 else np.maximum(z, 0.0)


def coverage_observed_maps(X, contrast, Y, plan, mask=None, options=None, min_subjects=None):
    """The observed maps of :func:`coverage_null_chunk`'s test.

    Returns
    -------
    CoverageObserved
        ``statistic`` is the z map (0 where not analysed), with cluster and TFCE
        maps formed on it. With no NaN in ``Y``: :func:`~.chunks.observed_maps`.
    """
    options = options or PermutationOptions()
    Y = np.asarray(Y)
    if not np.isnan(Y).any():
        return observed_maps(linear_model(X, contrast), Y, plan, mask, options)
    _check(X, contrast, Y, plan, options)
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        setup = _Setup(X, contrast, Y, min_subjects, options.tail, plan.scheme)
    out = CoverageObserved(statistic=setup.z, values=setup.values, dof=setup.dof,
                           n_present=setup.n_present, analysed=setup.analysed)
    if options.spatial:
        store_spatial_maps(out, _shown(setup, setup.z), spatial_graph(mask, options), options)
    return out


def _check(X, contrast, Y, plan, options):
    n = np.shape(X)[0]
    if Y.ndim != 2 or Y.shape[0] != n or plan.n_subjects != n:
        raise ValueError(f"design ({n} rows), plan ({plan.n_subjects}) and data "
                         f"{Y.shape} disagree")
    if np.atleast_2d(contrast).shape[0] > 1 and options.tail != "positive":
        raise ValueError("F contrasts are tested on the positive side only (tail='positive')")


def coverage_permutation_test(Y, X, contrast, mask=None, n_perm=DEFAULTS["n_perm"],
                              seed=DEFAULTS["perm_seed"], scheme="sign-flip", blocks=None,
                              n_chunks=DEFAULTS["n_chunks"], options=None, min_subjects=None):
    """The whole test with per-voxel subjects in one call (plan, chunks, observed, merge).

    Parameters as :func:`~.merge.permutation_test`; ``Y`` has NaN where a map
    is missing, ``min_subjects`` the fewest maps a voxel is tested with.

    Returns
    -------
    PermutationResult
        ``statistic`` is the z map when ``Y`` has missing values.
    """
    options = options or PermutationOptions()
    plan = plan_permutations(np.shape(Y)[0], n_perm, scheme, seed, blocks)
    chunks = [coverage_null_chunk(X, contrast, Y, plan, a, b, mask, options, min_subjects)
              for a, b in chunk_bounds(plan.n_perm, n_chunks)]
    observed = coverage_observed_maps(X, contrast, Y, plan, mask, options, min_subjects)
    return merge_null_chunks(observed, chunks, options)

