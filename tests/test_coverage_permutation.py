"""Permutation tests with per-voxel subjects against a brute-force enumeration.

The reference, written here with numpy and scipy: for every pattern and every
voxel, drop the subjects missing there, move (or flip) the present subjects'
nuisance residuals with them, refit the design on the rows they land on, and put
t or F on the z scale of that fit's dof; count, per voxel and for the max over
voxels, the patterns reaching the observed z.
"""

import itertools

import numpy as np
import pytest
from scipy import ndimage, stats

from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.stats.permutation.coverage import (
    cluster_threshold,
    coverage_permutation_test,
)

RTOL = 1e-9


def _tail(values, tail):
    return {"positive": values, "negative": -values, "two-sided": np.abs(values)}[tail]


def _z(X, y, C):
    """z of the t (one row) or F of contrast rows C on the OLS fit of every column of y
    (m, k) on X; 0 when C is not estimable on X or no residual dof is left."""
    rank = np.linalg.matrix_rank(X)
    dof = X.shape[0] - rank
    pinv = np.linalg.pinv(X)
    cov = C @ np.linalg.pinv(X.T @ X) @ C.T
    if dof < 1 or not np.allclose(C @ pinv @ X, C, atol=1e-8) or \
            np.linalg.matrix_rank(cov) < len(C):
        return np.zeros(y.shape[1])
    beta = pinv @ y
    sigma2 = np.sum((y - X @ beta) ** 2, axis=0) / dof
    effect = C @ beta
    if len(C) == 1:
        t = effect[0] / np.sqrt(sigma2 * cov[0, 0])
        return np.where(t > 0, stats.norm.isf(stats.t.sf(t, dof)),
                        stats.norm.ppf(stats.t.cdf(t, dof)))
    f = np.einsum("iv,ij,jv->v", effect, np.linalg.inv(cov), effect) / len(C) / sigma2
    return stats.norm.isf(stats.f.sf(f, len(C), dof))


def _residuals(Xr, y, C):
    """Freedman-Lane: y minus its fit on the nuisance Z = X (I - Q C'(C Q C')^-1 C)."""
    Q = np.linalg.pinv(Xr.T @ Xr)
    Z = Xr @ (np.eye(Xr.shape[1]) - Q @ C.T @ np.linalg.inv(C @ Q @ C.T) @ C)
    fitted = Z @ np.linalg.pinv(Z) @ y
    return y - fitted, fitted


def brute_force(X, C, Y, patterns, tail, min_subjects=1):
    """(p uncorrected, p max, observed z, null z maps) by refitting every pattern at every
    tested voxel on its present rows (the voxels with the same present rows at once)."""
    C = np.atleast_2d(C)
    present = ~np.isnan(Y)
    tested = np.flatnonzero(present.sum(axis=0) >= min_subjects)
    sets = {}
    for v in tested:
        sets.setdefault(tuple(np.flatnonzero(present[:, v])), []).append(v)
    observed = np.zeros(Y.shape[1])
    parts = {}
    for rows, voxels in sets.items():
        r = np.array(rows)
        y = Y[np.ix_(r, voxels)]
        observed[voxels] = _z(X[r], y, C)
        estimable = _z(X[r], np.ones((r.size, 1)) + np.arange(r.size)[:, None] ** 2, C)[0] != 0
        parts[rows] = _residuals(X[r], y, C) if estimable else None
    cut = _tail(observed, tail) - RTOL * np.abs(observed)
    count, count_max = np.zeros(Y.shape[1]), np.zeros(Y.shape[1])
    nulls = []
    for pattern in patterns:
        pattern = np.asarray(pattern)
        null = np.zeros(Y.shape[1])
        for rows, voxels in sets.items():
            if parts[rows] is None:
                continue  # no residuals where the observed rows cannot estimate C: 0
            r, (resid, fitted) = np.array(rows), parts[rows]
            if pattern.dtype.kind == "i":  # subject order[i] to row i: row of subject j
                null[voxels] = _z(X[np.argsort(pattern)[r]], resid, C)
            else:
                null[voxels] = _z(X[r], pattern[r, None] * resid + fitted, C)
        nulls.append(null)
        tail_null = _tail(null, tail)
        count[tested] += tail_null[tested] >= cut[tested]
        count_max[tested] += tail_null[tested].max() >= cut[tested]
    return count / len(patterns), count_max / len(patterns), observed, np.array(nulls)


