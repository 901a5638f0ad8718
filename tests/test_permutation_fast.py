"""The sign-table path of null_chunk (sign flips, rank-1 designs) against the
plain matrix-product path (permuted_t) and the float64 p values."""

import numpy as np
import pytest
from scipy import ndimage

from nipype_secondlevel.numerics import permutation as perm


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
