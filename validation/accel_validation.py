"""PALM's accelerations: few permutations with a fitted tail against many without.

Not a test; prints figures measured in one run. The criterion (docs/acceleration.md,
"When an accelerated p agrees"): an accelerated p is an estimator of the p that
infinitely many permutations would give, and it agrees with ``--large`` plain
permutations when

(a) it is unbiased: over ``--repeats`` R independent runs of ``--small``
    permutations (other seeds), |mean(p) - p_large| <= 2 sqrt(var(p) / R +
    se_large^2), se_large^2 = p_large (1 - p_large) / n_large, at every test point
    whose p_large is in (1 / n_large, 0.05];
(b) it is more precise than the same runs' plain permutation p where it claims
    to be (the points whose p came from the fit in at least half the runs): the
    median ratio of their standard deviations over the R runs is below 1 (the
    ratio of their root mean square errors about p_large is printed too);
(c) it is never anti-conservative beyond what ``--small`` permutations resolve
    (the points with p_large < 1 / n_small): p >= p_large - 2 se_large in every run.

Test points, per statistic, on the demo's data (16 paired differences on the
Localizer grid, sign flips; effect ``--amplitudes``, the demo's 2 first): the
peak |t| (max-T) and the peak TFCE of every cluster of |t| above the
cluster-forming threshold (p = 0.001), and every such cluster's size, where
p_large <= 0.05; and the values of the large run's null maxima at which
p_large = 0.05, 0.01, 0.002 and 0.0005 ("levels": the estimator across the range),
those up to the map's maximum (the identity's, which no voxel exceeds).
A point's p is that of the merge (``fwer_pvalues``, then ``accelerated_fwer``:
per value, so the map's p at that voxel). The large run is drawn once per
amplitude and statistics and kept in ``--cache`` between invocations.

Then null data (smooth noise in a sphere, no effect; as
``fwer_null_simulation.py``): the family-wise error rate at alpha = 0.05 with
``--small`` permutations and each approximation, against the 95% binomial
interval of 0.05. And the time saved: CPU of ``--small`` permutations with a fit
against ``--large`` plain ones.

    python validation/accel_validation.py [--small 500] [--large 50000] [--repeats 40]
        [--n-sim 200] [--statistics maxT cluster-size tfce] [--jobs 2] [--cache DIR]
"""

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from fwer_null_simulation import (
    ALPHA,
    RADIUS,
    SHAPE,
    noise_maps,
    print_expected_interval,
    sphere,
)
from scipy import ndimage, stats

from nipype_secondlevel.stats import permutation as perm

LEVELS = (0.05, 0.01, 0.002, 0.0005)
FIELDS = {"maxT": "logp_max", "cluster-size": "logp_cluster_size", "tfce": "logp_tfce"}
NULLS = {"maxT": "max_statistic", "cluster-size": "max_cluster_size", "tfce": "max_tfce"}
METHODS = ("none", "tail", "gamma")
#: PALM's ``-accel tail out`` / ``gamma out`` (the identity left out of the fitted null):
#: not the package's rule, printed beside it for comparison.
COMPARED = (*METHODS, "tail-out", "gamma-out")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "nipype-secondlevel/accel_validation")


def forming_threshold(dof):
    """The cluster-forming threshold of t (p = 0.001) of a one-sample test."""
    return perm.cluster_forming_threshold(perm.one_sample_model(dof + 1), 0.001)


def options(statistics, dof):
    return perm.PermutationOptions(
        cluster_threshold=forming_threshold(dof) if "cluster-size" in statistics else None,
        tfce="tfce" in statistics, uncorrected=False)


def demo_data(amplitude):
    from nipype_secondlevel.datasets.simulation import localizer_brain_mask, simulate_paired_sample

    mask, affine = localizer_brain_mask()
    maps, _ = simulate_paired_sample(mask, affine, 16, 0, effect_amplitude=amplitude)
    return (maps[:, 0] - maps[:, 1])[:, mask].astype(float), mask


