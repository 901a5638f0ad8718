"""Permutation p values against references written here with plain numpy and scipy.

Exhaustive plans must equal a brute-force enumeration exactly, for every
design: one-sample, paired, two-sample, a covariate (Freedman-Lane), an F
contrast and a blocked repeated-measures design; random plans must agree with
nilearn's ``permuted_ols`` within Monte Carlo error; and neither the chunks nor
the memory budget may change any p value.
"""

import itertools
import warnings
from math import comb, factorial

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from nipype_secondlevel.design.pairs import paired_rows
from nipype_secondlevel.stats import permutation as perm

RTOL = 1e-9  # ties of the references (the package uses 1e-10)


def _tail(values, tail):
    return {"positive": values, "negative": -values, "two-sided": np.abs(values)}[tail]


def _ols_statistic(X, Y, C):
    """t (one contrast row) or F (several) of an OLS fit."""
    return _ols(X, C)(Y)


def _ols(X, C):
    """The function Y -> t or F of contrast rows C for the design X."""
    C = np.atleast_2d(C)
    pinv = np.linalg.pinv(X)
    dof = X.shape[0] - np.linalg.matrix_rank(X)
    V = C @ np.linalg.pinv(X.T @ X) @ C.T

    def statistic(Y):
        beta = pinv @ Y
        sigma2 = ((Y - X @ beta) ** 2).sum(axis=0) / dof
        effect = C @ beta
        if len(C) == 1:
            return effect[0] / np.sqrt(sigma2 * V[0, 0])
        return np.einsum("iv,ij,jv->v", effect, np.linalg.inv(V), effect) / len(C) / sigma2

    return statistic


def _brute_force(X, Y, C, patterns, tail):
    """Uncorrected and max-statistic p of every voxel by refitting every pattern.

    Freedman-Lane: nuisance Z = X (I - Q C'(C Q C')^-1 C), Q = (X'X)^+; each
    pattern permutes (int rows) or flips (float signs) the residuals of Z.
    """
    C = np.atleast_2d(C)
    Q = np.linalg.pinv(X.T @ X)
    Z = X @ (np.eye(X.shape[1]) - Q @ C.T @ np.linalg.inv(C @ Q @ C.T) @ C)
    fitted = Z @ np.linalg.pinv(Z) @ Y
    resid = Y - fitted
    statistic = _ols(X, C)
    observed = _tail(statistic(Y), tail)
    cut = observed - RTOL * np.abs(observed)
    count, count_max = np.zeros(Y.shape[1]), np.zeros(Y.shape[1])
    for pattern in patterns:
        pattern = np.asarray(pattern)
        moved = resid[pattern] if pattern.dtype.kind == "i" else pattern[:, None] * resid
        null = _tail(statistic(moved + fitted), tail)
        count += null >= cut
        count_max += null.max() >= cut
    return count / len(patterns), count_max / len(patterns)


def _sign_patterns(n):
    return [np.array(s) for s in itertools.product([1.0, -1.0], repeat=n)]


def _assert_equal_p(result, expected_uncorrected, expected_max):
    np.testing.assert_allclose(10 ** -result.logp_uncorrected, expected_uncorrected,
                               rtol=1e-12)
    np.testing.assert_allclose(10 ** -result.logp_max, expected_max, rtol=1e-12)


@pytest.mark.parametrize("tail", ["positive", "negative", "two-sided"])
def test_one_sample_sign_flips_equal_brute_force(tail):
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((8, 60)) + np.linspace(-1, 1, 60)
    result = perm.permutation_test(Y, n_perm=10_000, n_chunks=3,
                                   options=perm.PermutationOptions(tail=tail))
    assert result.n_perm == 256
    observed = _tail(stats.ttest_1samp(Y, 0).statistic, tail)
    count, count_max = np.zeros(60), np.zeros(60)
    for signs in _sign_patterns(8):
        null = _tail(stats.ttest_1samp(signs[:, None] * Y, 0).statistic, tail)
        count += null >= observed - RTOL * np.abs(observed)
        count_max += null.max() >= observed - RTOL * np.abs(observed)
    _assert_equal_p(result, count / 256, count_max / 256)
    assert result.logp_uncorrected.max() > 1.5  # some voxels significant


