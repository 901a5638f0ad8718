"""PALM's accelerations: few permutations with a fitted tail against many without.

Not a test; prints figures measured in one run.

1. The demo's data (16 subjects' paired differences on the Localizer grid, the
   sign-flip test of the demo; its effect, amplitude 2, then weaker ones of
   ``--amplitudes``, whose p values are less often at the floor of the large run): FWER p values from ``--small`` permutations with
   the ``tail`` (and ``gamma``) approximation against those from ``--large``
   plain permutations, at the voxels where the latter is <= 0.05; agreement is
   counted within the 95% Monte Carlo interval of the large run's p,
   p +- 1.96 sqrt(p (1 - p) / n_large), and the time of both is printed.
2. Null data (smooth noise in a sphere, no effect; as
   ``fwer_null_simulation.py``): the family-wise error rate at alpha = 0.05
   with ``--small`` permutations and each approximation, against the 95%
   binomial interval of 0.05.

The permutations of a run are drawn once and merged with each method (the
accelerations only change the merge), so the three methods see the same null
maxima. Each row says where its p values come from (the sidecar's
``Acceleration.PValues``: the fit, the permutations beyond it, or the
permutations when no fit is accepted).

    python validation/accel_validation.py [--small 500] [--large 50000] [--n-sim 200]
        [--statistics maxT cluster-size tfce]
"""

import argparse
import os
import time

import numpy as np
from fwer_null_simulation import RADIUS, SHAPE, noise_maps, sphere
from scipy import stats

from nipype_secondlevel.stats import permutation as perm

ALPHA = 0.05
FIELDS = {"maxT": "logp_max", "cluster-size": "logp_cluster_size", "tfce": "logp_tfce"}


def options(statistics, dof):
    threshold = perm.cluster_forming_threshold(perm.one_sample_model(dof + 1), 0.001)
    return perm.PermutationOptions(
        cluster_threshold=threshold if "cluster-size" in statistics else None,
        tfce="tfce" in statistics)


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def permuted(Y, mask, n_perm, seed, opts):
    """The observed maps and null chunks of a sign-flip test (as ``permutation_test``),
    to be merged with each method."""
    model = perm.linear_model(None, None, n_subjects=Y.shape[0])
    columns = perm.VoxelColumns.from_array(Y)
    plan = perm.plan_permutations(Y.shape[0], n_perm, "sign-flip", seed, None, model.X)
    chunks = [perm.null_chunk(model, columns, plan, 0, plan.n_perm, mask, opts)]
    return perm.observed_maps(model, columns, plan, mask, opts), chunks


def merged(parts, opts, method):
    return perm.merge_null_chunks(*parts, opts, method)


def described(fit):
    if fit.get("Accepted"):
        where = f"q={fit['Quantile']:.3f}, shape {fit['Shape']:.3f}"
    elif "Skewness" in fit:
        where = f"skewness {fit['Skewness']:.2f}"
    else:
        where = "no tail accepted"
    return (f"p from: {fit['PValues']} ({where}; {fit['Refined']} fitted, "
            f"{fit['KeptBeyondFit']} beyond, {fit['KeptPermutation']} permutation)")