def _chunk(args):
    """Null maxima of one chunk (a worker's job) and its CPU time."""
    Y, mask, n_perm, seed, opts, start, stop = args
    begin = time.process_time()
    model = perm.linear_model(None, None, n_subjects=Y.shape[0])
    plan = perm.plan_permutations(Y.shape[0], n_perm, "sign-flip", seed, None, model.X)
    chunk = perm.null_chunk(model, perm.VoxelColumns.from_array(Y), plan, start, stop, mask,
                            opts)
    return chunk, time.process_time() - begin


def null_maxima(pool, Y, mask, n_perm, seeds, opts, statistics, n_chunks=1):
    """{statistic: null maxima (n_perm,)} and CPU seconds of each seed's sign-flip test."""
    jobs = [(Y, mask, n_perm, seed, opts, a, b) for seed in seeds
            for a, b in perm.chunk_bounds(n_perm, n_chunks)]
    done = list(pool.map(_chunk, jobs))
    runs = []
    for i in range(len(seeds)):
        parts = done[i * n_chunks:(i + 1) * n_chunks]
        runs.append(({s: np.concatenate([getattr(c, NULLS[s]) for c, _ in parts])
                      for s in statistics}, sum(t for _, t in parts)))
    return runs


def large_run(pool, args, amplitude, Y, mask, opts):
    """The ``--large`` plain run's null maxima, from the cache when there."""
    name = f"a{amplitude:g}_n{args.large}_seed1_{'-'.join(sorted(args.statistics))}.npz"
    path = args.cache / name
    if path.exists():
        saved = np.load(path)
        return {s: saved[s] for s in args.statistics}, float(saved["cpu"]), True
    (null, cpu), = null_maxima(pool, Y, mask, args.large, [1], opts, args.statistics,
                               n_chunks=8 * args.jobs)
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, cpu=cpu, **null)
    return null, cpu, False


def test_points(statistic, observed, mask, null):
    """(labels, values) where the statistic is tested: map points with p <= 0.05, levels."""
    shown = np.zeros(mask.shape)
    shown[mask] = observed.statistic
    labels, values = [], []
    for sign in (1, -1):
        clusters, count = ndimage.label(sign * shown > forming_threshold(15))
        for k in range(1, count + 1):
            inside = (clusters == k)[mask]
            if statistic == "maxT":
                value = np.abs(observed.statistic[inside]).max()
            elif statistic == "tfce":
                value = np.abs(observed.tfce[inside]).max()
            else:
                value = observed.cluster_size[inside].max()
            if perm.fwer_pvalues([value], null)[0] <= ALPHA and value not in values:
                labels.append(f"{'+-'[sign < 0]}cluster of {inside.sum()}")
                values.append(value)
    # the levels up to the map's maximum (the identity's): no voxel can be beyond it
    ordered, largest = np.sort(null), null[0]
    for level in (lv for lv in LEVELS if round(lv * null.size) >= 1):
        value = ordered[null.size - round(level * null.size)]
        if value <= largest:
            labels.append(f"level {level:g}")
            values.append(value)
    return labels, np.array(values, dtype=float)


def estimates(values, null, method):
    """p at ``values`` from one run's null maxima (the identity's first), and whether the
    fit gave each. ``method`` "tail-out", "gamma-out": PALM's ``-accel tail out``, the
    identity left out of the null (not the package's rule: a comparison)."""
    method, _, out = method.partition("-")
    null = null[1:] if out else null
    plain = perm.fwer_pvalues(values, null)
    if method == "none":
        return plain, np.zeros(plain.shape, bool)
    p, record = perm.accelerated_fwer(values, null, method, plain)
    return p, ~record["FellBack"] & (p != plain)


def bias_z(p, reference, se, repeats):
    """|mean(p) - p_large| / sqrt(var(p) / R + se_large^2) over the runs (axis 0)."""
    return np.abs(p.mean(0) - reference) / np.sqrt(p.var(0, ddof=1) / repeats + se**2)


