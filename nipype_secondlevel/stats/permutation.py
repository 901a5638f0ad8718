"""Permutation (sign-flipping) inference with family-wise error control.

Arrays only: ``Y`` is (n_maps, n_voxels), ``X`` is (n_maps, n_regressors), a
3D boolean ``mask`` places the voxels for cluster and TFCE statistics.

Work is split into permutation *chunks* so that a workflow can run them as
separate jobs::

    plan = plan_permutations(n_subjects, n_perm=10000, seed=42)
    model = linear_model(X, contrast)            # or one_sample_model(n)
    data = prepare_data(model, Y)
    opts = PermutationOptions(tail="two-sided", cluster_threshold=3.0, tfce=True)
    chunks = [null_chunk(model, data, plan, a, b, mask, opts)
              for a, b in chunk_bounds(plan.n_perm, 8)]      # any split
    observed = observed_maps(model, data, mask, opts)
    result = merge_null_chunks(observed, chunks, opts)

Permutation index 0 is always the identity (the observed data). Exhaustive
plans enumerate every pattern once; random plans draw patterns (with
replacement, as nilearn and PALM) from a generator seeded by ``(seed, block)``
for fixed blocks of :data:`RANDOM_BLOCK` indices, so pattern ``i`` is the same
whichever chunk asks for it and the merged p values do not depend on the split.

p values count the identity: p = #{i < n_perm : null_i >= observed} / n_perm,
which is the exact permutation p value for an exhaustive plan and never below
1 / n_perm. Values within a relative :data:`TIE_RTOL` of the observed value
count as ties (>=), so that rounding of mathematically equal statistics (for
example +t and -t of complementary sign patterns) cannot change a p value.
"""

from dataclasses import dataclass
from itertools import pairwise
from math import factorial

import numpy as np
from numba import njit

from . import glm, spatial

#: Random patterns are drawn in blocks of this many indices, one seed each.
RANDOM_BLOCK = 1024

#: Relative tolerance under which a null value ties with the observed one.
TIE_RTOL = 1e-10

#: Largest design (n_subjects) for exhaustive sign flipping (2**n <= n_perm).
_MAX_EXHAUSTIVE_BITS = 62

SCHEMES = ("sign-flip", "permute")


# --------------------------------------------------------------------------
# Permutation plans and patterns
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PermutationPlan:
    """Which patterns a permutation test uses (see :func:`plan_permutations`).

    Attributes
    ----------
    scheme : {"sign-flip", "permute"}
    n_subjects : int
    n_perm : int
        Total number of patterns, identity included.
    exhaustive : bool
        True when every possible pattern is enumerated exactly once.
    seed : int
    """

    scheme: str
    n_subjects: int
    n_perm: int
    exhaustive: bool
    seed: int


def n_possible_patterns(n_subjects, scheme="sign-flip"):
    """Number of distinct patterns: 2**n sign flips or n! row permutations."""
    if scheme == "sign-flip":
        return 2 ** int(n_subjects)
    if scheme == "permute":
        return factorial(int(n_subjects))
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def plan_permutations(n_subjects, n_perm=10000, scheme="sign-flip", seed=0):
    """Choose exhaustive enumeration or ``n_perm`` random patterns.

    exhaustive iff n_possible <= n_perm ; then n_perm = n_possible

    Parameters
    ----------
    n_subjects : int
        Rows of ``Y`` (subjects, or per-subject differences of a paired design).
    n_perm : int
        Requested number of patterns, identity included (>= 1).
    scheme : {"sign-flip", "permute"}
        Sign flips (one-sample, paired, and Freedman-Lane with symmetric
        errors) or row permutations (exchangeable errors, e.g. two groups).
    seed : int
        Seed of the random patterns (ignored when exhaustive).

    Returns
    -------
    PermutationPlan
    """
    n_subjects, n_perm = int(n_subjects), int(n_perm)
    if n_subjects < 1 or n_perm < 1:
        raise ValueError("n_subjects and n_perm must be at least 1")
    possible = n_possible_patterns(n_subjects, scheme)
    exhaustive = possible <= n_perm
    if exhaustive and scheme == "sign-flip" and n_subjects > _MAX_EXHAUSTIVE_BITS:
        exhaustive = False
    return PermutationPlan(
        scheme=scheme,
        n_subjects=n_subjects,
        n_perm=possible if exhaustive else n_perm,
        exhaustive=exhaustive,
        seed=int(seed),
    )


def chunk_bounds(n_perm, n_chunks):
    """Split ``range(n_perm)`` into ``n_chunks`` contiguous near-equal parts.

    Returns
    -------
    list of (start, stop)
    """
    edges = np.linspace(0, int(n_perm), int(n_chunks) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(edges) if b > a]


def _check_range(plan, start, stop):
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= plan.n_perm:
        raise ValueError(
            f"permutation range [{start}, {stop}) outside [0, {plan.n_perm})"
        )
    return start, stop


