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

from nipype_secondlevel.numerics import glm
from nipype_secondlevel.numerics import tfce as spatial

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
        :func:`nipype_secondlevel.numerics.tfce.cluster_forming_threshold`);
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

#: Voxels per block of the float32 maxima (see :func:`_sign_table_chunk`).
BOUND_BLOCK = 64

#: Voxels per tile of the sign tables (a multiple of BOUND_BLOCK).
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


def _tail_max(values, tail, axis):
    if tail == "two-sided":
        return np.maximum(values.max(axis=axis), -values.min(axis=axis))
    if tail == "positive":
        return values.max(axis=axis)
    return -values.min(axis=axis)


def _rest_groups(codes):
    """Patterns sharing the codes of every group but the first.

    Returns a list of (pattern indices, their first-group codes, the shared
    codes of the other groups).
    """
    if len(codes) == 1:
        return [(np.arange(codes[0].size), codes[0], [])]
    rest = np.stack(codes[1:], axis=1)
    keys, inverse = np.unique(rest, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(keys.shape[0] + 1))
    return [(order[lo:hi], codes[0][order[lo:hi]], list(keys[i]))
            for i, (lo, hi) in enumerate(pairwise(bounds))]


def _tile_block_max(tables32, groups_of_patterns, tail, running, found, offset):
    """Float32 pass: every pattern's statistic maximum per block of the tile.

    Updates ``running`` (float32 max so far per pattern) and appends to
    ``found`` the (pattern, block, value) within :func:`_float32_margin` of
    it; blocks are numbered from ``offset``.
    """
    first = tables32[0]
    n_blocks = first.shape[1] // BOUND_BLOCK
    margin = _float32_margin(len(tables32))
    for patterns, a_codes, rest_codes in groups_of_patterns:
        rest = None
        for table, code in zip(tables32[1:], rest_codes):
            rest = table[code] if rest is None else rest + table[code]
        full = a_codes.size == first.shape[0] and np.array_equal(
            a_codes, np.arange(first.shape[0]))
        for lo in range(0, patterns.size, 256):
            p = patterns[lo:lo + 256]
            sums = first if full else np.take(first, a_codes[lo:lo + 256], axis=0)
            if rest is not None:
                sums = sums + rest
            # columns are member-major: voxel k of block b is column k * nb + b
            blocked = sums.reshape(p.size, BOUND_BLOCK, n_blocks)
            stat = _tail_max(blocked, tail, axis=1)
            top = stat.max(axis=1)
            np.maximum.at(running, p, top)
            r, blk = np.nonzero(stat >= (running[p] - margin)[:, None])
            found.append((p[r], blk + offset, stat[r, blk]))


def _float32_margin(n_groups):
    """Bound on twice the rounding error of a float32 pattern sum.

    Every partial sum is at most 1 in magnitude (normalised residuals, unit u),
    so each of the <= 10 float32 operations per group errs by at most 2**-24.
    """
    return 64.0 * n_groups * 2.0**-24


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



#: Voxels per block at each level of the pruned max-T, coarse to fine; each
#: divides the previous one and the first divides TABLE_TILE.
PRUNE_LEVELS = (128, 16, 4)

#: Patterns per batch of the pruned max-T.
PRUNE_BATCH = 256

#: Blocks kept per level by the beam search seeding the lower bounds.
SEED_BEAM = 32

#: Finest blocks of the beam summed exactly.
SEED_EXACT = 16

#: Rounds summing exactly each pattern's best-bounded remaining finest block
#: (raising L) before all the others reaching L.
REFINE_ROUNDS = 1


def _association_sums(signs, wblocks, groups):
    """Pattern sums with the bits of :func:`_table_sum` of :func:`sign_table`.

    signs : (K, n) ; wblocks : (n, K, w). Each group is summed subject by
    subject (as the doubling of :func:`sign_table`), then
    group_0 + (group_1 + group_2 + ...).
    """
    parts = []
    for g in groups:
        acc = signs[:, g[0], None] * wblocks[g[0]]
        for j in g[1:]:
            acc += signs[:, j, None] * wblocks[j]
        parts.append(acc)
    rest = None
    for part in parts[1:]:
        rest = part if rest is None else np.add(rest, part, out=rest)
    return parts[0] if rest is None else parts[0] + rest