def judged(p, fitted, plain, reference, n_large, n_small):
    """The three criteria at the points of one statistic and method (see the module notes)."""
    se = np.sqrt(reference * (1 - reference) / n_large)
    where = (reference <= ALPHA) & (reference > 1 / n_large * (1 + 1e-9))
    z = bias_z(p, reference, se, len(p))
    bias = (p.mean(0) - reference)[where] * n_small  # in units of 1 / n_small
    # (b) where the fit gave p in at least half the runs and the plain p varies
    claims = where & (fitted.mean(0) >= 0.5) & (plain.std(0, ddof=1) > 0)

    def spread(q):
        return q.std(0, ddof=1)[claims], np.sqrt(((q - reference) ** 2).mean(0))[claims]

    ratios = [np.median(a / b) if claims.any() else np.nan
              for a, b in zip(spread(p), spread(plain))]
    # (c) beyond what n_small permutations resolve: every run
    beyond = reference < 1 / n_small
    below = (p < reference - 2 * se)[:, beyond]
    return {"z": z, "where": where, "a": bool((z[where] <= 2).all()),
            "bias": f"{bias.min():+.1f}..{bias.max():+.1f}" if bias.size else "-",
            "claims": int(claims.sum()), "sd": ratios[0], "rmse": ratios[1],
            "beyond": int(beyond.sum()), "below": int(below.sum())}


def demo_agreement(pool, args, amplitude):
    Y, mask = demo_data(amplitude)
    opts = options(args.statistics, 15)
    model = perm.linear_model(None, None, n_subjects=16)
    plan = perm.plan_permutations(16, args.small, "sign-flip", 1, None, model.X)
    observed = perm.observed_maps(model, perm.VoxelColumns.from_array(Y), plan, mask, opts)
    print(f"\ndemo data, effect amplitude {amplitude:g}: 16 paired differences, "
          f"{int(mask.sum())} voxels; sign flips")
    start = time.time()
    large, large_cpu, cached = large_run(pool, args, amplitude, Y, mask, opts)
    print(f"  {args.large:,} plain permutations: {large_cpu:.0f} s CPU"
          + (" (from the cache)" if cached else f", {time.time() - start:.0f} s wall"))
    start = time.time()
    runs = null_maxima(pool, Y, mask, args.small, range(1000, 1000 + args.repeats), opts,
                       args.statistics)
    small_cpu = np.mean([cpu for _, cpu in runs])
    print(f"  {args.repeats} runs of {args.small} permutations (seeds 1000..): "
          f"{small_cpu:.1f} s CPU each ({large_cpu / small_cpu:.0f}x less than "
          f"{args.large:,} plain), {time.time() - start:.0f} s wall in all")
    rows = []
    for statistic in args.statistics:
        labels, values = test_points(statistic, observed, mask, large[statistic])
        reference = perm.fwer_pvalues(values, large[statistic])
        se = np.sqrt(reference * (1 - reference) / args.large)
        out = {m: [estimates(values, null[statistic], m) for null, _ in runs]
               for m in COMPARED}
        p = {m: np.array([o[0] for o in out[m]]) for m in COMPARED}
        print(f"\n  {statistic}: p_{args.large} and, over {args.repeats} runs of "
              f"{args.small}, mean p (sd) [z of (a)]")
        for i, label in enumerate(labels):
            print(f"    {label:22s} value {values[i]:10.4g}  p_large {reference[i]:.2e}  "
                  + "  ".join(f"{m} {p[m][:, i].mean():.2e} ({p[m][:, i].std(ddof=1):.1e})"
                              f" [{bias_z(p[m][:, i], reference[i], se[i], args.repeats):.1f}]"
                              for m in COMPARED))
        for method in COMPARED:
            fitted = np.array([o[1] for o in out[method]])
            rows.append((statistic, method, judged(p[method], fitted, p["none"], reference,
                                                    args.large, args.small)))
    print(f"\n  amplitude {amplitude:g}: the criteria (R = {args.repeats} runs of {args.small};"
          f" p_large from {args.large:,})")
    print(f"  {'statistic':13s} {'method':9s} | (a) unbiased: points, worst z, bias x "
          f"{args.small}, pass | (b) against plain: points, sd ratio, rms error ratio, pass "
          f"| (c) points beyond 1/{args.small}, runs x points below, pass")
    for statistic, method, r in rows:
        shown = method != "none" and r["claims"]
        ratios = f"{r['sd']:5.2f} {r['rmse']:5.2f}" if shown else f"{'-':>5s} {'-':>5s}"
        b_pass = ("pass" if r["sd"] < 1 else "FAIL") if shown else "-"
        worst = f"{r['z'][r['where']].max():.1f}" if r["where"].any() else "-"
        c_pass = "-" if not r["beyond"] else "pass" if not r["below"] else "FAIL"
        print(f"  {statistic:13s} {method:9s} | {int(r['where'].sum()):3d} {worst:>6s} "
              f"{r['bias']:>11s} {'pass' if r['a'] else 'FAIL':4s} | {r['claims']:3d} "
              f"{ratios} {b_pass:4s} | {r['beyond']:3d} {r['below']:4d} {c_pass}")