def test_paired_sign_flips_of_differences_equal_brute_force():
    rng = np.random.default_rng(1)
    n = 6
    first, second = rng.standard_normal((2, n, 40))
    first += np.linspace(0, 1.5, 40)
    # the paired design: condition column then subject indicators, rows shuffled
    order = rng.permutation(2 * n)
    design = pd.DataFrame(np.column_stack([np.r_[np.ones(n), np.zeros(n)],
                                           np.vstack([np.eye(n), np.eye(n)])])[order],
                          columns=["a_vs_b", *[f"s{i}" for i in range(n)]])
    Y = np.vstack([first, second])[order]
    rows = paired_rows(design, [1.0] + [0.0] * n)
    columns = perm.VoxelColumns.from_array(Y).differences(*rows)
    result = perm.permutation_test(columns, n_perm=1000)
    assert result.n_perm == 64
    # reference: swap the two maps of every subject subset, paired t test
    observed = np.abs(stats.ttest_rel(first, second).statistic)
    count, count_max = np.zeros(40), np.zeros(40)
    for swap in itertools.product([False, True], repeat=n):
        swap = np.array(swap)[:, None]
        a, b = np.where(swap, second, first), np.where(swap, first, second)
        null = np.abs(stats.ttest_rel(a, b).statistic)
        count += null >= observed - RTOL * observed
        count_max += null.max() >= observed - RTOL * observed
    _assert_equal_p(result, count / 64, count_max / 64)
    # a negative weight tests the reverse difference: the same two-sided p
    reverse = perm.VoxelColumns.from_array(Y).differences(*paired_rows(design,
                                                                      [-1.0] + [0.0] * n))
    np.testing.assert_allclose(perm.permutation_test(reverse, n_perm=1000).statistic,
                               -result.statistic, rtol=1e-12)


def test_two_sample_permutations_equal_brute_force():
    rng = np.random.default_rng(4)
    group = np.array([1, 1, 1, 0, 0, 0, 0])
    X = np.column_stack([group, 1 - group]).astype(float)
    Y = rng.standard_normal((7, 15)) + 2 * group[:, None]
    model = perm.linear_model(X, [1.0, -1.0])
    assert perm.choose_scheme(model) == "permute"
    result = perm.permutation_test(Y, X, [1.0, -1.0], n_perm=10_000, scheme="permute",
                                   n_chunks=2, options=perm.PermutationOptions("positive"))
    assert result.n_perm == comb(7, 3)  # the distinct relabellings; below, all 7! of them
    # reference: the pooled-variance t of every relabelling of the groups
    labels = group[np.array(list(itertools.permutations(range(7))))].astype(float)
    n1, n0 = labels.sum(axis=1, keepdims=True), (1 - labels).sum(axis=1, keepdims=True)
    mean1, mean0 = labels @ Y / n1, (1 - labels) @ Y / n0
    pooled = (labels @ Y**2 - n1 * mean1**2 + (1 - labels) @ Y**2 - n0 * mean0**2) / 5
    null = (mean1 - mean0) / np.sqrt(pooled * (1 / n1 + 1 / n0))
    observed = stats.ttest_ind(Y[group == 1], Y[group == 0]).statistic
    at_least = null >= observed - RTOL * np.abs(observed)
    _assert_equal_p(result, at_least.mean(axis=0),
                    (null.max(axis=1)[:, None] >= observed - RTOL * np.abs(observed)).mean(0))
    assert result.logp_uncorrected.max() > 1.2