def _block_stats(signs, weighted, groups, r, block, size, tail):
    """Tail statistic maximum of pattern ``r[i]`` over block ``block[i]``.

    Blocks are ``size`` consecutive columns of ``weighted``; sums as
    :func:`_association_sums` (the bits of the sign tables).
    """
    blocks = weighted.reshape(weighted.shape[0], -1, size)
    out = np.empty(r.size)
    for a in range(0, r.size, 8192):
        sel = slice(a, a + 8192)
        sums = _association_sums(signs[r[sel]], blocks[:, block[sel]], groups)
        out[sel] = _tail_max(sums, tail, axis=1)
    return out


def _signed_block_max(signs, voxel_rows, groups, r, side, block, size):
    """Max of the sums of pattern r[i] times side[i] (+-1), over
    block ``block[i]`` of ``size`` voxels; ``voxel_rows`` is the weighted
    data transposed (voxels, subjects). Bits of the sign tables, as
    :func:`_association_sums`."""
    n = voxel_rows.shape[1]
    blocks = voxel_rows.reshape(-1, size * n)
    out = np.empty(r.size)
    for a in range(0, r.size, 16384):
        sel = slice(a, a + 16384)
        pats = signs[r[sel]] * side[sel, None]
        x = np.take(blocks, block[sel], axis=0).reshape(-1, size, n)
        x *= pats[:, None, :]
        parts = []
        for g in groups:
            acc = np.array(x[:, :, g[0]])
            for j in g[1:]:
                acc += x[:, :, j]
            parts.append(acc)
        rest = None
        for part in parts[1:]:
            rest = part if rest is None else np.add(rest, part, out=rest)
        sums = parts[0] if rest is None else np.add(parts[0], rest, out=rest)
        out[sel] = sums.max(axis=1)
    return out


def _tail_sides(tail):
    """Complement flags of the one-sided searches of a tail (the max of -S at
    pattern s is the max of S at the complement pattern -s)."""
    return {"positive": (False,), "negative": (True,),
            "two-sided": (False, True)}[tail]