def _null_simulation(args):
    """Whether each (method, statistic) rejects at ALPHA on one null data set, and fell back."""
    i, n_perm, statistics = args
    mask = sphere(SHAPE, RADIUS)
    rng = np.random.default_rng([2016, i])
    opts = options(statistics, 15)
    model = perm.linear_model(None, None, n_subjects=16)
    columns = perm.VoxelColumns.from_array(noise_maps(rng, mask, 16))
    plan = perm.plan_permutations(16, n_perm, "sign-flip", int(rng.integers(2**31)), None,
                                  model.X)
    parts = (perm.observed_maps(model, columns, plan, mask, opts),
             [perm.null_chunk(model, columns, plan, 0, plan.n_perm, mask, opts)])
    out = {}
    for method in METHODS:
        result = perm.merge_null_chunks(*parts, opts, method)
        for statistic in statistics:
            fit = result.fits.get(FIELDS[statistic])
            out[method, statistic] = (
                getattr(result, FIELDS[statistic]).max() > -np.log10(ALPHA),
                bool(fit and fit["FellBack"]))
    for method in COMPARED[len(METHODS):]:  # at the map's maximum, the identity's
        for statistic in statistics:
            null = getattr(parts[1][0], NULLS[statistic])
            p, fitted = estimates(null[:1], null, method)
            out[method, statistic] = (p[0] < ALPHA, not fitted[0])
    return out


def null_fwer(pool, args):
    start = time.time()
    sims = list(pool.map(_null_simulation, [(i, args.small, args.statistics)
                                            for i in range(args.n_sim)]))
    low, high = stats.binom.interval(0.95, args.n_sim, ALPHA)
    print(f"\nnull data: {args.n_sim} simulations, 16 subjects, "
          f"{int(sphere(SHAPE, RADIUS).sum())} voxels, {args.small} permutations each "
          f"({time.time() - start:.0f} s wall)")
    print_expected_interval(args.n_sim)
    for key in sims[0]:
        count = sum(out[key][0] for out in sims)
        fell_back = sum(out[key][1] for out in sims)
        method, statistic = key
        why = "no accepted fit" if method in METHODS else "the maximum's p not from a fit"
        print(f"  {method:9s} {statistic:13s} FWER = {count / args.n_sim:.3f} "
              f"{'pass' if low <= count <= high else 'FAIL'}"
              + (f" ({why}: {fell_back} of {args.n_sim} simulations)"
                 if method != "none" else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=500,
                        help="permutations of each accelerated run")
    parser.add_argument("--large", type=int, default=50_000,
                        help="plain permutations of the reference")
    parser.add_argument("--repeats", type=int, default=40,
                        help="independent runs of --small permutations (criteria a, b, c)")
    parser.add_argument("--n-sim", type=int, default=200, help="null simulations")
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[2.0],
                        help="effect amplitudes of the demo data (the demo's is 2)")
    parser.add_argument("--statistics", nargs="+", default=list(FIELDS),
                        choices=list(FIELDS), help="FWER statistics compared")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="folder of the large runs' null maxima, kept between runs")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}")
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("fork")) as pool:
        for amplitude in args.amplitudes:
            demo_agreement(pool, args, amplitude)
        if args.n_sim:
            null_fwer(pool, args)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
