"""The fast paths of permutation inference against plain numpy, and the patterns.

The numba kernels must equal their plain-numpy references bit for bit (sign
tables summed at every voxel; statistics from projections); the chunk
computations must equal
permuted statistics computed here with numpy; the patterns must be the
enumerations of itertools and stay within exchangeability blocks.
"""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.stats.permutation import plans, sign_tables
from nipype_secondlevel.stats.permutation.model import pattern_statistics
from nipype_secondlevel.stats.permutation.projections import projection_pass


def _weighted(n, n_vox, rng):
    """Smooth normalised data times a contrast direction, a few all-zero voxels."""
    maps = ndimage.gaussian_filter1d(rng.standard_normal((n, n_vox)), 2.0, axis=1) + 0.3
    maps[:, :5] = 0.0
    norm = np.linalg.norm(maps, axis=0)
    return maps / np.where(norm > 0, norm, 1) / np.sqrt(n)


def _numpy_sums(weighted, signs, groups):
    """Every pattern's score at every voxel: sign tables built by doubling, in numpy,
    one row per group, summed table_0 + ((table_1 + table_2) + ...)."""
    parts = []
    for g in groups:
        table = weighted[g[:1]].copy()
        table = np.vstack([table, -table])
        for j in g[1:]:
            table = np.vstack([table + weighted[j], table - weighted[j]])
        # row of a pattern: bit k set iff subject g[k] is flipped
        codes = (signs[:, g] < 0) @ (1 << np.arange(g.size))
        parts.append(table[codes])
    rest = None
    for part in parts[1:]:
        rest = part if rest is None else rest + part
    return parts[0] if rest is None else parts[0] + rest


@pytest.mark.parametrize("n", [5, 8, 12, 16, 19, 27])
@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_sign_table_kernel_equals_numpy_bit_for_bit(n, tail):
    rng = np.random.default_rng(n)
    weighted = _weighted(n, 700, rng)  # two tiles and a part
    signs = 1.0 - 2.0 * rng.integers(0, 2, (300, n))
    signs[0] = 1.0
    groups = sign_tables.subject_groups(n)
    codes = sign_tables.pattern_codes(signs, groups)
    scores = {"two-sided": np.abs, "positive": lambda s: s, "negative": np.negative}[tail](
        _numpy_sums(weighted, signs, groups))
    threshold = scores[0] - 1e-10 * np.abs(scores[0])
    maxima, counts = sign_tables.maxima_and_exceedances(weighted, codes, groups, tail,
                                                        threshold)
    np.testing.assert_array_equal(maxima, scores.max(axis=1))
    np.testing.assert_array_equal(counts, (scores >= threshold).sum(axis=0))
    alone, none = sign_tables.maxima_and_exceedances(weighted, codes, groups, tail)
    assert none is None
    np.testing.assert_array_equal(alone, maxima)
    # the package's own numpy reference gives the same bits
    ref_max, ref_counts = sign_tables.reference_pass(weighted, codes, groups, tail, threshold)
    np.testing.assert_array_equal(ref_max, maxima)
    np.testing.assert_array_equal(ref_counts, counts)
    np.testing.assert_array_equal(
        sign_tables.tail_score(sign_tables.identity_scores(weighted, groups), tail), scores[0])


@pytest.mark.parametrize("scheme, contrast", [("sign-flip", [[0.0, 1.0, 0.0]]),
                                             ("permute", [[0.0, 1.0, 0.0]]),
                                             ("permute", [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])])
@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_projection_kernel_equals_numpy_bit_for_bit(scheme, contrast, tail):
    rng = np.random.default_rng(7)
    X = np.column_stack([np.ones(11), rng.standard_normal((11, 2))])
    model = perm.linear_model(X, contrast)
    Y = rng.standard_normal((11, 333))
    Y[:, :4] = 1.0  # fitted exactly by the intercept: no residual, statistic 0
    data = perm.prepare_data(model, Y)
    plan = perm.plan_permutations(11, 200, scheme, seed=1)
    weights = plans.pattern_weights(plan, perm.plan_patterns(plan, 0, 200), model.basis)
    expected = pattern_statistics(model, weights, data.residuals, data.scale)
    stat = {"two-sided": np.abs, "positive": lambda s: s, "negative": np.negative}[tail](
        expected)
    threshold = rng.standard_normal(333)
    maxima, counts, values = projection_pass(model, weights, data.residuals, data.scale,
                                             tail, threshold, store=True)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(maxima, stat.max(axis=1))
    np.testing.assert_array_equal(counts, (stat >= threshold).sum(axis=0))
    assert np.all(values[:, :4] == 0)


def _numpy_t(Y, signs):
    """One-sample t of every sign pattern (plain numpy)."""
    flipped = signs[:, :, None] * Y[None]
    with np.errstate(invalid="ignore"):  # constant voxels: 0 / 0, then t = 0
        return flipped.mean(axis=1) / (flipped.std(axis=1, ddof=1) / np.sqrt(Y.shape[0]))