def test_covariate_freedman_lane_equals_brute_force():
    rng = np.random.default_rng(3)
    n = 7
    age = rng.standard_normal(n)
    age -= age.mean()
    X = np.column_stack([np.ones(n), age])
    Y = rng.standard_normal((n, 25)) + np.outer(age, np.linspace(0, 2, 25)) + 0.6
    for contrast, scheme, patterns in (
            ([0.0, 1.0], "permute", [np.array(o) for o in itertools.permutations(range(n))]),
            ([1.0, 0.0], "sign-flip", _sign_patterns(n))):
        assert perm.choose_scheme(perm.linear_model(X, contrast)) == scheme
        result = perm.permutation_test(Y, X, contrast, n_perm=10_000, scheme=scheme,
                                       n_chunks=2)
        assert result.n_perm == len(patterns)
        _assert_equal_p(result, *_brute_force(X, Y, contrast, patterns, "two-sided"))
        assert result.logp_uncorrected.max() > 1.0


def test_f_contrast_equals_brute_force():
    rng = np.random.default_rng(5)
    group = np.array([0, 0, 1, 1, 1, 2, 2])
    X = np.eye(3)[group]
    Y = rng.standard_normal((7, 30)) + np.outer(group, np.linspace(0, 1.5, 30))
    C = [[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]]
    with pytest.raises(ValueError, match="positive"):
        perm.permutation_test(Y, X, C, n_perm=10, scheme="permute")
    result = perm.permutation_test(Y, X, C, n_perm=10_000, scheme="permute", n_chunks=3,
                                   options=perm.PermutationOptions("positive"))
    assert result.n_perm == factorial(7) // (factorial(2) * factorial(3) * factorial(2))
    np.testing.assert_allclose(result.statistic, _ols_statistic(X, Y, C), rtol=1e-10)
    patterns = [np.array(o) for o in itertools.permutations(range(7))]
    _assert_equal_p(result, *_brute_force(X, Y, C, patterns, "positive"))
    assert result.logp_uncorrected.max() > 1.5


def test_blocked_repeated_measures_equals_brute_force():
    """4 subjects x 3 conditions, permutations within subject only (6^4 patterns)."""
    rng = np.random.default_rng(6)
    n_subjects, n_conditions = 4, 3
    subject = np.repeat(np.arange(n_subjects), n_conditions)
    condition = np.tile(np.arange(n_conditions), n_subjects)
    X = np.column_stack([np.eye(n_conditions)[condition], np.eye(n_subjects)[subject][:, 1:]])
    Y = (rng.standard_normal((12, 20)) + np.outer(condition, np.linspace(0, 1, 20))
         + 3 * subject[:, None])
    labels = [f"sub-{s}" for s in subject]
    patterns = [np.concatenate([s * n_conditions + np.array(p) for s, p in enumerate(local)])
                for local in itertools.product(
                    itertools.permutations(range(n_conditions)), repeat=n_subjects)]
    pad = [0.0] * (n_subjects - 1)
    for C, tail in (([[1.0, -1.0, 0.0, *pad], [0.0, 1.0, -1.0, *pad]], "positive"),
                    ([[1.0, 0.0, -1.0, *pad]], "two-sided")):
        assert perm.choose_scheme(perm.linear_model(X, C), "auto", labels) == "permute"
        result = perm.permutation_test(Y, X, C, n_perm=2000, scheme="permute", blocks=labels,
                                       n_chunks=2, options=perm.PermutationOptions(tail))
        assert result.n_perm == factorial(n_conditions) ** n_subjects
        _assert_equal_p(result, *_brute_force(X, Y, C, patterns, tail))
    assert result.logp_uncorrected.max() > 1.0


