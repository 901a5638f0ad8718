"""PALM's accelerations of FWER p values (tail and gamma), against scipy's distributions.

The references are distributions whose p values are known (scipy.stats), scipy's own
Anderson-Darling statistic, and the permutation p values the fits fall back to.
"""

import json

import numpy as np
import pandas as pd
import pytest
from group_data import masked_noise
from scipy import stats

from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.stats.permutation import accel


def test_gpd_moments_recover_known_parameters():
    # scipy's shape c is Hosking's -k
    y = stats.genpareto.rvs(-0.2, scale=2.0, size=200_000, random_state=np.random.default_rng(0))
    scale, shape = accel.fit_gpd_moments(y)
    assert scale == pytest.approx(2.0, rel=0.02) and shape == pytest.approx(0.2, abs=0.02)
    assert accel.gpd_survival(np.array([1.0]), 2.0, 0.2)[0] == pytest.approx(
        stats.genpareto.sf(1.0, -0.2, scale=2.0), rel=1e-12)


def test_anderson_darling_statistic_equals_scipys():
    x = np.random.default_rng(1).exponential(size=100)
    ours = accel.anderson_darling(1 - np.exp(-x / x.mean()))
    assert ours == pytest.approx(stats.anderson(x, "expon", method="interpolate").statistic,
                                 rel=1e-10)


def test_anderson_darling_pvalue_is_calibrated_on_gpd_samples():
    # fitted on samples of a true GPD, the test rejects at 0.05 about 5% of the time
    rng = np.random.default_rng(2)
    rejected = 0
    for _ in range(300):
        y = stats.genpareto.rvs(-0.1, scale=1.0, size=250, random_state=rng)
        scale, shape = accel.fit_gpd_moments(y)
        cdf = 1 - accel.gpd_survival(y, scale, shape)
        rejected += accel.anderson_darling_pvalue(accel.anderson_darling(cdf), shape) <= 0.05
    interval = stats.binom.interval(0.99, 300, 0.05)
    assert interval[0] <= rejected <= interval[1]


def brute_force_p(observed, null):
    """Permutation p: the fraction of the null maxima (the identity's included) >= each value."""
    return np.array([(null >= value).mean() for value in observed])


@pytest.mark.parametrize("method", ["tail", "gamma"])
def test_small_p_values_from_a_thousand_null_maxima(method):
    # null maxima of a Gumbel law (the maximum of many normal values), the first (the
    # identity) the largest observed value, at p = 1e-4: p values down to 1e-4 from 1,001
    # maxima, near the truth; the identity is fitted with the rest (PALM's default), which
    # bends the tail up at its own value: conservative there, within 5x
    truth = np.array([1e-2, 1e-3, 1e-4])
    observed = stats.gumbel_r.isf(truth)
    null = np.r_[observed.max(),
                 stats.gumbel_r.rvs(size=1000, random_state=np.random.default_rng(3))]
    permutation_p = brute_force_p(observed, null)
    p, record = accel.accelerated_fwer(observed, null, method, permutation_p)
    assert record["Method"] == method and record["Refined"] == 3
    assert record["PValues"] == "fit" and record["KeptPermutation"] == 0
    np.testing.assert_array_less(truth / 2, p)
    np.testing.assert_array_less(p, truth * [2, 2.5, 5])
    assert permutation_p[-1] == 1 / 1001  # what the permutations alone can say
    if method == "tail":
        assert record["Accepted"] and record["TailSize"] == 250
        assert 0.05 < record["AndersonDarlingP"] <= 1


def test_tail_fit_of_a_discrete_null_falls_back_to_permutation_p():
    # cluster sizes of a few values: no GPD fits the point masses of the tail
    rng = np.random.default_rng(4)
    null = rng.choice([0.0, 1.0, 2.0, 5.0, 9.0], p=[0.6, 0.2, 0.1, 0.05, 0.05], size=1000)
    observed = np.array([3.0, 9.0, 12.0])
    permutation_p = brute_force_p(observed, null)
    p, record = accel.accelerated_fwer(observed, null, "tail", permutation_p)
    assert record["Accepted"] is False and record["Refined"] == 0
    assert record["PValues"] == "permutation: no accepted fit" and record["KeptPermutation"] == 3
    np.testing.assert_array_equal(p, permutation_p)


