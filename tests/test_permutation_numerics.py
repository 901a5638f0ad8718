"""Tests of permutation inference, clusters and TFCE (numerics layer).

Every result is compared with an independent reference: brute-force
enumeration with scipy, scipy.ndimage.label, glm.fit_ols, or nilearn.
"""

import itertools
import warnings

import numpy as np
import pytest
from scipy import ndimage, stats

from nipype_secondlevel.stats import glm, spatial
from nipype_secondlevel.stats import permutation as perm


def _sphere_mask(shape=(14, 15, 13), radius=6.0):
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    return ((grid - centre) ** 2).sum(0) <= radius**2


def _smooth_maps(rng, n, mask, sigma=1.2, effect=0.0):
    maps = np.stack([
        ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma)[mask]
        for _ in range(n)
    ])
    return maps / maps.std() + effect


def _count_at_least(null, observed, rtol=perm.TIE_RTOL):
    return null >= observed - rtol * np.abs(observed)


# ---------------------------------------------------------------- patterns


def test_sign_patterns_exhaustive_are_all_distinct_and_identity_first():
    plan = perm.plan_permutations(6, n_perm=1000)
    assert plan.exhaustive and plan.n_perm == 64
    signs = perm.sign_flip_patterns(plan, 0, 64)
    assert np.all(signs[0] == 1)
    assert len({tuple(row) for row in signs}) == 64