def test_exhaustive_plans_enumerate_each_distinct_rearrangement_once():
    """Two groups in two exchangeability blocks: the plan's patterns rearrange the
    design's rows in every distinct way within blocks, each once, the identity first;
    the p values equal those of all prod n_b! within-block permutations."""
    rng = np.random.default_rng(11)
    group = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0])
    block = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    X = np.column_stack([group, 1 - group, block]).astype(float)
    Y = rng.standard_normal((9, 12)) + 1.5 * group[:, None]
    labels = [f"b{b}" for b in block]
    plan = perm.plan_permutations(9, 10**6, "permute", blocks=labels, design=X)
    assert plan.exhaustive and plan.n_perm == comb(5, 2) * comb(4, 2)
    orders = perm.row_permutations(plan, 0, plan.n_perm)
    np.testing.assert_array_equal(orders[0], np.arange(9))
    rearranged = {X[np.argsort(order)].tobytes() for order in orders}
    within = [np.concatenate([np.flatnonzero(block == 0)[list(a)],
                              np.flatnonzero(block == 1)[list(b)]])
              for a in itertools.permutations(range(5)) for b in itertools.permutations(range(4))]
    assert rearranged == {X[np.argsort(order)].tobytes() for order in within}
    assert len(rearranged) == plan.n_perm
    C = [[1.0, -1.0, 0.0]]
    result = perm.permutation_test(Y, X, C, n_perm=10**6, scheme="permute", blocks=labels,
                                   n_chunks=3, options=perm.PermutationOptions("two-sided"))
    assert result.n_perm == 60
    _assert_equal_p(result, *_brute_force(X, Y, C, within, "two-sided"))


def test_permutations_cannot_test_an_intercept():
    X = np.column_stack([np.ones(8), np.arange(8.0) - 3.5])
    model = perm.linear_model(X, [1.0, 0.0])
    assert perm.choose_scheme(model) == "sign-flip"
    with pytest.raises(ValueError, match="constant"):
        perm.choose_scheme(model, "permute")
    # an intercept per block: constant within every block
    X = np.column_stack([np.r_[np.ones(4), np.zeros(4)], np.r_[np.zeros(4), np.ones(4)]])
    blocks = ["a"] * 4 + ["b"] * 4
    with pytest.raises(ValueError, match="within every exchangeability block"):
        perm.choose_scheme(perm.linear_model(X, [1.0, -1.0]), "permute", blocks)
    assert perm.choose_scheme(perm.linear_model(X, [1.0, -1.0]), "permute") == "permute"


def test_cluster_size_and_mass_fwer_equal_brute_force():
    rng = np.random.default_rng(10)
    grid = np.indices((10, 10, 10)) - 4.5
    mask = (grid**2).sum(0) <= 4.5**2
    Y = np.stack([ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.2)[mask]
                  for _ in range(7)])
    Y = Y / Y.std() + 1.5
    options = perm.PermutationOptions(cluster_threshold=2.0)
    result = perm.permutation_test(Y, mask=mask, n_perm=1000, n_chunks=2, options=options)
    assert result.n_perm == 128

    def clusters(t):  # reference: label each sign's suprathreshold voxels (6-connectivity)
        size, mass = np.zeros(t.size), np.zeros(t.size)
        for sign in (1, -1):
            volume = np.zeros(mask.shape)
            volume[mask] = sign * t
            labels, n = ndimage.label(volume > 2.0)
            labels = labels[mask]
            for k in range(1, n + 1):
                inside = labels == k
                size[inside] = inside.sum()
                mass[inside] = (sign * t[inside] - 2.0).sum()
        return size, mass

    nulls = np.array([[m.max() for m in clusters(
        stats.ttest_1samp(signs[:, None] * Y, 0).statistic)] for signs in _sign_patterns(7)])
    for observed, null, logp in zip(clusters(stats.ttest_1samp(Y, 0).statistic), nulls.T,
                                    (result.logp_cluster_size, result.logp_cluster_mass)):
        expected = np.ones(observed.size)
        inside = observed > 0
        expected[inside] = [np.mean(null >= o - RTOL * o) for o in observed[inside]]
        np.testing.assert_allclose(10 ** -logp[inside], expected[inside], rtol=1e-12)
        assert np.all(logp[~inside] == 0)
    assert result.logp_cluster_size.max() > 1.0