@pytest.mark.parametrize("n, n_perm", [(5, 1000), (12, 700), (16, 2**16)])
def test_sign_table_chunks_equal_permuted_t(n, n_perm):
    rng = np.random.default_rng(n + n_perm)
    Y = rng.standard_normal((n, 900)) + 0.3
    Y[:, :3] = 0.0  # constant voxels: t = 0
    model = perm.one_sample_model(n)
    plan = perm.plan_permutations(n, n_perm, seed=3)
    assert perm.uses_sign_tables(model, plan)
    a, b = plan.n_perm // 3 + 1, min(plan.n_perm - 5, plan.n_perm // 3 + 3000)
    chunk = perm.null_chunk(model, Y, plan, a, b, options=perm.PermutationOptions())
    t = np.nan_to_num(_numpy_t(Y, perm.sign_flip_patterns(plan, a, b)))
    observed = np.abs(np.nan_to_num(_numpy_t(Y, np.ones((1, n)))[0]))
    np.testing.assert_allclose(chunk.max_statistic, np.abs(t).max(axis=1), rtol=1e-11)
    np.testing.assert_array_equal(
        chunk.exceedances, (np.abs(t) >= observed - 1e-10 * observed).sum(axis=0))
    empty = perm.null_chunk(model, Y, plan, 5, 5)
    assert empty.max_statistic.shape == (0,)


def test_sign_patterns_exhaustive_and_random():
    plan = perm.plan_permutations(6, n_perm=1000)
    assert plan.exhaustive and plan.n_perm == 64
    signs = perm.sign_flip_patterns(plan, 0, 64)
    assert np.all(signs[0] == 1) and len({tuple(row) for row in signs}) == 64
    plan = perm.plan_permutations(12, n_perm=3000, seed=7)
    whole = perm.sign_flip_patterns(plan, 0, 3000)
    assert not plan.exhaustive and np.all(whole[0] == 1)
    for n_chunks in (3, 7):
        parts = [perm.sign_flip_patterns(plan, a, b)
                 for a, b in perm.chunk_bounds(3000, n_chunks)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    other = perm.sign_flip_patterns(perm.plan_permutations(12, 3000, seed=8), 0, 3000)
    assert not np.array_equal(other, whole)
    assert np.all(np.abs((whole[1:] < 0).mean(0) - 0.5) < 0.05)  # fair coins
    # sign flips ignore blocks
    blocked = perm.plan_permutations(12, 3000, seed=7, blocks=["a", "b"] * 6)
    assert blocked.blocks is None
    np.testing.assert_array_equal(perm.sign_flip_patterns(blocked, 0, 3000), whole)


def test_row_permutations_exhaustive_and_random():
    plan = perm.plan_permutations(5, n_perm=500, scheme="permute")
    assert plan.exhaustive and plan.n_perm == 120
    np.testing.assert_array_equal(perm.row_permutations(plan, 0, 120),
                                  np.array(list(itertools.permutations(range(5)))))
    plan = perm.plan_permutations(9, n_perm=2500, scheme="permute", seed=3)
    whole = perm.row_permutations(plan, 0, 2500)
    parts = [perm.row_permutations(plan, a, b) for a, b in perm.chunk_bounds(2500, 4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(whole[0], np.arange(9))
    assert np.all(np.sort(whole, axis=1) == np.arange(9))


def test_row_permutations_within_blocks():
    labels = ["s1", "s2", "s1", "s3", "s2", "s1", "s3"]  # blocks of 3, 2 and 2 rows
    plan = perm.plan_permutations(7, n_perm=100, scheme="permute", blocks=labels)
    assert plan.exhaustive and plan.n_perm == 6 * 2 * 2
    orders = perm.row_permutations(plan, 0, plan.n_perm)
    rows = {b: [i for i, label in enumerate(labels) if label == b] for b in set(labels)}
    expected = set()
    for local in itertools.product(*[itertools.permutations(r) for r in rows.values()]):
        order = np.arange(7)
        for r, p in zip(rows.values(), local):
            order[r] = p
        expected.add(tuple(order))
    assert {tuple(o) for o in orders} == expected
    np.testing.assert_array_equal(orders[0], np.arange(7))
    # random within blocks, independent of the chunks
    labels = labels * 3
    plan = perm.plan_permutations(21, n_perm=1500, scheme="permute", seed=2, blocks=labels)
    assert not plan.exhaustive
    whole = perm.row_permutations(plan, 0, 1500)
    parts = [perm.row_permutations(plan, a, b) for a, b in perm.chunk_bounds(1500, 3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    codes = np.unique(labels, return_inverse=True)[1]
    assert np.all(codes[whole] == codes)  # every row stays in its block
    assert len({tuple(o) for o in whole}) > 1400