def test_an_identity_past_a_bounded_tail_rejects_the_fit():
    # the other maxima alone: a bounded tail (k > 0) accepted, whose support ends before
    # the identity's 100 (scipy's genpareto gives it p = 0, PALM's G1out p). With the
    # identity in the tail, the Anderson-Darling test rejects every quantile: the
    # permutation p values are kept, and the record says so
    others = stats.genpareto.rvs(-0.4, scale=1.0, size=2000,
                                 random_state=np.random.default_rng(5))
    alone = accel.fit_tail(others)
    assert alone["Accepted"] and alone["Shape"] > 0
    assert stats.genpareto.sf(100.0 - alone["Location"], -alone["Shape"],
                              scale=alone["Scale"]) == 0
    observed, null = np.array([2.2, 100.0]), np.r_[100.0, others]
    permutation_p = brute_force_p(observed, null)
    p, record = accel.accelerated_fwer(observed, null, "tail", permutation_p)
    assert record["Accepted"] is False and record["FellBack"] is True
    assert record["PValues"] == "permutation: no accepted fit"
    np.testing.assert_array_equal(p, permutation_p)
    assert p[1] == 1 / 2001


def test_beyond_the_fitted_support_the_permutation_p_is_kept():
    # a gamma fit of negative skewness is bounded above at mean + 2 sd / |skewness|; past
    # it scipy's Pearson III gives p = 0 (PALM puts 1 / n_perm there): the permutation p is
    # kept, the rest is scipy's p with the null's unbiased moments
    others = stats.pearson3.rvs(-1.0, size=2000, random_state=np.random.default_rng(6))
    observed, null = np.array([0.0, 2.6]), np.r_[2.6, others]
    permutation_p = brute_force_p(observed, null)
    p, record = accel.accelerated_fwer(observed, null, "gamma", permutation_p)
    expected = stats.pearson3.sf(observed, stats.skew(null, bias=False), loc=null.mean(),
                                 scale=null.std(ddof=1))
    assert expected[1] == 0
    assert p[0] == pytest.approx(expected[0], rel=1e-12) and p[1] == permutation_p[1] == 1 / 2001
    assert record["PValues"] == "fit, permutation beyond it" and record["FellBack"] is False
    assert (record["Refined"], record["KeptBeyondFit"], record["KeptPermutation"]) == (1, 1, 0)


@pytest.mark.parametrize("method", ["tail", "gamma"])
def test_a_null_without_spread_falls_back(method):
    # no cluster in any permutation: every null maximum 0, nothing to fit
    observed, null = np.array([0.0, 4.0]), np.zeros(300)
    permutation_p = brute_force_p(observed, null)
    p, record = accel.accelerated_fwer(observed, null, method, permutation_p)
    assert record["FellBack"] is True and record["PValues"] == "permutation: no accepted fit"
    np.testing.assert_array_equal(p, permutation_p)


def test_merge_with_acceleration_records_the_fits_and_keeps_the_rest():
    Y, mask = masked_noise(10, (8, 8, 6), 1, 20, 1.5, seed=6)
    options = perm.PermutationOptions(cluster_threshold=2.0, tfce=True)
    plain = perm.permutation_test(Y, mask=mask, n_perm=200, options=options)
    tail = perm.permutation_test(Y, mask=mask, n_perm=200, options=options, accel="tail")
    assert set(tail.fits) == {"logp_max", "logp_cluster_size", "logp_cluster_mass",
                              "logp_tfce"} and plain.fits == {}
    np.testing.assert_array_equal(tail.logp_uncorrected, plain.logp_uncorrected)
    np.testing.assert_array_equal(tail.null_tfce, plain.null_tfce)
    for name in tail.fits:
        assert np.isfinite(getattr(tail, name)).all()
        # where the permutation p is not below the threshold, it is kept
        kept = getattr(plain, name) <= -np.log10(accel.TAIL_P_THRESHOLD)
        np.testing.assert_array_equal(getattr(tail, name)[kept], getattr(plain, name)[kept])
    with pytest.raises(ValueError, match="acceleration"):
        perm.permutation_test(Y, n_perm=10, accel="fast")