def _random_blocks(plan, start, stop, draw):
    """Rows ``start:stop`` of the random patterns, block by block."""
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

    Row 0 (index 0) is the identity (all +1) in both cases.

    Parameters
    ----------
    plan : PermutationPlan
        With ``scheme == "sign-flip"``.
    start, stop : int
        Half-open range of permutation indices, 0 <= start <= stop <= n_perm.

    Returns
    -------
    ndarray of float (stop - start, n_subjects), entries +1.0 or -1.0
    """
    if plan.scheme != "sign-flip":
        raise ValueError("plan is not a sign-flip plan")
    start, stop = _check_range(plan, start, stop)
    n = plan.n_subjects
    if stop == start:
        return np.empty((0, n))
    if plan.exhaustive:
        index = np.arange(start, stop, dtype=np.uint64)[:, None]
        bits = (index >> np.arange(n, dtype=np.uint64)) & np.uint64(1)
        return 1.0 - 2.0 * bits.astype(float)

    def draw(rng, size):
        return 1.0 - 2.0 * rng.integers(0, 2, size=(size, n))

    signs = _random_blocks(plan, start, stop, draw)
    if start == 0:
        signs[0] = 1.0
    return signs


def row_permutations(plan, start, stop):
    """Row orders of permutation indices ``start..stop-1``.

    exhaustive: the i-th permutation in lexicographic order (Lehmer code of i) ;
    random: ``rng.permutation`` from ``SeedSequence(seed, spawn_key=(i // B,))``

    Row 0 (index 0) is the identity ``arange(n)``. Permuted data are
    ``Y[order]``.

    Returns
    -------
    ndarray of int (stop - start, n_subjects)
    """
    if plan.scheme != "permute":
        raise ValueError("plan is not a row-permutation plan")
    start, stop = _check_range(plan, start, stop)
    n = plan.n_subjects
    if stop == start:
        return np.empty((0, n), dtype=np.int64)
    if plan.exhaustive:
        index = np.arange(start, stop)
        used = np.zeros((index.size, n), dtype=bool)
        orders = np.empty((index.size, n), dtype=np.int64)
        rows = np.arange(index.size)
        for pos in range(n):
            radix = factorial(n - 1 - pos)
            digit = (index // radix) % (n - pos)
            free_rank = np.cumsum(~used, axis=1) - 1
            choice = np.argmax((free_rank == digit[:, None]) & ~used, axis=1)
            orders[:, pos] = choice
            used[rows, choice] = True
        return orders

    def draw(rng, size):
        return rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)

    orders = _random_blocks(plan, start, stop, draw)
    if start == 0:
        orders[0] = np.arange(n)
    return orders


def paired_differences(Y_first, Y_second):
    """Per-subject differences of a paired design: a one-sample problem.

    D = Y_first - Y_second (rows are subjects, in the same order)
    """
    Y_first, Y_second = np.asarray(Y_first, float), np.asarray(Y_second, float)
    if Y_first.shape != Y_second.shape:
        raise ValueError(
            f"paired maps differ in shape: {Y_first.shape} vs {Y_second.shape}"
        )
    return Y_first - Y_second


# --------------------------------------------------------------------------
# Linear model with Freedman-Lane permutation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearModel:
    """A design and a t contrast, prepared for permutation (see :func:`linear_model`).

    Attributes
    ----------
    X : ndarray (n, p)
    contrast : ndarray (p,)
    nuisance : ndarray (n, q)
        Orthonormal basis of the nuisance space Z (q = rank(X) - 1).
    basis : ndarray (n, rank(X))
        Orthonormal basis of span(X) whose first column is u = a / ||a||,
        a = c pinv(X) (so c beta = a . y).
    dof : float
        n - rank(X).
    """

    X: np.ndarray
    contrast: np.ndarray
    nuisance: np.ndarray
    basis: np.ndarray
    dof: float

    @property
    def n_subjects(self):
        """Number of rows of the design."""
        return self.X.shape[0]


def _orthonormal(M, tol=1e-10):
    """Orthonormal basis of the column space of ``M`` (SVD)."""
    if M.shape[1] == 0:
        return np.zeros((M.shape[0], 0))
    U, s, _ = np.linalg.svd(M, full_matrices=False)
    keep = s > tol * max(s.max(), 1.0)
    return U[:, keep]


def partition_design(X, contrast):
    """Split a design into the effect of interest and nuisance regressors.

    x = X Q c' / (c Q c') ; Z = X (I - Q c' c / (c Q c')) ; Q = (X'X)^+

    This is the partition of Smith et al. (2007) used by Winkler et al. (2014,
    Appendix A): span([x, Z]) = span(X), x is orthogonal to Z, and the
    coefficient of x in the model [x, Z] equals c beta of the original model.

    Parameters
    ----------
    X : array (n, p)
    contrast : array (p,)

    Returns
    -------
    x : ndarray (n,)
        Regressor of interest.
    Z : ndarray (n, q)
        Orthonormal basis of the nuisance space (q may be 0).
    """
    X = np.asarray(X, dtype=float)
    c = np.asarray(contrast, dtype=float).ravel()
    if c.size != X.shape[1]:
        raise ValueError(
            f"contrast has {c.size} weights but the design has {X.shape[1]} columns"
        )
    Q = np.linalg.pinv(X.T @ X)
    cqc = float(c @ Q @ c)
    if not cqc > 0:
        raise ValueError("contrast is not estimable for this design")
    x = X @ Q @ c / cqc
    Z = X @ (np.eye(X.shape[1]) - np.outer(Q @ c, c) / cqc)
    return x, _orthonormal(Z)


def linear_model(X=None, contrast=None, n_subjects=None):
    """Prepare a design and t contrast for (Freedman-Lane) permutation.

    Freedman-Lane (Freedman & Lane 1983; Winkler et al. 2014, NeuroImage
    92:381-397, Table 2): with nuisance space Z from :func:`partition_design`,
    each pattern G (a sign flip or a row permutation) gives the data

        Y* = G R_Z Y + H_Z Y,  H_Z = Z Z', R_Z = I - H_Z

    to which the full model X is refitted and the contrast t computed. Sign
    flipping assumes independent, symmetric errors; row permutation assumes
    exchangeable errors. With no nuisance (one-sample design, or a single
    regressor) this is plain sign flipping / permutation of Y.

    Parameters
    ----------
    X : array (n, p) or None
        Design; None means the one-sample design ``ones((n_subjects, 1))``.
    contrast : array (p,) or None
        t contrast; None means ``[1]`` (only for a one-column design).
    n_subjects : int or None
        Needed when ``X`` is None.

    Returns
    -------
    LinearModel
    """
    if X is None:
        if n_subjects is None:
            raise ValueError("give X or n_subjects")
        X = np.ones((int(n_subjects), 1))
    X = np.asarray(X, dtype=float)
    if contrast is None:
        if X.shape[1] != 1:
            raise ValueError("contrast is required for a multi-column design")
        contrast = [1.0]
    c = np.asarray(contrast, dtype=float).ravel()
    _, Z = partition_design(X, c)
    a = np.linalg.pinv(X).T @ c  # c beta = a . y
    u = a / np.linalg.norm(a)
    # rest of an orthonormal basis of span(X), orthogonal to u
    rest = X - np.outer(u, u @ X)
    basis = np.column_stack([u, _orthonormal(rest)])
    return LinearModel(
        X=X, contrast=c, nuisance=Z, basis=basis, dof=glm.residual_dof(X)
    )


def one_sample_model(n_subjects):
    """Intercept-only design (one-sample or paired-differences t test)."""
    return linear_model(None, None, n_subjects=n_subjects)


@dataclass(frozen=True)
class PreparedData:
    """Voxel data reduced for permutation (see :func:`prepare_data`).

    Attributes
    ----------
    residuals : ndarray (n, n_voxels)
        R_Z Y, scaled by 1 / sqrt(sum of squares) per voxel (0 for a voxel
        whose residuals are all 0).
    scale : ndarray (n_voxels,)
        sqrt(sum of squares of R_Z Y) per voxel.
    offset : ndarray (n_voxels,)
        u . H_Z Y / scale (the nuisance fit added back; 0 up to rounding
        because u is orthogonal to Z).
    """

    residuals: np.ndarray
    scale: np.ndarray
    offset: np.ndarray


def prepare_data(model, Y):
    """Residualise ``Y`` on the nuisance space and normalise every voxel.

    R = R_Z Y ; scale = ||R|| per voxel ; residuals = R / scale

    Parameters
    ----------
    model : LinearModel
    Y : array (n, n_voxels)

    Returns
    -------
    PreparedData
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2 or Y.shape[0] != model.n_subjects:
        raise ValueError(
            f"Y must be ({model.n_subjects}, n_voxels), got {Y.shape}"
        )
    Z = model.nuisance
    fitted = Z @ (Z.T @ Y)
    R = Y - fitted
    scale = np.sqrt(np.einsum("ij,ij->j", R, R))
    safe = np.where(scale > 0, scale, 1.0)
    residuals = np.ascontiguousarray(R / safe)
    offset = (model.basis[:, 0] @ fitted) / safe
    return PreparedData(residuals=residuals, scale=scale, offset=offset)


def _pattern_weights(plan, start, stop, vectors):
    """G' v for every pattern G of ``start..stop-1`` and column v of ``vectors``.

    Returns an array (n_vectors, stop - start, n) so that
    (G' v) . R = v . (G R) for every voxel column of R.
    """
    vectors = np.asarray(vectors, dtype=float)
    if plan.scheme == "sign-flip":
        signs = sign_flip_patterns(plan, start, stop)
        return signs[None, :, :] * vectors.T[:, None, :]
    orders = row_permutations(plan, start, stop)
    # (G R)_i = R_{order_i}, so (G' v)_{order_i} = v_i
    weights = np.empty((vectors.shape[1],) + orders.shape)
    rows = np.arange(orders.shape[0])[:, None]
    for k in range(vectors.shape[1]):
        weights[k][rows, orders] = vectors[:, k][None, :]
    return weights


def _scores(model, data, weights, cols=slice(None)):
    """Scores of the patterns at voxel columns ``cols``, monotone in t.

    rank(X) = 1: rho = u.GR (t = rho sqrt(dof / (1 - rho^2)), one product);
    otherwise t = (u.GR + offset) / sqrt(RSS / dof),
    RSS = 1 - (u.GR + offset)^2 - sum_{k>1} (u_k.GR)^2 (data normalised to 1)
    """
    R = data.residuals[:, cols]
    score = weights[0] @ R
    if model.basis.shape[1] == 1:
        return score
    score += data.offset[cols]
    rss = 1.0 - score * score
    for w in weights[1:]:
        projection = w @ R
        rss -= projection * projection
    np.maximum(rss, glm.TINY, out=rss)
    score /= np.sqrt(rss / model.dof)
    score[:, data.scale[cols] == 0] = 0.0
    return score


def _scores_to_t(model, score):
    """t from :func:`_scores` (identity unless rank(X) = 1)."""
    if model.basis.shape[1] != 1:
        return score
    return score * np.sqrt(model.dof / np.maximum(1.0 - score * score, glm.TINY))


def _apply_tail(score, tail):
    """In place: |score|, score or -score (large is significant)."""
    if tail == "two-sided":
        np.abs(score, out=score)
    elif tail == "negative":
        np.negative(score, out=score)
    return score


def permuted_t(model, data, plan, start, stop):
    """t maps of the contrast for permutation indices ``start..stop-1``.

    t = (u.GR + u.H_Z Y) / sqrt(RSS / dof) ; RSS = ||R||^2 - sum_k (u_k.GR)^2

    (u_k: orthonormal basis of span(X), u_1 = u; ||GR|| = ||R|| because G is a
    signed permutation.) All patterns and voxels are computed as matrix
    products; memory is (stop - start) x n_voxels floats, so callers bound it
    through the range.

    Returns
    -------
    ndarray (stop - start, n_voxels)
    """
    weights = _pattern_weights(plan, start, stop, model.basis)
    return _scores_to_t(model, _scores(model, data, weights))


def observed_t(model, data):
    """t map of the unpermuted data (permutation index 0, the identity).

    Equal to ``glm.t_contrast`` of ``glm.fit_ols(X, Y)`` (the tests assert it).
    """
    plan = PermutationPlan("sign-flip", model.n_subjects, 1, True, 0)
    return permuted_t(model, data, plan, 0, 1)[0]


# --------------------------------------------------------------------------
# Null distributions by chunk, observed maps, merge into p values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PermutationOptions:
    """Which statistics to compute, shared by chunks, observed maps and merge.

    Attributes
    ----------
    tail : {"two-sided", "positive", "negative"}
        Two-sided tests use |t|; "negative" tests -t.
    cluster_threshold : float or None
        Cluster-forming threshold on t (see
        :func:`nipype_secondlevel.stats.spatial.cluster_forming_threshold`);
        None skips cluster size/mass inference.
    tfce : bool
        Compute TFCE inference.
    tfce_dh : "auto" or float
    tfce_E, tfce_H : float
    connectivity : {1, 2, 3}
        Neighbourhood for clusters and TFCE (1 = 6 neighbours, as nilearn).
    batch_size : int or None
        Patterns per matrix product; None chooses about 32 MB per batch.
    uncorrected : bool
        Count, per voxel, the patterns reaching the observed statistic (the
        uncorrected permutation p map). For random plans this is a pass over
        every (pattern, voxel) pair, which the max-T statistics alone do not
        need (see :func:`null_chunk`).
    """

    tail: str = "two-sided"
    cluster_threshold: float | None = None
    tfce: bool = False
    tfce_dh: object = "auto"
    tfce_E: float = 0.5
    tfce_H: float = 2.0
    connectivity: int = 1
    batch_size: int | None = None
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
    max_t : ndarray (stop - start,)
        Max over voxels of the tail statistic (|t|, t or -t).
    max_cluster_size, max_cluster_mass : ndarray (stop - start,) or None
    max_tfce : ndarray (stop - start,) or None
        Max over voxels of |TFCE|.
    exceedances : ndarray of int (n_voxels,) or None
        Per voxel, patterns whose tail statistic >= the observed one (None
        when ``options.uncorrected`` is False).
    """

    start: int
    stop: int
    max_t: np.ndarray
    exceedances: np.ndarray | None
    max_cluster_size: np.ndarray | None = None
    max_cluster_mass: np.ndarray | None = None
    max_tfce: np.ndarray | None = None


def tail_statistic(t, tail):
    """The statistic large values of which are significant: |t|, t or -t."""
    spatial.check_tail(tail)
    if tail == "two-sided":
        return np.abs(t)
    return t if tail == "positive" else -t


def _batch_size(options, n_voxels, spatial_stats):
    if options.batch_size:
        return int(options.batch_size)
    if spatial_stats:  # whole maps: about 32 MB of t values per batch
        return int(max(1, min(256, 4_000_000 // max(n_voxels, 1))))
    return 128


#: Voxels per tile of the max-T / exceedance pass (keeps tiles in cache).
VOXEL_TILE = 16384


def _max_score_to_t(model, max_score, tail):
    """Max of the tail statistic in t units from the max of the tail score."""
    if tail == "two-sided":
        return _scores_to_t(model, max_score)
    sign = 1.0 if tail == "positive" else -1.0
    return sign * _scores_to_t(model, sign * max_score)


def _graph(mask, options):
    if not options.spatial:
        return None
    if mask is None:
        raise ValueError("cluster and TFCE statistics need a mask")
    return spatial.voxel_graph(mask, options.connectivity)


# --------------------------------------------------------------------------
# Sign tables: fast max-T and uncorrected counts for sign flips
# --------------------------------------------------------------------------

#: Subjects per sign table: a table holds the partial sums of all 2**8 sign
#: patterns of its subjects (256 rows).
TABLE_BITS = 8

#: Voxels per block of the exact sums and of the fine bounds of the max-T
#: kernel (:func:`_max_kernel`); fine blocks are grouped by COARSE_RATIO
#: into coarse blocks.
FINE_BLOCK = 16

#: Fine blocks per coarse block (coarse blocks of FINE_BLOCK * COARSE_RATIO).
COARSE_RATIO = 8

#: Best-bounded coarse blocks searched first by :func:`_max_kernel`.
SEED_BLOCKS = 8

#: Voxels per tile of the sign tables of the uncorrected counts.
TABLE_TILE = 4096


def sign_table(weighted):
    """Partial sums of every sign pattern of a few subjects.

    table[c] = sum_j s_j(c) w_j ;  s_j(c) = -1 if bit j of c is set, else +1

    Built by doubling (rows so far plus w_j, then minus w_j), so the rows of a
    pattern and of its complement are exact negatives of each other and every
    entry is summed in the same order (subject 0 first) whatever the tile.

    Parameters
    ----------
    weighted : array (k, w), 1 <= k <= TABLE_BITS
        float32 tables stay float32; anything else becomes float64.

    Returns
    -------
    ndarray (2**k, w)
    """
    weighted = np.asarray(weighted)
    if weighted.dtype != np.float32:
        weighted = weighted.astype(float)
    k, w = weighted.shape
    table = np.empty((1 << k, w), dtype=weighted.dtype)
    table[0] = weighted[0]
    np.negative(weighted[0], out=table[1])
    for j in range(1, k):
        half = 1 << j
        np.subtract(table[:half], weighted[j], out=table[half:2 * half])
        table[:half] += weighted[j]
    return table


def _subject_groups(n_subjects):
    return [np.arange(a, min(a + TABLE_BITS, n_subjects))
            for a in range(0, n_subjects, TABLE_BITS)]


def _pattern_codes(signs, groups):
    """Row of every pattern in every group's sign table."""
    negative = (signs < 0).astype(np.int64)
    return [negative[:, g] @ (1 << np.arange(g.size, dtype=np.int64))
            for g in groups]


def _voxel_order(mask, n_vox):
    """Voxel columns sorted by 4 x 4 x 4 cubes (compact bound blocks)."""
    if mask is None:
        return np.arange(n_vox)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or int(mask.sum()) != n_vox:
        return np.arange(n_vox)
    x, y, z = np.nonzero(mask)
    return np.lexsort((z, y, x, z // 4, y // 4, x // 4))


def _table_sum(parts, codes, rows=slice(None)):
    """parts[0][c0] + (parts[1][c1] + parts[2][c2] + ...), one fixed order.

    The pattern sums of the max pass, the count pass and the observed map all
    use this association, so the same pattern gives the same bits everywhere.
    """
    rest = None
    for part, code in zip(parts[1:], codes[1:]):
        value = np.take(part, code[rows], axis=0)
        rest = value if rest is None else np.add(rest, value, out=rest)
    first = np.take(parts[0], codes[0][rows], axis=0)
    return first if rest is None else np.add(first, rest, out=rest)


def _ordered_keys(x):
    """Order-preserving int64 keys of float64 values with |x| <= 1.5."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    return np.where(bits >= 0, bits, -(bits & np.int64(0x7FFFFFFFFFFFFFFF)))


def _pairs_at_least(values, cuts):
    """Per row: #{(i, j) : values[i] >= cuts[j]}, by one sort of both.

    values : (w, A) with |values| <= 1 ; cuts : (w, B). Both become exact
    order-preserving integers (cuts clipped to +-1.5, which keeps every
    comparison with the values), doubled, plus 1 for values: a value equal to
    a cut sorts after it, so the values before each cut are exactly those
    below it.
    """
    n_values = values.shape[1]
    keys = np.concatenate([2 * _ordered_keys(np.clip(cuts, -1.5, 1.5)),
                           2 * _ordered_keys(values) + 1], axis=1)
    keys.sort(axis=1)
    is_value = keys & 1
    below = np.cumsum(is_value, axis=1)
    return np.where(is_value == 1, 0, n_values - below).sum(axis=1)


def _tile_counts(tables, codes, plan, start, stop, tail, threshold):
    """Per voxel of the tile: patterns whose statistic >= ``threshold``.

    Exhaustive plans: a pattern index is code_0 + 2**k0 * (rest), so aligned
    runs of 2**k0 indices share the other groups' sum r and run over every
    row t of the first table: t + r >= c counts as t >= c - r, all (t, r)
    pairs of a voxel in one sort (:func:`_pairs_at_least`). (This compares
    t with c - r rounded rather than t + r rounded with c; they can differ
    only for a sum within one rounding of c, which lies TIE_RTOL below the
    observed value.) Other patterns (random plans, the ends of a chunk) are
    summed and compared one by one.
    """
    w = threshold.size
    counts = np.zeros(w, dtype=np.int64)
    size = tables[0].shape[0]
    n_local = stop - start
    direct = np.arange(n_local)
    if plan.exhaustive and n_local >= size:
        first_row = -(-start // size)
        last_row = stop // size
        if last_row > first_row:
            lo, hi = first_row * size - start, last_row * size - start
            direct = np.r_[np.arange(lo), np.arange(hi, n_local)]
            heads = np.arange(lo, hi, size)
            first = np.ascontiguousarray(tables[0].T)
            for a in range(0, heads.size, 64):
                h = heads[a:a + 64]
                if len(tables) > 1:
                    rest = _table_sum(tables[1:], [code[h] for code in codes[1:]])
                else:
                    rest = np.zeros((h.size, w))
                # t + r >= c  <=>  t >= c - r ;  t + r <= -c  <=>  -t >= c + r
                if tail != "negative":
                    up = _pairs_at_least(first, (threshold - rest).T)
                if tail != "positive":
                    down = _pairs_at_least(-first, (threshold + rest).T)
                if tail == "positive":
                    n = up
                elif tail == "negative":
                    n = down
                else:
                    n = np.where(threshold > 0, up + down, size * h.size)
                counts += n
    for a in range(0, direct.size, 64):
        rows = direct[a:a + 64]
        sums = _table_sum(tables, codes, rows)
        _apply_tail(sums, tail)
        counts += np.count_nonzero(sums >= threshold, axis=0)
    return counts



@njit(cache=True, nogil=True)
def _block_table_max(blocks, sizes, bits):
    """Per group, code and fine block: max over the block of the sign table.

    blocks : (n_blocks, n, F) weighted data. Returns (G, 2**bits, n_blocks)
    float64, each entry the max of :func:`sign_table` rows (same doubling, so
    the same bits) over the block's voxels; codes beyond a group's 2**k are
    left at -inf.
    """
    n_blocks, _, size = blocks.shape
    n_groups = sizes.size
    out = np.full((n_groups, 1 << bits, n_blocks), -np.inf)
    table = np.empty(1 << bits)
    for g in range(n_groups):
        j0 = g * bits
        for b in range(n_blocks):
            for v in range(size):
                w = blocks[b, j0, v]
                table[0] = w
                table[1] = -w
                for j in range(1, sizes[g]):
                    half = 1 << j
                    w = blocks[b, j0 + j, v]
                    for c in range(half):
                        table[half + c] = table[c] - w
                        table[c] = table[c] + w
                for c in range(1 << sizes[g]):
                    out[g, c, b] = max(out[g, c, b], table[c])
    return out


@njit(cache=True, nogil=True, inline="always")
def _bound(maxima, cs, block):
    """maxima[0][c0] + (maxima[1][c1] + maxima[2][c2] + ...): the association
    of :func:`_table_sum`; rounding is monotone, so this bounds every sum."""
    first = maxima[0, cs[0], block]
    if maxima.shape[0] == 1:
        return first
    rest = maxima[1, cs[1], block]
    for g in range(2, maxima.shape[0]):
        rest += maxima[g, cs[g], block]
    return first + rest


@njit(cache=True, nogil=True, inline="always")
def _exact_block_max(blocks, b, ps, sizes, bits, part):
    """Max over fine block ``b`` of the pattern sums with signs ``ps``, with
    the bits of :func:`_table_sum` of :func:`sign_table` (each group summed
    subject by subject, then group_0 + (group_1 + group_2 + ...))."""
    size = blocks.shape[2]
    n_groups = sizes.size
    for g in range(n_groups):
        j0 = g * bits
        s = ps[j0]
        for v in range(size):
            part[g, v] = s * blocks[b, j0, v]
        for j in range(j0 + 1, j0 + sizes[g]):
            s = ps[j]
            for v in range(size):
                part[g, v] += s * blocks[b, j, v]
    best = -np.inf
    for v in range(size):
        value = part[0, v]
        if n_groups > 1:
            rest = part[1, v]
            for g in range(2, n_groups):
                rest += part[g, v]
            value = value + rest
        best = max(best, value)
    return best


@njit(cache=True, nogil=True)
def _max_kernel(blocks, fine, coarse, signs, codes, sizes, bits, sides, ratio,
                seeds):
    """Max over voxels of the tail score of every pattern, by branch and bound.

    Per pattern and side (+1, or -1: the complement pattern), coarse blocks
    are bounded by the sum of their rows' block maxima (:func:`_bound`); the
    best-bounded coarse block is searched first, then every coarse block whose
    bound exceeds the running maximum is split into fine blocks, and the fine
    blocks whose bound exceeds it are summed exactly (:func:`_exact_block_max`).
    The result equals the maximum of the exact sums over all voxels.
    """
    n_pat = signs.shape[0]
    n_groups = sizes.size
    n_coarse = coarse.shape[2]
    n_sides = sides.size
    full = np.empty(n_groups, np.int64)
    for g in range(n_groups):
        full[g] = (1 << sizes[g]) - 1
    out = np.empty(n_pat)
    ub = np.empty(n_sides * n_coarse)
    cs = np.empty((n_sides, n_groups), np.int64)
    ps = np.empty((n_sides, signs.shape[1]))
    part = np.empty((n_groups, blocks.shape[2]))
    n_seed = min(seeds, ub.size)
    top = np.empty(n_seed + 1, np.int64)
    for p in range(n_pat):
        n_top = 0
        for k in range(n_sides):
            for g in range(n_groups):
                cs[k, g] = codes[g, p] ^ full[g] if sides[k] < 0 else codes[g, p]
            for j in range(signs.shape[1]):
                ps[k, j] = signs[p, j] * sides[k]
            for c in range(n_coarse):
                at = k * n_coarse + c
                ub[at] = _bound(coarse, cs[k], c)
                # insertion into the n_seed best-bounded blocks, best first
                if n_top < n_seed or ub[at] > ub[top[n_top - 1]]:
                    i = n_top if n_top < n_seed else n_seed - 1
                    while i > 0 and ub[top[i - 1]] < ub[at]:
                        top[i] = top[i - 1]
                        i -= 1
                    top[i] = at
                    n_top = min(n_top + 1, n_seed)
        best = -np.inf
        for i in range(-n_top, ub.size):
            at = top[i + n_top] if i < 0 else i
            if not ub[at] > best:
                continue
            ub[at] = -np.inf  # visited
            k, c = divmod(at, n_coarse)
            for b in range(c * ratio, (c + 1) * ratio):
                if _bound(fine, cs[k], b) > best:
                    value = _exact_block_max(blocks, b, ps[k], sizes, bits, part)
                    best = max(best, value)
        out[p] = best
    return out


def _max_scores(signs, codes, groups, weighted, tail):
    """Max over the columns of ``weighted`` (u_j r_j, padded to whole coarse
    blocks) of the tail score of every pattern (:func:`_max_kernel`)."""
    n_cols = weighted.shape[1]
    if signs.shape[0] == 0:
        return np.empty(0)
    blocks = np.ascontiguousarray(
        weighted.reshape(weighted.shape[0], n_cols // FINE_BLOCK, FINE_BLOCK)
        .transpose(1, 0, 2))
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    fine = _block_table_max(blocks, sizes, TABLE_BITS)
    coarse = fine.reshape(fine.shape[0], fine.shape[1], -1, COARSE_RATIO).max(axis=3)
    sides = {"positive": [1.0], "negative": [-1.0],
             "two-sided": [1.0, -1.0]}[tail]
    codes = np.ascontiguousarray(np.stack(codes))
    # patterns sharing the other groups' rows one after the other (cache)
    order = np.lexsort(codes[::-1])
    best = np.empty(signs.shape[0])
    best[order] = _max_kernel(blocks, fine, coarse,
                              np.ascontiguousarray(signs[order]),
                              np.ascontiguousarray(codes[:, order]), sizes,
                              TABLE_BITS, np.array(sides), COARSE_RATIO,
                              SEED_BLOCKS)
    return best


def _sign_table_chunk(model, data, plan, start, stop, mask, options):
    """:func:`null_chunk` for sign flips of a rank-1 design, by sign tables.

    With u the contrast direction and r_j the normalised residuals of subject
    j, pattern s has the score sum_j s_j u_j r_j at every voxel. The subjects
    are split into groups of 8; a group's 256 partial sums are its sign table
    (:func:`sign_table`), and a pattern's score is a sum of table rows
    (:func:`_table_sum`, one fixed association). The maxima are found exactly
    by branch and bound over blocks of voxels (:func:`_max_kernel`, compiled
    by numba). Uncorrected counts use float64 tables (binary searches in
    sorted tables for exhaustive plans, :func:`_tile_counts`).
    """
    tail = options.tail
    n_vox = data.scale.size
    groups = _subject_groups(plan.n_subjects)
    signs = sign_flip_patterns(plan, start, stop)
    codes = _pattern_codes(signs, groups)
    u = model.basis[:, 0]
    order = _voxel_order(mask, n_vox)
    whole = FINE_BLOCK * COARSE_RATIO
    order = np.r_[order, np.full(-n_vox % whole, order[-1])]  # whole blocks
    weighted = data.residuals[:, order] * u[:, None]
    best = _max_scores(signs, codes, groups, weighted, tail)
    max_t = _max_score_to_t(model, best, tail)
    if not options.uncorrected:
        return NullChunk(start=start, stop=stop, max_t=max_t, exceedances=None)
    exceed = np.zeros(n_vox, dtype=np.int64)
    identity = [np.zeros(1, dtype=np.int64) for _ in groups]
    for lo in range(0, n_vox, TABLE_TILE):
        cols = slice(lo, min(lo + TABLE_TILE, n_vox))
        tables = [sign_table(weighted[g, cols]) for g in groups]
        reference = _apply_tail(_table_sum(tables, identity)[0], tail)
        threshold = reference - TIE_RTOL * np.abs(reference)
        exceed[order[cols]] += _tile_counts(tables, codes, plan, start, stop,
                                            tail, threshold)
    return NullChunk(start=start, stop=stop, max_t=max_t, exceedances=exceed)


def null_chunk(model, data, plan, start, stop, mask=None, options=None):
    """Null statistics for one chunk of permutation indices.

    For each pattern i in ``start..stop-1``: the max over voxels of the tail
    statistic (voxel max-T), and if requested the largest cluster size and
    mass at ``options.cluster_threshold`` and the largest |TFCE|; plus, per
    voxel, how many patterns reach the observed statistic (for uncorrected p).

    The result depends only on the indices, not on how ``range(n_perm)`` is
    split, so chunks can be computed in any order, in separate processes, and
    combined by :func:`merge_null_chunks`.

    Parameters
    ----------
    model : LinearModel
    data : PreparedData
    plan : PermutationPlan
    start, stop : int
    mask : array of bool, 3D, or None
        Needed for cluster and TFCE statistics; ``mask.sum() == n_voxels``.
    options : PermutationOptions or None

    Returns
    -------
    NullChunk
    """
    options = options or PermutationOptions()
    start, stop = _check_range(plan, start, stop)
    if plan.n_subjects != model.n_subjects:
        raise ValueError("plan and model have different numbers of subjects")
    if (plan.scheme == "sign-flip" and model.basis.shape[1] == 1
            and not options.spatial):
        return _sign_table_chunk(model, data, plan, start, stop, mask, options)
    graph = _graph(mask, options)
    tail = options.tail
    n_vox = data.scale.size
    identity = _pattern_weights(
        PermutationPlan("sign-flip", model.n_subjects, 1, True, 0), 0, 1,
        model.basis,
    )
    reference = _apply_tail(_scores(model, data, identity)[0], tail)
    threshold = reference - TIE_RTOL * np.abs(reference)
    n_chunk = stop - start
    max_score = np.empty(n_chunk)
    exceed = np.zeros(n_vox, dtype=np.int64) if options.uncorrected else None
    clusters = options.cluster_threshold is not None
    sizes = np.zeros(n_chunk) if clusters else None
    masses = np.zeros(n_chunk) if clusters else None
    tfces = np.zeros(n_chunk) if options.tfce else None
    step = _batch_size(options, n_vox, options.spatial)
    tiles = [slice(a, min(a + VOXEL_TILE, n_vox))
             for a in range(0, n_vox, VOXEL_TILE)]
    for lo in range(start, stop, step):
        hi = min(lo + step, stop)
        rows = slice(lo - start, hi - start)
        weights = _pattern_weights(plan, lo, hi, model.basis)
        if options.spatial:
            score = _scores(model, data, weights)
            t = _scores_to_t(model, score)
            _apply_tail(score, tail)
            max_score[rows] = score.max(axis=1)
            if exceed is not None:
                exceed += np.count_nonzero(score >= threshold, axis=0)
            for j, t_map in enumerate(t, start=lo - start):
                if clusters:
                    sizes[j], masses[j] = spatial.max_cluster_measures(
                        t_map, graph, options.cluster_threshold, tail
                    )
                if options.tfce:
                    tfces[j] = spatial.max_tfce(
                        t_map, graph, tail, options.tfce_dh, options.tfce_E,
                        options.tfce_H,
                    )
            continue
        best = np.full(hi - lo, -np.inf)
        for cols in tiles:  # cache-sized tiles: max and counts in one pass
            score = _apply_tail(_scores(model, data, weights, cols), tail)
            np.maximum(best, score.max(axis=1), out=best)
            if exceed is not None:
                above = score >= threshold[cols]
                exceed[cols] += above.view(np.uint8).sum(axis=0, dtype=np.int64)
        max_score[rows] = best
    max_t = _max_score_to_t(model, max_score, tail)
    return NullChunk(
        start=start, stop=stop, max_t=max_t, exceedances=exceed,
        max_cluster_size=sizes, max_cluster_mass=masses, max_tfce=tfces,
    )


@dataclass
class ObservedMaps:
    """Statistics of the unpermuted data (see :func:`observed_maps`).

    Attributes
    ----------
    t : ndarray (n_voxels,)
    cluster_size, cluster_mass : ndarray (n_voxels,) or None
        Size / mass of the cluster of each voxel, 0 outside clusters.
    tfce : ndarray (n_voxels,) or None
        TFCE (negative for negative clusters of a two-sided test).
    """

    t: np.ndarray
    cluster_size: np.ndarray | None = None
    cluster_mass: np.ndarray | None = None
    tfce: np.ndarray | None = None


def observed_maps(model, data, mask=None, options=None):
    """t, cluster and TFCE maps of the unpermuted data.

    Parameters as :func:`null_chunk`.

    Returns
    -------
    ObservedMaps
    """
    options = options or PermutationOptions()
    graph = _graph(mask, options)
    t = observed_t(model, data)
    out = ObservedMaps(t=t)
    if options.cluster_threshold is not None:
        out.cluster_size, out.cluster_mass = spatial.cluster_maps(
            t, graph, options.cluster_threshold, options.tail
        )
    if options.tfce:
        out.tfce = spatial.tfce_map(
            t, graph, options.tail, options.tfce_dh, options.tfce_E,
            options.tfce_H,
        )
    return out


@dataclass
class PermutationResult:
    """p values of a permutation test, as -log10 p maps (n_voxels,).

    Attributes
    ----------
    n_perm : int
        Patterns used, identity included (p >= 1 / n_perm).
    t : ndarray
    logp_uncorrected : ndarray or None
        None when the chunks were computed with ``uncorrected=False``.
    logp_max_t : ndarray
        FWER-corrected by the max-T distribution.
    logp_max_size, logp_max_mass : ndarray or None
        Cluster-wise FWER by max cluster size / mass (0 outside clusters).
    logp_max_tfce : ndarray or None
    h0_max_t, h0_max_size, h0_max_mass, h0_max_tfce : ndarray (n_perm,) or None
        Null distributions of the maxima, in permutation-index order.
    """

    n_perm: int
    t: np.ndarray
    logp_uncorrected: np.ndarray | None
    logp_max_t: np.ndarray
    h0_max_t: np.ndarray
    logp_max_size: np.ndarray | None = None
    logp_max_mass: np.ndarray | None = None
    logp_max_tfce: np.ndarray | None = None
    h0_max_size: np.ndarray | None = None
    h0_max_mass: np.ndarray | None = None
    h0_max_tfce: np.ndarray | None = None


def fwer_pvalues(observed, null_max):
    """Family-wise p values against the null distribution of the maximum.

    p(v) = #{i : null_max_i >= observed(v)} / n_perm   (ties within TIE_RTOL)

    Parameters
    ----------
    observed : array (n_voxels,)
        Tail statistic (large is significant).
    null_max : array (n_perm,)
        Maximum of the same statistic in each pattern, identity included.

    Returns
    -------
    ndarray (n_voxels,)
    """
    observed = np.asarray(observed, dtype=float)
    null = np.sort(np.asarray(null_max, dtype=float))
    # null >= obs (1 - rtol) for obs >= 0; the statistics here are >= 0
    cut = observed - TIE_RTOL * np.abs(observed)
    below = np.searchsorted(null, cut, side="left")
    return (null.size - below) / null.size


def _neg_log10(p):
    """-log10 p (0.0 rather than -0.0 for p = 1)."""
    return -np.log10(p) + 0.0


def _gather(chunks, name):
    parts = [getattr(c, name) for c in chunks]
    if any(p is None for p in parts):
        return None
    return np.concatenate(parts)


def merge_null_chunks(observed, chunks, options=None):
    """Combine chunk null distributions into -log10 p maps.

    p_uncorrected(v) = sum_chunks exceedances(v) / n_perm ;
    p_FWER(v) = #{i : max_i >= stat(v)} / n_perm (max-T, cluster, TFCE)

    Parameters
    ----------
    observed : ObservedMaps
    chunks : sequence of NullChunk
        Together covering ``0..n_perm-1`` exactly once, in any order.
    options : PermutationOptions or None
        The options the chunks and observed maps were computed with.

    Returns
    -------
    PermutationResult
    """
    options = options or PermutationOptions()
    chunks = sorted(chunks, key=lambda c: c.start)
    if not chunks:
        raise ValueError("no chunks to merge")
    position = 0
    for chunk in chunks:
        if chunk.start != position:
            raise ValueError(
                f"chunks do not tile the permutations: expected start "
                f"{position}, got {chunk.start}"
            )
        position = chunk.stop
    n_perm = position
    if any(c.exceedances is None for c in chunks):
        logp_uncorrected = None
    else:
        exceed = np.sum([c.exceedances for c in chunks], axis=0)
        logp_uncorrected = _neg_log10(exceed / n_perm)
    h0_t = _gather(chunks, "max_t")
    stat = tail_statistic(observed.t, options.tail)
    result = PermutationResult(
        n_perm=n_perm,
        t=observed.t,
        logp_uncorrected=logp_uncorrected,
        logp_max_t=_neg_log10(fwer_pvalues(stat, h0_t)),
        h0_max_t=h0_t,
    )
    if options.cluster_threshold is not None:
        h0_size = _gather(chunks, "max_cluster_size")
        h0_mass = _gather(chunks, "max_cluster_mass")
        inside = observed.cluster_size > 0
        for name, obs, h0 in (
            ("size", observed.cluster_size, h0_size),
            ("mass", observed.cluster_mass, h0_mass),
        ):
            logp = np.zeros(obs.shape)
            logp[inside] = _neg_log10(fwer_pvalues(obs[inside], h0))
            setattr(result, f"logp_max_{name}", logp)
            setattr(result, f"h0_max_{name}", h0)
    if options.tfce:
        h0_tfce = _gather(chunks, "max_tfce")
        magnitude = np.abs(observed.tfce)
        inside = magnitude > 0
        logp = np.zeros(magnitude.shape)
        logp[inside] = _neg_log10(fwer_pvalues(magnitude[inside], h0_tfce))
        result.logp_max_tfce = logp
        result.h0_max_tfce = h0_tfce
    return result


def permutation_test(Y, X=None, contrast=None, mask=None, n_perm=10000,
                     seed=0, scheme="sign-flip", n_chunks=1, options=None):
    """Whole permutation test in one call (plan, chunks, observed, merge).

    Parameters
    ----------
    Y : array (n, n_voxels)
    X, contrast : see :func:`linear_model` (None: one-sample test)
    mask : array of bool, 3D, or None
    n_perm, seed, scheme : see :func:`plan_permutations`
    n_chunks : int
        Number of chunks (the result does not depend on it).
    options : PermutationOptions or None

    Returns
    -------
    PermutationResult
    """
    options = options or PermutationOptions()
    Y = np.asarray(Y, dtype=float)
    model = linear_model(X, contrast, n_subjects=Y.shape[0])
    data = prepare_data(model, Y)
    plan = plan_permutations(Y.shape[0], n_perm, scheme, seed)
    chunks = [
        null_chunk(model, data, plan, a, b, mask, options)
        for a, b in chunk_bounds(plan.n_perm, n_chunks)
    ]
    observed = observed_maps(model, data, mask, options)
    return merge_null_chunks(observed, chunks, options)