def _sample(n, n_voxels, seed, shift=0.0):
    """Data with per-subject coverage: dropouts, a smaller field of view, two subjects
    left at voxels 18-20 (not tested with min_subjects=3)."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, n_voxels)) + shift * np.linspace(0, 1.5, n_voxels)
    Y[1, 4:10] = np.nan
    Y[[2, 3], 8:12] = np.nan
    Y[n - 1, 12:] = np.nan
    Y[: n - 2, 18:21] = np.nan
    return Y


def _sign_patterns(n):
    return [np.array(s) for s in itertools.product([1.0, -1.0], repeat=n)]


def _assert_equal_p(result, uncorrected, maximum, voxels):
    np.testing.assert_allclose(10 ** -result.logp_uncorrected[voxels], uncorrected[voxels],
                               rtol=1e-12)
    np.testing.assert_allclose(10 ** -result.logp_max[voxels], maximum[voxels], rtol=1e-12)


@pytest.mark.parametrize("tail", ["positive", "two-sided"])
def test_one_sample_sign_flips_equal_brute_force(tail):
    Y = _sample(8, 24, seed=1, shift=1.0)
    X, C = np.ones((8, 1)), [1.0]
    result = coverage_permutation_test(Y, X, C, n_perm=10_000, n_chunks=3, min_subjects=3,
                                       options=perm.PermutationOptions(tail=tail))
    assert result.n_perm == 256
    p, p_max, observed, _ = brute_force(X, np.atleast_2d(C), Y, _sign_patterns(8), tail, 3)
    tested = np.r_[0:18, 21:24]
    _assert_equal_p(result, p, p_max, tested)
    np.testing.assert_allclose(result.statistic[tested], observed[tested], rtol=1e-9)
    assert (result.logp_uncorrected[18:21] == 0).all()  # two subjects: not tested
    assert result.logp_uncorrected.max() > 1.5


def test_freedman_lane_sign_flips_with_a_covariate_equal_brute_force():
    rng = np.random.default_rng(3)
    age = rng.uniform(-1, 1, 8)
    X = np.column_stack([np.ones(8), age])
    Y = _sample(8, 24, seed=2, shift=0.8) + 2.0 * age[:, None]
    result = coverage_permutation_test(Y, X, [1.0, 0.0], n_perm=1000, min_subjects=4)
    p, p_max, _, _ = brute_force(X, np.array([[1.0, 0.0]]), Y, _sign_patterns(8),
                                 "two-sided", 4)
    _assert_equal_p(result, p, p_max, np.r_[0:18, 21:24])


@pytest.mark.parametrize("design", ["two-sample", "covariate F", "blocks"])
def test_permutations_move_subjects_with_their_coverage(design):
    """Exhaustive permutations: every subject's residuals and missing values move with it;
    the design is refitted on the rows they land on (0 where not estimable)."""
    rng = np.random.default_rng(4)
    n = 6
    group = np.array([1, 0, 1, 0, 1, 0])
    age = rng.uniform(-1, 1, n)
    Y = _sample(n, 24, seed=5) + 1.5 * group[:, None]
    blocks, tail = None, "two-sided"
    if design == "two-sample":
        X, C = np.column_stack([group, 1 - group]).astype(float), np.array([[1.0, -1.0]])
    elif design == "covariate F":
        X = np.column_stack([group, 1 - group, age])
        C, tail = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]), "positive"
    else:
        X, C = np.column_stack([np.ones(n), age]), np.array([[0.0, 1.0]])
        blocks = [0, 0, 0, 1, 1, 1]
    result = coverage_permutation_test(Y, X, C, n_perm=100_000, scheme="permute",
                                       blocks=blocks, n_chunks=2, min_subjects=3,
                                       options=perm.PermutationOptions(tail=tail))
    plan = perm.plan_permutations(n, 100_000, "permute", blocks=blocks)
    assert plan.exhaustive and result.n_perm == plan.n_perm
    orders = perm.row_permutations(plan, 0, plan.n_perm)
    p, p_max, observed, nulls = brute_force(X, C, Y, list(orders), tail, 3)
    tested = np.r_[0:18, 21:24]
    _assert_equal_p(result, p, p_max, tested)
    np.testing.assert_allclose(result.statistic[tested], observed[tested], rtol=1e-9,
                               atol=1e-12)
    if design == "two-sample":  # some patterns leave a group empty at a voxel: statistic 0
        assert (nulls[1:, 8:12] == 0).any()


def test_cluster_sizes_on_z_maps_equal_brute_force():
    mask = np.zeros((5, 4, 3), bool)
    mask[:, :, 1] = True
    mask[1:4, 1:3, 2] = True
    n_vox = int(mask.sum())
    Y = _sample(8, n_vox, seed=7, shift=1.5)
    X, C = np.ones((8, 1)), np.array([[1.0]])
    threshold = cluster_threshold(0.05)
    options = perm.PermutationOptions(tail="two-sided", cluster_threshold=threshold)
    result = coverage_permutation_test(Y, X, C, mask=mask, n_perm=256, options=options,
                                       min_subjects=3)
    plan = perm.plan_permutations(8, 256)
    signs = perm.sign_flip_patterns(plan, 0, 256)  # in the plan's order
    _, _, observed, nulls = brute_force(X, C, Y, list(signs), "two-sided", 3)

    def largest(z):
        volume = np.zeros(mask.shape)
        volume[mask] = z
        sizes = [0]
        for sign in (1, -1):
            labels, k = ndimage.label(sign * volume > threshold)
            sizes += list(np.bincount(labels.ravel())[1:]) if k else []
        return max(sizes)

    np.testing.assert_array_equal(result.null_cluster_size, [largest(z) for z in nulls])
    assert largest(observed) > 3


def test_complete_data_are_todays_test():
    rng = np.random.default_rng(8)
    Y = rng.standard_normal((8, 50)) + 0.5
    X = np.ones((8, 1))
    ours = coverage_permutation_test(Y, X, [1.0], n_perm=500, seed=2)
    today = perm.permutation_test(Y, X, [1.0], n_perm=500, seed=2)
    np.testing.assert_array_equal(ours.logp_max, today.logp_max)
    np.testing.assert_array_equal(ours.statistic, today.statistic)