def test_accel_through_the_command_line_fits_falls_back_and_says_so(tmp_path):
    # maxT: every family-wise p from scipy's Pearson III with the null maxima's unbiased
    # moments (identity included); cluster-size at a cluster-forming p no map reaches: null maxima
    # all 0, no fit, the permutation p values kept, with one warning line
    from test_cli import run_cli
    from test_run_permutations import maps, p_map, sidecar, statistic, write_table

    table = write_table(tmp_path / "data", 10, effect=1.5)
    result = run_cli("run", "--inputs", str(table), "--mask-strategy", "coverage", "--quiet",
                     "--out-dir", "out", "--work-dir", "work", "--correction", "cluster-size",
                     "--cluster-forming-p", "1e-7", "--n-perm", "300", "--accel", "gamma",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # (nilearn's viewer warns of the empty significant map too)
    assert [line for line in result.stderr.splitlines() if "accel" in line] == [
        ("nipype-secondlevel: warning: contrast intercept: --accel gamma found no good fit to "
         "the null maxima of cluster-size, cluster-mass: their permutation p values are kept")]
    out = tmp_path / "out"
    nulls = pd.read_csv(out / "contrast-intercept_desc-nulls_permutations.tsv", sep="\t")
    null = nulls["max_t"].to_numpy()
    t = np.abs(statistic(maps(table), np.ones((10, 1)), [[1.0]]))
    expected = stats.pearson3.sf(t, stats.skew(null, bias=False), loc=null.mean(),
                                 scale=null.std(ddof=1))
    np.testing.assert_allclose(p_map(out, "intercept", "t", "maxT"), expected, rtol=1e-5)
    fit = sidecar(out, "intercept", "t", "maxT")["Correction"]["Acceleration"]
    assert fit["Method"] == "gamma" and fit["FellBack"] is False
    assert fit["Fit"]["Mean"] == pytest.approx(null.mean(), rel=1e-12)
    assert fit["Fit"]["Refined"] == t.size and fit["PValues"] == "fit"
    assert (nulls["max_cluster_size"] == 0).all()
    cluster = sidecar(out, "intercept", "t", "clusterSize")["Correction"]["Acceleration"]
    assert cluster["FellBack"] is True and cluster["Fit"]["Refined"] == 0
    assert cluster["PValues"] == "permutation: no accepted fit"
    np.testing.assert_array_equal(p_map(out, "intercept", "t", "clusterSize"), 1.0)
    assert "Acceleration" not in sidecar(out, "intercept", "t", "uncorrected")["Correction"]


def test_the_readme_accel_command_runs(tmp_path, monkeypatch):
    """The command of the README's --accel section, as written, on a tiny table: TFCE's
    family-wise p values from the tail fit, which its sidecar names."""
    import re
    import shlex

    from group_data import make_group_table
    from test_readme import README

    from nipype_secondlevel.cli import main

    text = README.read_text()
    section = text[text.index("## Fewer permutations: `--accel`"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)[0]
    command = shlex.split(block.replace("\\\n", " "))
    assert command[:2] == ["nipype-secondlevel", "run"] and "--accel" in command
    make_group_table(tmp_path, n_subjects=10, conditions=("faces",))
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0
    meta = json.loads(next((tmp_path / "results" / "run").glob("*_desc-TFCE_logp.json"))
                      .read_text())["Correction"]
    assert meta["Method"] == "tfce" and meta["NPermutations"] == 500
    assert meta["Acceleration"]["Method"] == "tail"
    assert meta["Acceleration"]["Fit"]["Accepted"] != meta["Acceleration"]["FellBack"]