def demo_agreement(args, amplitude):
    from nipype_secondlevel.datasets.simulation import localizer_brain_mask, simulate_paired_sample

    mask, affine = localizer_brain_mask()
    maps, _ = simulate_paired_sample(mask, affine, 16, 0, effect_amplitude=amplitude)
    Y = (maps[:, 0] - maps[:, 1])[:, mask].astype(float)
    opts = options(args.statistics, 15)
    print(f"\ndemo data, effect amplitude {amplitude:g}: 16 paired differences, "
          f"{int(mask.sum())} voxels; sign flips, statistics {', '.join(args.statistics)}")
    large, large_time = timed(lambda: merged(permuted(Y, mask, args.large, 1, opts), opts,
                                             "none"))
    print(f"  {args.large:,} plain permutations: {large_time:.1f} s CPU")
    parts, small_time = timed(lambda: permuted(Y, mask, args.small, 2, opts))
    for method in ("none", "tail", "gamma"):
        small, merge_time = timed(lambda m=method: merged(parts, opts, m))
        spent = small_time + merge_time
        print(f"  {args.small:,} permutations, {method}: {spent:.1f} s CPU "
              f"({large_time / spent:.0f}x less than {args.large:,} plain)")
        for statistic in args.statistics:
            field = FIELDS[statistic]
            reference = 10.0 ** -getattr(large, field)
            fitted = 10.0 ** -getattr(small, field)
            # voxels where the large run's p is small, and above its own floor
            where = (reference <= ALPHA) & (reference > 1 / args.large) & (
                getattr(large, field) > 0)
            error = 1.96 * np.sqrt(reference * (1 - reference) / args.large)
            within = np.abs(fitted - reference) <= error
            # the interval of the difference of two permutation estimates (small and large)
            either = np.abs(fitted - reference) <= error * np.sqrt(1 + args.large / args.small)
            source = described(small.fits[field]) if method != "none" else "permutations"
            floor = (reference <= 1 / args.large * (1 + 1e-9)).sum()
            if where.any():
                ratio = np.median(fitted[where] / reference[where])
                print(f"    {statistic:13s} {where.sum():6d} voxels with {1 / args.large:.0e} "
                      f"< p <= {ALPHA}: {within[where].mean():6.1%} within the Monte Carlo "
                      f"interval ({either[where].mean():.1%} within that of a difference "
                      f"with {args.small} permutations), median p ratio {ratio:.2f}; "
                      f"{floor} at the large run's "
                      f"floor, there p = {describe_range(fitted, reference, args)}"
                      f"; {source}")
            else:
                print(f"    {statistic:13s} no voxel with {1 / args.large:.0e} < p <= {ALPHA}; "
                      f"{floor} at the large run's floor, there p = "
                      f"{describe_range(fitted, reference, args)}; {source}")


def describe_range(fitted, reference, args):
    """The range of the small run's p where the large run's p is at its floor 1 / n."""
    at_floor = reference <= 1 / args.large * (1 + 1e-9)
    if not at_floor.any():
        return "-"
    return f"{fitted[at_floor].min():.1e}..{fitted[at_floor].max():.1e}"


def null_fwer(args):
    mask = sphere(SHAPE, RADIUS)
    rng = np.random.default_rng(2016)
    opts = options(args.statistics, 15)
    errors = {(m, s): 0 for m in perm.ACCELERATIONS for s in args.statistics}
    fell_back = dict.fromkeys(errors, 0)
    start = time.process_time()
    for _ in range(args.n_sim):
        Y = noise_maps(rng, mask, 16)
        parts = permuted(Y, mask, args.small, int(rng.integers(2**31)), opts)
        for method in perm.ACCELERATIONS:
            result = merged(parts, opts, method)
            for statistic in args.statistics:
                errors[method, statistic] += int(
                    getattr(result, FIELDS[statistic]).max() > -np.log10(ALPHA))
                fit = result.fits.get(FIELDS[statistic])
                fell_back[method, statistic] += int(bool(fit and fit["FellBack"]))
    low, high = stats.binom.interval(0.95, args.n_sim, ALPHA)
    print(f"\nnull data: {args.n_sim} simulations, 16 subjects, {int(mask.sum())} voxels, "
          f"{args.small} permutations each ({time.process_time() - start:.0f} s CPU); 95% "
          f"binomial interval of the rate if the FWER is {ALPHA}: "
          f"[{low / args.n_sim:.3f}, {high / args.n_sim:.3f}]")
    for (method, statistic), count in errors.items():
        print(f"  {method:6s} {statistic:13s} FWER = {count / args.n_sim:.3f}"
              + (f" (no accepted fit: {fell_back[method, statistic]} of {args.n_sim} "
                 "simulations)" if method != "none" else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=500,
                        help="permutations with the approximations")
    parser.add_argument("--large", type=int, default=50_000,
                        help="plain permutations of the reference")
    parser.add_argument("--n-sim", type=int, default=200, help="null simulations")
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[2.0, 1.5],
                        help="effect amplitudes of the demo data (the demo's is 2)")
    parser.add_argument("--statistics", nargs="+", default=["maxT", "cluster-size"],
                        choices=list(FIELDS), help="FWER statistics compared")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}")
    for amplitude in args.amplitudes:
        demo_agreement(args, amplitude)
    if args.n_sim:
        null_fwer(args)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
