"""Null simulations with per-subject coverage: FWER of max-T and cluster size.

Not a test. As ``fwer_null_simulation.py`` (smooth Gaussian noise in a sphere, no
effect of interest), but each subject lacks the voxels beyond its own edge along
the first axis (a field of view cut at a random plane, none for some subjects),
so that about 30% of the voxels miss some subjects. Every voxel with at least
``MIN_SUBJECTS`` maps is tested with the subjects present there
(``stats.permutation.coverage``): max-T on the z scale of each voxel's dof and
cluster size on the z map (cluster-forming p = 0.001). Designs: one-sample (16
subjects, sign flips) and two-sample with a covariate (10 + 10, Freedman-Lane
permutations). Observed rates are printed with their Clopper-Pearson 95%
interval and the 95% binomial interval expected at a true FWER of 0.05.

    python validation/coverage_fwer_null_simulation.py [n_sim] [n_perm]
"""

import argparse
import time

import numpy as np
from fwer_null_simulation import (
    ALPHA,
    RADIUS,
    SHAPE,
    one_sample,
    print_expected_interval,
    print_rates,
    sphere,
    two_sample_covariate,
)

from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.stats.permutation.coverage import (
    cluster_threshold,
    coverage_permutation_test,
)

MIN_SUBJECTS = 8


def with_coverage(problem, mask, rng):
    """The problem's maps, NaN beyond each subject's own edge along the first axis."""
    first_axis = np.indices(mask.shape)[0][mask]
    edges = rng.integers(10, 18, len(problem["Y"]))  # 17: the subject sees everything
    Y = problem["Y"].copy()
    Y[first_axis[None, :] > edges[:, None]] = np.nan
    X = problem["X"] if problem["X"] is not None else np.ones((len(Y), 1))
    contrast = problem["contrast"] if problem["contrast"] is not None else [1.0]
    return Y, X, contrast


def simulate(design, n_sim, n_perm, mask):
    rng = np.random.default_rng(2026)
    cut = -np.log10(ALPHA)
    errors = {"max-T": 0, "cluster size": 0}
    missing = []
    options = perm.PermutationOptions(tail="two-sided", cluster_threshold=cluster_threshold(
        0.001))
    start = time.perf_counter()
    for sim in range(n_sim):
        problem = design(rng, mask)
        Y, X, contrast = with_coverage(problem, mask, rng)
        missing.append(np.isnan(Y).any(axis=0).mean())
        result = coverage_permutation_test(Y, X, contrast, mask=mask, n_perm=n_perm, seed=sim,
                                           scheme=problem["scheme"], options=options,
                                           min_subjects=MIN_SUBJECTS)
        errors["max-T"] += int(result.logp_max.max() >= cut)
        errors["cluster size"] += int(result.logp_cluster_size.max() >= cut)
    return errors, np.mean(missing), time.perf_counter() - start


def main(n_sim=200, n_perm=250):
    mask = sphere(SHAPE, RADIUS)
    print(f"{n_sim} null simulations per design, {int(mask.sum())} voxels, {n_perm} random "
          f"patterns each, at least {MIN_SUBJECTS} subjects per voxel")
    print_expected_interval(n_sim)
    for name, design in (("one-sample", one_sample),
                         ("two-sample-covariate", two_sample_covariate)):
        errors, missing, seconds = simulate(design, n_sim, n_perm, mask)
        print(f"\n{name}: {missing:.0%} of the voxels miss some subject ({seconds:.0f} s)")
        print_rates(errors, n_sim)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_sim", type=int, nargs="?", default=200,
                        help="null simulations per design (default: 200)")
    parser.add_argument("n_perm", type=int, nargs="?", default=250,
                        help="random patterns per test (default: 250)")
    args = parser.parse_args()
    main(args.n_sim, args.n_perm)
