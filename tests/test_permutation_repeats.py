"""Each distinct permutation pattern computed once (stats/permutation/repeats.py).

Random plans of few subjects repeat patterns, and hold negations of earlier ones.
The cluster and TFCE null maxima and the uncorrected p values computed with the
repeats shared must equal a brute-force loop written here over every pattern
(scipy's t, ndimage.label per threshold), on both tails and on one tail, where a
negation must not be shared; and their bits must not depend on the sharing nor on
the split into chunks.
"""

import numpy as np
import pytest
from scipy import ndimage, stats

from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.stats.permutation.repeats import pattern_classes

RTOL = 1e-9  # the reference's t is scipy's, not the package's bits
MASK = np.zeros((10, 10, 8), dtype=bool)
MASK[1:-1, 1:-1, 1:-1] = True  # 384 voxels
FORMING, DH = 1.0, 0.5  # cluster-forming t; TFCE step (about 10 thresholds)


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(24)
    Y = np.stack([ndimage.gaussian_filter(rng.standard_normal(MASK.shape), 1.2)[MASK]
                  for _ in range(7)])
    return Y / Y.std() + 0.5


def _labels(values, height, strict=True):
    """Clusters of the voxels above ``height`` (at or above it if not ``strict``)."""
    volume = np.zeros(MASK.shape)
    volume[MASK] = values
    labels, n = ndimage.label(volume > height if strict else volume >= height)
    return labels[MASK], n


def _reference_maxima(t, tail):
    """(max tail t, max cluster size, max cluster mass, max TFCE) of one t map, each
    side's clusters labelled by ndimage at every threshold (6-connectivity)."""
    signs = {"two-sided": (1, -1), "positive": (1,)}[tail]
    top = max(np.max(s * t) for s in signs)
    heights = np.linspace(0, top, min(max(round(top / DH), 10), 1000) + 1)[1:]
    size = mass = tfce = 0.0
    for s in signs:
        labels, n = _labels(s * t, FORMING)
        for k in range(1, n + 1):
            size = max(size, np.sum(labels == k))
            mass = max(mass, np.sum(s * t[labels == k] - FORMING))
        enhanced = np.zeros(t.size)
        for h in heights:
            labels, n = _labels(s * t, h, strict=False)
            counts = np.bincount(labels, minlength=n + 1)
            enhanced[labels > 0] += np.sqrt(counts[labels[labels > 0]]) * h**2
        tfce = max(tfce, enhanced.max())
    return top, size, mass, tfce


def _run(Y, plan, bounds, tail, share=True, X=None, contrast=None):
    options = perm.PermutationOptions(tail=tail, cluster_threshold=FORMING, tfce=True,
                                      tfce_dh=DH)
    model = perm.linear_model(X, contrast, n_subjects=len(Y))
    chunks = [perm.null_chunk(model, Y, plan, a, b, MASK, options, share_repeats=share)
              for a, b in bounds]
    return perm.merge_null_chunks(perm.observed_maps(model, Y, plan, MASK, options), chunks,
                                  options)


NULLS = ("null_max", "null_cluster_size", "null_cluster_mass", "null_tfce")