@pytest.mark.parametrize("design", ["two-sample", "covariate"])
def test_random_permutations_agree_with_nilearn(design):
    from nilearn.mass_univariate import permuted_ols

    rng = np.random.default_rng(11)
    n, n_vox, n_perm = 20, 300, 3000
    group = np.r_[np.ones(10), np.zeros(10)]
    age = rng.standard_normal(n)
    Y = rng.standard_normal((n, n_vox)) + np.outer(group, np.linspace(0, 2.5, n_vox))
    if design == "two-sample":
        X, confounds = np.column_stack([group, 1 - group]), None
        contrast = [1.0, -1.0]
    else:
        Y += 2 * age[:, None]
        X, confounds = np.column_stack([group, 1 - group, age]), age[:, None]
        contrast = [1.0, -1.0, 0.0]
    ours = perm.permutation_test(Y, X, contrast, n_perm=n_perm, seed=1, scheme="permute")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = permuted_ols(group[:, None], Y, confounding_vars=confounds,
                              model_intercept=True, n_perm=n_perm, two_sided_test=True,
                              random_state=0, n_jobs=1, verbose=0)
    np.testing.assert_allclose(ours.statistic, theirs["t"][0], rtol=1e-8)
    # independent Monte Carlo estimates of the same permutation p: within 5 SE
    p_ours, p_theirs = 10 ** -ours.logp_max, 10 ** -theirs["logp_max_t"][0]
    se = np.sqrt(2 * p_ours * (1 - p_ours) / n_perm) + 1 / n_perm
    assert np.all(np.abs(p_ours - p_theirs) <= 5 * se)
    assert (p_ours < 0.05).sum() > 20  # the comparison is not vacuous
    assert stats.ks_2samp(ours.null_max, theirs["h0_max_t"][0]).pvalue > 1e-3


def _voxel_chunking_cases():
    rng = np.random.default_rng(12)
    n_vox = 5000  # two voxel chunks of 4096 columns with a tiny memory budget
    effect = np.linspace(0, 1.2, n_vox)
    age, other = rng.standard_normal((2, 10))
    X = np.column_stack([np.ones(10), age, other])
    Y = rng.standard_normal((10, n_vox))
    return [(Y + effect, None, None, "sign-flip"),
            (Y + 2 * np.outer(age, effect), X[:, :2], [0.0, 1.0], "permute"),
            (Y + 2 * np.outer(other, effect), X, [[0, 1.0, 0], [0, 0, 1.0]], "sign-flip")]


@pytest.mark.parametrize("case", range(3), ids=["sign-tables", "permutations", "F"])
def test_chunks_and_memory_budget_do_not_change_p_values(case):
    Y, X, contrast, scheme = _voxel_chunking_cases()[case]
    tail = "positive" if np.ndim(contrast) == 2 else "two-sided"
    options = perm.PermutationOptions(tail=tail)
    results = [perm.permutation_test(Y, X, contrast, n_perm=300, seed=3, scheme=scheme,
                                     n_chunks=k, options=options, mem_gb=mem)
               for k, mem in ((1, 1.0), (3, 1.0), (4, 1e-6))]
    for other in results[1:]:
        np.testing.assert_array_equal(other.logp_uncorrected, results[0].logp_uncorrected)
        np.testing.assert_array_equal(other.logp_max, results[0].logp_max)
        np.testing.assert_allclose(other.null_max, results[0].null_max, rtol=1e-12)
    assert results[0].logp_max.max() > 1.0


def test_chunks_and_memory_budget_do_not_change_cluster_and_tfce_p_values():
    rng = np.random.default_rng(5)
    mask = np.zeros((22, 20, 14), dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True  # 4320 voxels: two voxel chunks with a tiny budget
    Y = np.stack([ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.2)[mask]
                  for _ in range(12)])
    Y = Y / Y.std() + 0.4
    options = perm.PermutationOptions(cluster_threshold=2.5, tfce=True)
    results = [perm.permutation_test(Y, mask=mask, n_perm=40, seed=11, n_chunks=k,
                                     options=options, mem_gb=mem)
               for k, mem in ((1, 1.0), (3, 1e-6))]
    for name in ("logp_uncorrected", "logp_max", "logp_cluster_size", "logp_cluster_mass",
                 "logp_tfce", "null_cluster_size"):
        np.testing.assert_array_equal(getattr(results[1], name), getattr(results[0], name),
                                      err_msg=name)
    assert results[0].logp_tfce.max() > 1.0  # the effect is found