class _LevelBounds:
    """Block maxima of every sign-table row at every level of PRUNE_LEVELS.

    Computed once in float32 from float32 tables; a pattern's bound over a
    block is the sum over groups of its rows' maxima (negative side: the
    complement rows, table[~c] = -table[c]). ``margin`` bounds the float32
    rounding (every partial sum is at most 1 in magnitude).
    """

    def __init__(self, weighted, groups, codes, sides):
        n_cols = weighted.shape[1]
        fine = PRUNE_LEVELS[-1]
        maxima = [np.empty((1 << g.size, n_cols // fine), np.float32)
                  for g in groups]
        for lo in range(0, n_cols, TABLE_TILE):
            hi = min(lo + TABLE_TILE, n_cols)
            # member-major columns: the block maxima reduce whole rows
            cols = np.arange(lo, hi).reshape(-1, fine).T.ravel()
            w32 = weighted[:, cols].astype(np.float32)
            for g, out in zip(groups, maxima):
                table = sign_table(w32[g])
                table.reshape(table.shape[0], fine, -1).max(
                    axis=1, out=out[:, lo // fine:hi // fine])
        self.levels = []  # per level, per group: rows (code, parent block)
        self.parents = []
        parent = 1
        for size in PRUNE_LEVELS:
            n_blocks = n_cols // size
            level = []
            for m in maxima:
                x = m.reshape(m.shape[0], n_blocks, size // fine)
                out = np.array(x[:, :, 0])
                for r in range(1, x.shape[2]):
                    np.maximum(out, x[:, :, r], out=out)
                level.append(out.reshape(-1, n_blocks // parent))
            self.levels.append(level)
            self.parents.append(parent)
            parent = n_blocks
        self.n_top = n_cols // PRUNE_LEVELS[0]
        self.codes = [[c ^ ((1 << g.size) - 1) if flip else c
                       for c, g in zip(codes, groups)] for flip in sides]
        self.margin = _float32_margin(len(groups))
        # per group: codes (sides, patterns)
        self.code_table = [np.stack([sc[gi] for sc in self.codes])
                           for gi in range(len(groups))]

    def top(self, rows):
        """Bounds (rows, sides * n_top), side-major columns."""
        out = np.empty((rows.size, len(self.codes), self.n_top), np.float32)
        for k, side_codes in enumerate(self.codes):
            for i, (m, c) in enumerate(zip(self.levels[0], side_codes)):
                if i == 0:
                    np.take(m, c[rows], axis=0, out=out[:, k])
                else:
                    out[:, k] += np.take(m, c[rows], axis=0)
        return out.reshape(rows.size, -1)

    def children(self, level, pattern, side, block):
        """Bounds (..., ratio) of the children at ``level`` of parent blocks
        ``block`` (numbered at level - 1)."""
        pattern, side, block = np.broadcast_arrays(pattern, side, block)
        total = None
        for gi, m in enumerate(self.levels[level]):
            code = self.codes[0][gi][pattern]
            if len(self.codes) == 2:
                code = np.where(side == 1, self.codes[1][gi][pattern], code)
            value = np.take(m, code * self.parents[level] + block, axis=0)
            total = value if total is None else np.add(total, value, out=total)
        return total


def _pruned_max(signs, codes, groups, weighted, tail):
    """Max over voxels of the tail statistic of every pattern, exactly, by
    branch and bound.

    A pattern's sum at a voxel is sum_g table_g[c_g, v], so over a block it
    is at most the sum of the block maxima of its rows (:class:`_LevelBounds`);
    the negative side is the positive side of the complement pattern. Per
    pattern: a beam search through the levels (the SEED_BEAM best-bounded
    blocks, then their best children, ...) and exact sums of the finest
    blocks found give a lower bound L of the maximum; then every block whose
    bound reaches L is split, level by level, and the finest blocks reaching
    L are summed exactly (:func:`_signed_block_max`, the bits of the sign
    tables). Returns the float64 maxima, equal to the maxima over all voxels.
    """
    n_pat = signs.shape[0]
    sides = _tail_sides(tail)
    side_sign = np.array([-1.0 if flip else 1.0 for flip in sides])
    bounds = _LevelBounds(weighted, groups, codes, sides)
    n_top = bounds.n_top
    fine = PRUNE_LEVELS[-1]
    best = np.full(n_pat, -np.inf)
    voxel_rows = np.ascontiguousarray(weighted.T)
    for start in range(0, n_pat, PRUNE_BATCH):
        rows = np.arange(start, min(start + PRUNE_BATCH, n_pat))
        top = bounds.top(rows)
        # beam search for the lower bounds
        beam = min(SEED_BEAM, top.shape[1])
        pick = np.argpartition(top, top.shape[1] - beam, axis=1)[:, -beam:]
        side, block = np.divmod(pick, n_top)
        for level in range(1, len(PRUNE_LEVELS)):
            child = bounds.children(level, rows[:, None], side, block)
            child = child.reshape(rows.size, -1)
            pick = np.argpartition(child, child.shape[1] - beam, axis=1)[:, -beam:]
            ratio = PRUNE_LEVELS[level - 1] // PRUNE_LEVELS[level]
            parent, c = np.divmod(pick, ratio)
            side = np.take_along_axis(side, parent, axis=1)
            block = np.take_along_axis(block, parent, axis=1) * ratio + c
            if level == len(PRUNE_LEVELS) - 1:  # exact sums of the best few
                keep = min(SEED_EXACT, beam)
                best_child = np.take_along_axis(child, pick, axis=1)
                top_k = np.argpartition(best_child, beam - keep, axis=1)[:, -keep:]
                side = np.take_along_axis(side, top_k, axis=1)
                block = np.take_along_axis(block, top_k, axis=1)
        lower = _signed_block_max(signs, voxel_rows, groups,
                                  np.repeat(rows, side.shape[1]),
                                  side_sign[side.ravel()], block.ravel(), fine)
        cut = lower.reshape(rows.size, -1).max(axis=1) - bounds.margin
        # every block reaching the lower bound, level by level
        cut32 = np.nextafter(cut.astype(np.float32), np.float32(-np.inf))
        i, k = np.nonzero(top >= cut32[:, None])
        side, block = np.divmod(k, n_top)
        row_codes = [c[side, rows[i]] for c in bounds.code_table]
        for level in range(1, len(PRUNE_LEVELS)):
            child = None
            for m, code in zip(bounds.levels[level], row_codes):
                value = np.take(m, code * bounds.parents[level] + block, axis=0)
                child = value if child is None else np.add(child, value, out=child)
            j, c = np.nonzero(child >= cut32[i][:, None])
            ratio = PRUNE_LEVELS[level - 1] // PRUNE_LEVELS[level]
            i, side, block = i[j], side[j], block[j] * ratio + c
            row_codes = [code[j] for code in row_codes]
            bound = child[j, c]
        # the best-bounded finest blocks of each pattern first: a higher L
        local = np.full(rows.size, -np.inf)
        for _ in range(REFINE_ROUNDS):
            if not i.size:
                break
            first = np.r_[0, np.flatnonzero(np.diff(i)) + 1]
            peak = np.maximum.reduceat(bound, first)
            at = np.flatnonzero(bound == np.repeat(peak, np.diff(np.r_[first, i.size])))
            at = at[np.r_[True, np.diff(i[at]) != 0]]
            value = _signed_block_max(signs, voxel_rows, groups, rows[i[at]],
                                      side_sign[side[at]], block[at], fine)
            owner = i[at]
            local[owner] = np.maximum(local[owner], value)
            cut[owner] = np.maximum(cut[owner], value - bounds.margin)
            rest = bound >= cut[i]
            rest[at] = False
            i, side, block, bound = i[rest], side[rest], block[rest], bound[rest]
        value = _signed_block_max(signs, voxel_rows, groups, rows[i],
                                  side_sign[side], block, fine)
        np.maximum.at(local, i, value)
        best[rows] = local
    return best


def _sign_table_chunk(model, data, plan, start, stop, mask, options,
                      prune=True):
    """:func:`null_chunk` for sign flips of a rank-1 design, by sign tables.

    With u the contrast direction and r_j the normalised residuals of subject
    j, pattern s has the score sum_j s_j u_j r_j at every voxel. The subjects
    are split into groups of 8; for a tile of voxels each group's 256 partial
    sums are tabulated (:func:`sign_table`), so a pattern's scores are one
    sum of table rows (two for 16 subjects) instead of a product over all
    subjects; patterns sharing the rows of the other groups are one broadcast
    addition. The maxima are found by branch and bound (:func:`_pruned_max`:
    float32 bounds of blocks of voxels from the tables' block maxima, exact
    float64 sums of the few blocks that can hold a pattern's maximum). With
    ``prune=False`` (reference for the tests) they are found in float32 for
    every voxel, per block of 64 voxels, and the blocks within float32
    rounding of a pattern's maximum are summed in float64; both give the
    same bits (the association of :func:`_table_sum`). Uncorrected counts
    use float64 tables (binary searches in sorted tables for exhaustive
    plans, :func:`_tile_counts`).
    """
    tail = options.tail
    n_vox = data.scale.size
    groups = _subject_groups(plan.n_subjects)
    signs = sign_flip_patterns(plan, start, stop)
    codes = _pattern_codes(signs, groups)
    identity = [np.zeros(1, dtype=np.int64) for _ in groups]
    u = model.basis[:, 0]
    order = _voxel_order(mask, n_vox)
    whole = int(np.lcm(BOUND_BLOCK, PRUNE_LEVELS[0]))
    order = np.r_[order, np.full(-n_vox % whole, order[-1])]  # whole blocks
    weighted = data.residuals[:, order] * u[:, None]
    # tile columns member-major, so that block maxima reduce whole rows
    tiles = [np.arange(a, min(a + TABLE_TILE, order.size))
             .reshape(-1, BOUND_BLOCK).T.ravel()
             for a in range(0, order.size, TABLE_TILE)]
    exceed = np.zeros(n_vox, dtype=np.int64) if options.uncorrected else None
    if prune:
        best = _pruned_max(signs, codes, groups, weighted, tail)
        if exceed is None:
            max_t = _max_score_to_t(model, best, tail)
            return NullChunk(start=start, stop=stop, max_t=max_t,
                             exceedances=None)
    running = np.full(stop - start, -np.inf, dtype=np.float32)
    found = []
    pattern_groups = _rest_groups(codes)
    for cols in tiles:
        tables = [sign_table(np.ascontiguousarray(weighted[g][:, cols])) for g in groups]
        if stop > start and not prune:
            _tile_block_max([t.astype(np.float32) for t in tables],
                            pattern_groups, tail, running, found,
                            cols.min() // BOUND_BLOCK)
        if exceed is not None:
            valid = cols < n_vox  # not the padding
            voxels = order[cols[valid]]
            tables = [np.ascontiguousarray(t[:, valid]) for t in tables]
            reference = _apply_tail(_table_sum(tables, identity)[0], tail)
            threshold = reference - TIE_RTOL * np.abs(reference)
            exceed[voxels] += _tile_counts(tables, codes, plan, start, stop,
                                           tail, threshold)
    if not prune:
        best = np.full(stop - start, -np.inf)
        if found:
            r, block, value = (np.concatenate(x) for x in zip(*found))
            keep = value >= running[r] - _float32_margin(len(groups))
            r, block = r[keep], block[keep]
            np.maximum.at(best, r, _block_stats(signs, weighted, groups, r, block,
                                                BOUND_BLOCK, tail))
    max_t = _max_score_to_t(model, best, tail)
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