@pytest.mark.parametrize("tail", ["two-sided", "positive"])
def test_shared_nulls_equal_brute_force_over_every_pattern(maps, tail):
    plan = perm.plan_permutations(7, 120, seed=5)  # 120 draws of 128 patterns
    patterns = perm.plan_patterns(plan, 0, plan.n_perm)
    assert not plan.exhaustive
    # the plan repeats patterns, and negates earlier ones that it does not repeat
    first = {p.tobytes(): i for i, p in reversed(list(enumerate(patterns)))}
    repeats = [i for i, p in enumerate(patterns) if first[p.tobytes()] < i]
    negations = [(first[(-p).tobytes()], i) for i, p in enumerate(patterns)
                 if first.get((-p).tobytes(), i) < i and i not in repeats]
    assert len(repeats) > 20 and len(negations) > 20
    result = _run(maps, plan, [(0, 37), (37, 38), (38, 120)], tail)

    t_maps = [stats.ttest_1samp(s[:, None] * maps, 0).statistic for s in patterns]
    expected = np.array([_reference_maxima(t, tail) for t in t_maps])
    for name, column in zip(NULLS, expected.T):
        np.testing.assert_allclose(getattr(result, name), column, rtol=RTOL, err_msg=name)
    if tail == "positive":  # sharing a negation here would have failed the test
        a, b = np.array(negations).T
        assert np.all(np.abs(expected[a, 3] - expected[b, 3]) > 1e-3 * expected[b, 3])
    # uncorrected p: every pattern counted, the repeats included
    shown = {"two-sided": np.abs, "positive": lambda t: t}[tail]
    observed = shown(t_maps[0])
    reached = np.sum([shown(t) >= observed - RTOL * np.abs(observed) for t in t_maps], axis=0)
    np.testing.assert_allclose(10 ** -result.logp_uncorrected, reached / plan.n_perm,
                               rtol=1e-12)


def _two_sample(n):
    X = np.zeros((n, 2))
    X[: n // 2, 0] = X[n // 2:, 1] = 1.0
    return X


@pytest.mark.parametrize("case", ["sign-flip", "exhaustive", "F", "permute"])
def test_shared_nulls_are_the_bits_of_every_pattern_computed(maps, case):
    """Sharing and chunk splits (odd sizes, one pattern) change no bit of the nulls."""
    rng = np.random.default_rng(3)
    X = contrast = None
    Y, plan, tail = maps, perm.plan_permutations(7, 120, seed=8), "two-sided"
    if case == "exhaustive":  # 64 patterns, each a negation of another
        Y, plan = maps[:6], perm.plan_permutations(6, 100)
    if case == "F":  # sign flips of an F test beside a covariate: F(-s) = F(s)
        X, contrast, tail = np.column_stack([np.ones(7), rng.standard_normal((7, 2))]), \
            [[0, 1.0, 0], [0, 0, 1.0]], "positive"
        Y = maps + 0.4 * np.outer(X[:, 1], np.linspace(0, 3, maps.shape[1]))
    if case == "permute":  # 120 draws of the 720 row orders: exact repeats only
        X, contrast = _two_sample(6), [1.0, -1.0]
        Y, plan = maps[:6], perm.plan_permutations(6, 120, "permute", seed=2)
    whole = _run(Y, plan, [(0, plan.n_perm)], tail, False, X, contrast)
    splits = [[(0, plan.n_perm)], [(0, 1), (1, 50), (50, 51), (51, plan.n_perm)]]
    for bounds in splits:
        shared = _run(Y, plan, bounds, tail, True, X, contrast)
        for name in (*NULLS, "logp_uncorrected", "logp_tfce", "logp_cluster_mass"):
            np.testing.assert_array_equal(getattr(shared, name), getattr(whole, name),
                                          err_msg=name)
    assert whole.null_tfce.max() > 0


@pytest.mark.parametrize("scheme, n, symmetric", [("sign-flip", 6, True),
                                                  ("sign-flip", 6, False),
                                                  ("permute", 4, False)])
def test_pattern_classes_are_the_first_index_of_each_pattern(scheme, n, symmetric):
    plan = perm.plan_permutations(n, 20 if scheme == "permute" else 60, scheme, seed=1)
    assert not plan.exhaustive
    representative, count = pattern_classes(plan, symmetric)
    first, expected = {}, []
    for i, p in enumerate(perm.plan_patterns(plan, 0, plan.n_perm)):
        key = p.tobytes()
        if symmetric and (-p).tobytes() in first:
            key = (-p).tobytes()
        expected.append(first.setdefault(key, i))
    np.testing.assert_array_equal(representative, expected)
    np.testing.assert_array_equal(count, np.bincount(expected, minlength=plan.n_perm))
    assert len(set(expected)) < plan.n_perm
