"""The sign-table path of null_chunk (sign flips, rank-1 designs) against the
plain matrix-product path (permuted_t) and the float64 p values."""

import numpy as np
import pytest
from scipy import ndimage

from nipype_secondlevel.stats import permutation as perm


def _reference_chunk(model, data, plan, start, stop, tail):
    """Max of the tail statistic (t units) and counts from permuted_t."""
    t = perm.permuted_t(model, data, plan, start, stop)
    stat = perm.tail_statistic(t, tail)
    observed = perm.tail_statistic(perm.observed_t(model, data), tail)
    counts = (stat >= observed - perm.TIE_RTOL * np.abs(observed)).sum(axis=0)
    return stat.max(axis=1), counts


def _data(n, rng, shape=(9, 10, 8)):
    mask = np.zeros(shape, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    maps = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)[mask]
                     for _ in range(n)]) + 0.3
    maps[:, :5] = 0.0  # constant voxels: t = 0
    return maps, mask


@pytest.mark.parametrize("n, n_perm", [(5, 1000), (12, 700), (12, 5000), (19, 600)])
@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_sign_tables_equal_matrix_products(n, n_perm, tail):
    rng = np.random.default_rng(n + n_perm)
    Y, mask = _data(n, rng)
    model = perm.one_sample_model(n)
    data = perm.prepare_data(model, Y)
    plan = perm.plan_permutations(n, n_perm, seed=3)
    options = perm.PermutationOptions(tail=tail)
    for start, stop in [(0, plan.n_perm), (plan.n_perm // 3 + 1, plan.n_perm - 5)]:
        for m in (mask, None):
            chunk = perm.null_chunk(model, data, plan, start, stop, m, options)
            ref_max, ref_counts = _reference_chunk(model, data, plan, start, stop, tail)
            np.testing.assert_allclose(chunk.max_t, ref_max, rtol=1e-11, atol=1e-12)
            np.testing.assert_array_equal(chunk.exceedances, ref_counts)


def test_p_values_equal_float64_path_and_do_not_depend_on_chunks():
    rng = np.random.default_rng(4)
    Y, mask = _data(16, rng, shape=(12, 12, 10))
    for n_perm in (2**16, 2000):  # exhaustive and random
        results = [perm.permutation_test(Y, mask=mask, n_perm=n_perm, seed=5, n_chunks=k)
                   for k in (1, 3)]
        model = perm.one_sample_model(16)
        data = perm.prepare_data(model, Y)
        plan = perm.plan_permutations(16, n_perm, seed=5)
        ref_max, ref_counts = _reference_chunk(model, data, plan, 0, plan.n_perm, "two-sided")
        stat = np.abs(results[0].t)
        p_max = perm.fwer_pvalues(stat, ref_max)
        for result in results:
            np.testing.assert_array_equal(result.logp_max_t, -np.log10(p_max) + 0.0)
            np.testing.assert_array_equal(result.logp_uncorrected,
                                          -np.log10(ref_counts / plan.n_perm) + 0.0)


def test_uncorrected_can_be_skipped():
    rng = np.random.default_rng(5)
    Y, mask = _data(10, rng)
    options = perm.PermutationOptions(uncorrected=False)
    result = perm.permutation_test(Y, mask=mask, n_perm=200, options=options)
    assert result.logp_uncorrected is None
    full = perm.permutation_test(Y, mask=mask, n_perm=200)
    np.testing.assert_array_equal(result.logp_max_t, full.logp_max_t)


def _table_max_t(model, data, plan, start, stop, tail):
    """Max-T of the float64 sign tables summed at every voxel (no pruning)."""
    signs = perm.sign_flip_patterns(plan, start, stop)
    groups = perm._subject_groups(plan.n_subjects)
    codes = perm._pattern_codes(signs, groups)
    weighted = data.residuals * model.basis[:, 0][:, None]
    tables = [perm.sign_table(weighted[g]) for g in groups]
    sums = perm._apply_tail(perm._table_sum(tables, codes), tail)
    return perm._max_score_to_t(model, sums.max(axis=1), tail)


@pytest.mark.parametrize("n, n_perm", [(5, 10_000), (8, 300), (11, 10_000), (13, 900),
                                       (16, 2000), (19, 700)])
@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_pruned_max_equals_unpruned_exactly(n, n_perm, tail):
    """Branch and bound gives the same bits as the float64 sign tables summed at
    every voxel, for exhaustive (n = 5, 8, 11) and random plans, any tail."""
    rng = np.random.default_rng(100 + n)
    Y, mask = _data(n, rng, shape=(12, 13, 11))
    model = perm.one_sample_model(n)
    data = perm.prepare_data(model, Y)
    plan = perm.plan_permutations(n, n_perm, seed=7)
    assert plan.exhaustive == (2**n <= n_perm)
    options = perm.PermutationOptions(tail=tail, uncorrected=False)
    for start, stop in [(0, plan.n_perm), (plan.n_perm // 3 + 1, plan.n_perm - 5)]:
        full = _table_max_t(model, data, plan, start, stop, tail)
        for m in (mask, None):
            pruned = perm.null_chunk(model, data, plan, start, stop, m, options)
            np.testing.assert_array_equal(pruned.max_t, full)
            assert np.all(np.isfinite(pruned.max_t))
            ref_max, _ = _reference_chunk(model, data, plan, start, stop, tail)
            np.testing.assert_allclose(pruned.max_t, ref_max, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("fine, ratio, seeds", [(16, 8, 1), (8, 3, 2), (4, 16, 1000),
                                                (1, 1, 1)])
def test_pruned_max_does_not_depend_on_search_parameters(monkeypatch, fine, ratio, seeds):
    rng = np.random.default_rng(9)
    Y, mask = _data(16, rng, shape=(14, 12, 11))
    model = perm.one_sample_model(16)
    data = perm.prepare_data(model, Y)
    plan = perm.plan_permutations(16, 1500, seed=2)
    for tail in ("two-sided", "positive", "negative"):
        options = perm.PermutationOptions(tail=tail, uncorrected=False)
        full = _table_max_t(model, data, plan, 0, plan.n_perm, tail)
        with monkeypatch.context() as patch:
            patch.setattr(perm, "FINE_BLOCK", fine)
            patch.setattr(perm, "COARSE_RATIO", ratio)
            patch.setattr(perm, "SEED_BLOCKS", seeds)
            pruned = perm.null_chunk(model, data, plan, 0, plan.n_perm, mask, options)
        np.testing.assert_array_equal(pruned.max_t, full)


def test_pruned_max_with_counts_and_empty_range():
    rng = np.random.default_rng(11)
    Y, mask = _data(16, rng)
    model = perm.one_sample_model(16)
    data = perm.prepare_data(model, Y)
    plan = perm.plan_permutations(16, 2**16)
    options = perm.PermutationOptions()
    a, b = 1000, 9000
    chunk = perm.null_chunk(model, data, plan, a, b, mask, options)
    np.testing.assert_array_equal(chunk.max_t,
                                  _table_max_t(model, data, plan, a, b, "two-sided"))
    _, ref_counts = _reference_chunk(model, data, plan, a, b, "two-sided")
    np.testing.assert_array_equal(chunk.exceedances, ref_counts)
    empty = perm.null_chunk(model, data, plan, 5, 5, mask, options)
    assert empty.max_t.shape == (0,)
