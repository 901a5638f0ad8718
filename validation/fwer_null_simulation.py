"""Null simulations: observed family-wise error rate of permutation inference.

Not a test. Each simulation draws smooth Gaussian noise maps with no effect of
interest in a small spherical volume, runs a permutation test and records
whether any voxel is declared significant at alpha = 0.05 by the max statistic
(max-T or max-F), cluster size (cluster-forming p = 0.001) and, for the
one-sample design, cluster mass and TFCE. Designs:

* one-sample: 16 subjects, two-sided sign flips;
* two-sample + covariate: 10 + 10 subjects with an age covariate correlated
  with the group and a strong age effect in the data, group difference tested
  two-sided by Freedman-Lane permutations;
* blocked: 8 subjects x 3 conditions with large subject effects, the F test of
  the conditions by permutations within subject (exchangeability blocks).

The observed rates are printed with the Clopper-Pearson 95% interval of each,
and the central 95% binomial interval of the rate expected if the true FWER is
0.05.

    python validation/fwer_null_simulation.py [--n-sim 500] [--n-perm 250] [design ...]
"""

import argparse
import time

import numpy as np
from scipy import ndimage, stats

from nipype_secondlevel.stats import permutation as perm

ALPHA = 0.05
SHAPE = (18, 18, 18)
RADIUS = 8.0
SIGMA = 1.5  # voxels, FWHM ~ 3.5 voxels


def sphere(shape, radius):
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    return ((grid - centre) ** 2).sum(0) <= radius**2


def noise_maps(rng, mask, n):
    maps = [ndimage.gaussian_filter(rng.standard_normal(mask.shape), SIGMA) for _ in range(n)]
    maps = np.stack([m[mask] for m in maps])
    return maps / maps.std()


def one_sample(rng, mask):
    return {"Y": noise_maps(rng, mask, 16), "X": None, "contrast": None,
            "scheme": "sign-flip", "blocks": None, "tail": "two-sided"}


def two_sample_covariate(rng, mask):
    group = np.r_[np.ones(10), np.zeros(10)]
    age = 0.8 * group + rng.standard_normal(20)
    age -= age.mean()
    Y = noise_maps(rng, mask, 20) + 1.5 * age[:, None]  # nuisance effect, no group effect
    return {"Y": Y, "X": np.column_stack([group, 1 - group, age]),
            "contrast": [1.0, -1.0, 0.0], "scheme": "permute", "blocks": None,
            "tail": "two-sided"}


def blocked(rng, mask):
    n_subjects, n_conditions = 8, 3
    subject = np.repeat(np.arange(n_subjects), n_conditions)
    condition = np.tile(np.arange(n_conditions), n_subjects)
    X = np.column_stack([np.eye(n_conditions)[condition], np.eye(n_subjects)[subject][:, 1:]])
    Y = noise_maps(rng, mask, subject.size) + 3 * rng.standard_normal(n_subjects)[subject, None]
    pad = [0.0] * (n_subjects - 1)
    return {"Y": Y, "X": X, "contrast": [[1.0, -1.0, 0.0, *pad], [0.0, 1.0, -1.0, *pad]],
            "scheme": "permute", "blocks": subject.tolist(), "tail": "positive"}


DESIGNS = {"one-sample": one_sample, "two-sample-covariate": two_sample_covariate,
           "blocked": blocked}


def simulate(name, n_sim, n_perm, mask):
    rng = np.random.default_rng(2024)
    cut = -np.log10(ALPHA)
    errors = {}
    start = time.perf_counter()
    for sim in range(n_sim):
        problem = DESIGNS[name](rng, mask)
        model = perm.linear_model(problem["X"], problem["contrast"],
                                  n_subjects=len(problem["Y"]))
        options = perm.PermutationOptions(
            tail=problem["tail"], tfce=name == "one-sample",
            cluster_threshold=perm.cluster_forming_threshold(model, 0.001, problem["tail"]))
        result = perm.permutation_test(
            problem["Y"], problem["X"], problem["contrast"], mask=mask, n_perm=n_perm,
            seed=sim, scheme=problem["scheme"], blocks=problem["blocks"], options=options)
        found = {f"max-{model.statistic.upper()}": result.logp_max,
                 "cluster size": result.logp_cluster_size,
                 "uncorrected (any voxel)": result.logp_uncorrected}
        if name == "one-sample":
            found.update({"cluster mass": result.logp_cluster_mass, "TFCE": result.logp_tfce})
        for method, logp in found.items():
            errors[method] = errors.get(method, 0) + int(logp.max() >= cut)
    return errors, time.perf_counter() - start, model


def print_expected_interval(n_sim):
    """The central 95% binomial interval of the observed rate if the true FWER is ALPHA."""
    low, high = stats.binom.interval(0.95, n_sim, ALPHA)
    print(f"alpha = {ALPHA}; 95% binomial interval of the observed rate if the true FWER is "
          f"{ALPHA}: [{low / n_sim:.3f}, {high / n_sim:.3f}]")


def print_rates(errors, n_sim, width=14):
    """Each method's observed FWER with its Clopper-Pearson 95% interval."""
    for method, count in errors.items():
        ci = stats.binomtest(count, n_sim).proportion_ci(0.95)
        print(f"  {method:{width}s} FWER = {count / n_sim:.3f} ({count}/{n_sim}; "
              f"Clopper-Pearson 95% CI [{ci.low:.3f}, {ci.high:.3f}])")


def main(n_sim=500, n_perm=250, *names):
    names = names or tuple(DESIGNS)
    mask = sphere(SHAPE, RADIUS)
    print(f"{n_sim} null simulations per design, {int(mask.sum())} voxels (sphere r={RADIUS} "
          f"in {SHAPE}), Gaussian smoothing sigma={SIGMA} voxels, {n_perm} random patterns "
          f"each, cluster-forming p < 0.001")
    print_expected_interval(n_sim)
    for name in names:
        errors, seconds, model = simulate(name, n_sim, n_perm, mask)
        print(f"\n{name} ({model.statistic} contrast, dof {model.degrees_of_freedom}; "
              f"{seconds:.0f} s)")
        print_rates(errors, n_sim, width=24)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=500, help="null simulations per design")
    parser.add_argument("--n-perm", type=int, default=250, help="random patterns per test")
    parser.add_argument("designs", nargs="*", metavar="DESIGN",
                        help=f"designs to simulate: {', '.join(DESIGNS)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.designs) - set(DESIGNS))
    if unknown:
        parser.error(f"unknown design {', '.join(unknown)}; choose from {', '.join(DESIGNS)}")
    main(args.n_sim, args.n_perm, *args.designs)