def test_random_patterns_do_not_depend_on_chunks():
    plan = perm.plan_permutations(12, n_perm=3000, seed=7)
    assert not plan.exhaustive
    whole = perm.sign_flip_patterns(plan, 0, 3000)
    assert np.all(whole[0] == 1)
    for n_chunks in (3, 7, 11):
        parts = [perm.sign_flip_patterns(plan, a, b)
                 for a, b in perm.chunk_bounds(3000, n_chunks)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    other = perm.sign_flip_patterns(perm.plan_permutations(12, 3000, seed=8),
                                    0, 3000)
    assert not np.array_equal(other, whole)
    # fair coin flips: each subject flipped about half of the time
    assert np.all(np.abs((whole[1:] < 0).mean(0) - 0.5) < 0.05)


def test_row_permutations_exhaustive_and_chunked():
    plan = perm.plan_permutations(5, n_perm=500, scheme="permute")
    assert plan.exhaustive and plan.n_perm == 120
    orders = perm.row_permutations(plan, 0, 120)
    expected = np.array(list(itertools.permutations(range(5))))
    np.testing.assert_array_equal(orders, expected)
    plan = perm.plan_permutations(9, n_perm=2500, scheme="permute", seed=3)
    whole = perm.row_permutations(plan, 0, 2500)
    parts = [perm.row_permutations(plan, a, b)
             for a, b in perm.chunk_bounds(2500, 4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(whole[0], np.arange(9))
    assert np.all(np.sort(whole, axis=1) == np.arange(9))


# ---------------------------------------------------------------- t values


@pytest.mark.parametrize("design", ["one-sample", "covariate", "intercept"])
def test_observed_t_equals_glm(design):
    rng = np.random.default_rng(0)
    n = 11
    Y = rng.standard_normal((n, 40)) + 0.3
    if design == "one-sample":
        X, c = np.ones((n, 1)), [1.0]
    else:
        X = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
        c = [0.0, 1.0, 0.0] if design == "covariate" else [1.0, 0.0, 0.0]
    model = perm.linear_model(X, c)
    t = perm.observed_t(model, perm.prepare_data(model, Y))
    fit = glm.fit_ols(X, Y)
    _, _, expected = glm.t_contrast(X, fit.beta, fit.residual_variance, c)
    np.testing.assert_allclose(t, expected, rtol=1e-10, atol=1e-12)


def test_paired_design_is_one_sample_on_differences():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 9, 30))
    d = perm.paired_differences(a, b)
    model = perm.one_sample_model(9)
    t = perm.observed_t(model, perm.prepare_data(model, d))
    np.testing.assert_allclose(t, stats.ttest_rel(a, b).statistic, rtol=1e-10)


# ------------------------------------------------- exact enumeration (N = 8)


@pytest.mark.parametrize("tail", ["positive", "negative", "two-sided"])
def test_uncorrected_and_max_t_equal_brute_force_enumeration(tail):
    rng = np.random.default_rng(2)
    n, n_vox = 8, 60
    Y = rng.standard_normal((n, n_vox)) + np.linspace(-1, 1, n_vox)
    result = perm.permutation_test(
        Y, n_perm=10_000, n_chunks=3,
        options=perm.PermutationOptions(tail=tail),
    )
    assert result.n_perm == 256
    # independent reference: scipy t for every one of the 2^8 sign patterns
    def tail_stat(t):
        return {"positive": t, "negative": -t, "two-sided": np.abs(t)}[tail]
    observed = tail_stat(stats.ttest_1samp(Y, 0).statistic)
    count = np.zeros(n_vox)
    max_count = np.zeros(n_vox)
    for signs in itertools.product([1.0, -1.0], repeat=n):
        null = tail_stat(stats.ttest_1samp(np.array(signs)[:, None] * Y, 0)
                         .statistic)
        count += _count_at_least(null, observed, rtol=1e-9)
        max_count += _count_at_least(null.max(), observed, rtol=1e-9)
    np.testing.assert_allclose(10 ** -result.logp_uncorrected, count / 256,
                               rtol=1e-12)
    np.testing.assert_allclose(10 ** -result.logp_max_t, max_count / 256,
                               rtol=1e-12)
    assert result.logp_uncorrected.max() > 1.5  # some voxels significant


def test_freedman_lane_equals_brute_force_refit():
    rng = np.random.default_rng(3)
    n, n_vox = 7, 25
    age = rng.standard_normal(n)
    X = np.column_stack([np.ones(n), age])
    Y = rng.standard_normal((n, n_vox)) + 0.8 * age[:, None] + 0.5
    c = [1.0, 0.0]  # group mean, with age as nuisance
    result = perm.permutation_test(Y, X, c, n_perm=1000, n_chunks=2)
    assert result.n_perm == 128
    # independent reference: residualise on Z = age-part (orthogonalised to
    # the tested effect as in partition_design), flip, add back, refit by OLS
    x, Z = perm.partition_design(X, c)
    assert abs(x @ Z).max() < 1e-10
    H = Z @ np.linalg.pinv(Z)
    fitted, resid = H @ Y, Y - H @ Y
    def t_of(data):
        fit = glm.fit_ols(X, data)
        return glm.t_contrast(X, fit.beta, fit.residual_variance, c)[2]
    observed = np.abs(t_of(Y))
    count = np.zeros(n_vox)
    for signs in itertools.product([1.0, -1.0], repeat=n):
        null = np.abs(t_of(np.array(signs)[:, None] * resid + fitted))
        count += _count_at_least(null, observed, rtol=1e-9)
    np.testing.assert_allclose(10 ** -result.logp_uncorrected, count / 128,
                               rtol=1e-12)


def test_two_sample_permutation_equals_brute_force():
    rng = np.random.default_rng(4)
    group = np.array([1, 1, 1, 0, 0, 0])
    X = np.column_stack([group, 1 - group]).astype(float)
    Y = rng.standard_normal((6, 15)) + 2 * group[:, None]
    c = [1.0, -1.0]
    result = perm.permutation_test(Y, X, c, n_perm=10_000, scheme="permute",
                                   options=perm.PermutationOptions("positive"))
    assert result.n_perm == 720
    observed = stats.ttest_ind(Y[group == 1], Y[group == 0]).statistic
    count = np.zeros(15)
    for order in itertools.permutations(range(6)):
        g = group[list(order)]
        count += _count_at_least(
            stats.ttest_ind(Y[g == 1], Y[g == 0]).statistic, observed, 1e-9)
    np.testing.assert_allclose(10 ** -result.logp_uncorrected, count / 720,
                               rtol=1e-12)
    assert result.logp_uncorrected.max() > 1.2  # p = 1/20 is reachable


# ------------------------------------------------------------ chunking


def test_chunking_does_not_change_any_p_value():
    rng = np.random.default_rng(5)
    mask = _sphere_mask()
    Y = _smooth_maps(rng, 12, mask, effect=0.4)
    options = perm.PermutationOptions(tail="two-sided", cluster_threshold=2.5,
                                      tfce=True, batch_size=37)
    results = [perm.permutation_test(Y, mask=mask, n_perm=300, seed=11,
                                     n_chunks=k, options=options)
               for k in (1, 3, 7)]
    first = results[0]
    assert first.n_perm == 300
    for other in results[1:]:
        for name in ("logp_uncorrected", "logp_max_t", "logp_max_size",
                     "logp_max_mass", "logp_max_tfce", "h0_max_size"):
            np.testing.assert_array_equal(getattr(other, name),
                                          getattr(first, name), err_msg=name)
        for name in ("h0_max_t", "h0_max_mass", "h0_max_tfce"):
            np.testing.assert_allclose(getattr(other, name),
                                       getattr(first, name), rtol=1e-12)
    assert first.logp_max_tfce.max() > 1.0  # the effect is detected
    # chunks in any order, but they must tile 0..n_perm-1
    model = perm.one_sample_model(12)
    data = perm.prepare_data(model, Y)
    plan = perm.plan_permutations(12, 300, seed=11)
    chunks = [perm.null_chunk(model, data, plan, a, b)
              for a, b in perm.chunk_bounds(300, 3)]
    observed = perm.observed_maps(model, data)
    shuffled = perm.merge_null_chunks(observed, chunks[::-1])
    np.testing.assert_array_equal(shuffled.logp_max_t, first.logp_max_t)
    with pytest.raises(ValueError, match="tile"):
        perm.merge_null_chunks(observed, chunks[:1] + chunks[2:])


# ------------------------------------------------------------ nilearn


def test_max_t_agrees_with_nilearn_permuted_ols():
    from nilearn.mass_univariate import permuted_ols

    rng = np.random.default_rng(6)
    n, n_vox, n_perm = 14, 300, 4000
    Y = rng.standard_normal((n, n_vox)) + np.linspace(0, 1.2, n_vox)
    ours = perm.permutation_test(Y, n_perm=n_perm, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = permuted_ols(np.ones((n, 1)), Y, model_intercept=False,
                              n_perm=n_perm, two_sided_test=True,
                              random_state=0, n_jobs=1, verbose=0)
    np.testing.assert_allclose(ours.t, theirs["t"][0], rtol=1e-10)
    # nilearn flips signs at random too (cumulative products of random
    # flips, identity counted separately): the two p values are independent
    # Monte Carlo estimates of the same permutation p value. Tolerance:
    # 5 standard errors of their difference.
    p_ours = 10 ** -ours.logp_max_t
    p_theirs = 10 ** -theirs["logp_max_t"][0]
    se = np.sqrt(2 * p_ours * (1 - p_ours) / n_perm) + 1 / n_perm
    assert np.all(np.abs(p_ours - p_theirs) <= 5 * se)
    assert (p_ours < 0.05).sum() > 10  # the comparison is not vacuous
    # the null distributions of the max agree (two-sample KS test)
    assert stats.ks_2samp(ours.h0_max_t, theirs["h0_max_t"][0]).pvalue > 1e-3


# ------------------------------------------------------------ TFCE, clusters


@pytest.mark.parametrize("tail", ["two-sided", "positive"])
@pytest.mark.parametrize("dh", ["auto", 0.05])
@pytest.mark.parametrize("connectivity", [1, 3])
def test_tfce_equals_nilearn(tail, dh, connectivity):
    from nilearn.mass_univariate._utils import calculate_tfce

    rng = np.random.default_rng(7)
    mask = _sphere_mask((20, 22, 18), 8.5)
    values = _smooth_maps(rng, 1, mask, sigma=1.0)[0] * 3
    graph = spatial.voxel_graph(mask, connectivity)
    ours = spatial.tfce_map(values, graph, tail, dh=dh)
    volume = spatial.to_volume(values, mask)[..., None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = calculate_tfce(
            volume, ndimage.generate_binary_structure(3, connectivity),
            dh=dh, two_sided_test=(tail == "two-sided"),
        )[..., 0][mask]
    np.testing.assert_allclose(ours, reference, rtol=1e-9,
                               atol=1e-9 * np.abs(reference).max())
    assert np.abs(reference).max() > 0
    assert spatial.max_tfce(values, graph, tail, dh=dh) == pytest.approx(
        np.abs(reference).max(), rel=1e-12)
    if tail == "two-sided":
        assert (ours < 0).any() and (ours > 0).any()


def test_tfce_negative_tail_is_positive_tail_of_minus_map():
    rng = np.random.default_rng(8)
    mask = _sphere_mask()
    values = _smooth_maps(rng, 1, mask)[0]
    graph = spatial.voxel_graph(mask)
    np.testing.assert_array_equal(
        spatial.tfce_map(values, graph, "negative"),
        spatial.tfce_map(-values, graph, "positive"),
    )


@pytest.mark.parametrize("tail", ["two-sided", "positive", "negative"])
def test_cluster_measures_equal_ndimage_label(tail):
    rng = np.random.default_rng(9)
    mask = _sphere_mask((18, 18, 18), 8)
    values = _smooth_maps(rng, 1, mask, sigma=1.0)[0] * 2
    threshold = 1.5
    graph = spatial.voxel_graph(mask, connectivity=1)
    size, mass = spatial.cluster_maps(values, graph, threshold, tail)
    # independent reference: label each sign's suprathreshold volume
    ref_size, ref_mass = np.zeros(mask.sum()), np.zeros(mask.sum())
    signs = {"two-sided": (1, -1), "positive": (1,), "negative": (-1,)}[tail]
    for sign in signs:
        volume = np.zeros(mask.shape)
        volume[mask] = sign * values
        labels, n = ndimage.label(volume > threshold)  # default = 6-conn
        for k in range(1, n + 1):
            voxels = (labels == k)[mask]
            ref_size[voxels] = voxels.sum()
            ref_mass[voxels] = (sign * values[voxels] - threshold).sum()
    np.testing.assert_array_equal(size, ref_size)
    np.testing.assert_allclose(mass, ref_mass, rtol=1e-12)
    assert ref_size.max() > 1
    max_size, max_mass = spatial.max_cluster_measures(values, graph,
                                                      threshold, tail)
    assert max_size == ref_size.max()
    assert max_mass == pytest.approx(ref_mass.max(), rel=1e-12)


def test_cluster_and_tfce_p_values_equal_brute_force():
    rng = np.random.default_rng(10)
    mask = _sphere_mask((10, 10, 10), 4.5)
    Y = _smooth_maps(rng, 7, mask, effect=1.5)
    options = perm.PermutationOptions(cluster_threshold=2.0, tfce=True)
    result = perm.permutation_test(Y, mask=mask, n_perm=1000, options=options)
    assert result.n_perm == 128
    graph = spatial.voxel_graph(mask)
    null_size, null_mass, null_tfce = [], [], []
    for signs in itertools.product([1.0, -1.0], repeat=7):
        t = stats.ttest_1samp(np.array(signs)[:, None] * Y, 0).statistic
        size, mass = spatial.cluster_maps(t, graph, 2.0)
        null_size.append(size.max())
        null_mass.append(mass.max())
        null_tfce.append(np.abs(spatial.tfce_map(t, graph)).max())
    t = stats.ttest_1samp(Y, 0).statistic
    size, mass = spatial.cluster_maps(t, graph, 2.0)
    tf = np.abs(spatial.tfce_map(t, graph))
    for observed, null, logp in ((size, null_size, result.logp_max_size),
                                 (mass, null_mass, result.logp_max_mass),
                                 (tf, null_tfce, result.logp_max_tfce)):
        inside = observed > 0
        p = np.ones(observed.shape)
        p[inside] = [np.mean(_count_at_least(np.array(null), o, 1e-9))
                     for o in observed[inside]]
        np.testing.assert_allclose(10 ** -logp, p, rtol=1e-12)
    assert result.logp_max_tfce.max() > 1
