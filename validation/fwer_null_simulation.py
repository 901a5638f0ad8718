"""Null simulations: observed family-wise error rate of permutation inference.

Not a test. Each simulation draws 16 subjects' maps of smooth Gaussian noise
(no effect) in a small spherical volume, runs a two-sided sign-flipping test,
and records whether any voxel is declared significant at alpha = 0.05 by voxel
max-T, cluster size (cluster-forming p = 0.001) and TFCE. The observed rates
are printed with the central 95% binomial interval of the count of errors
expected when the true rate is 0.05.

    /work/venv/bin/python validation/fwer_null_simulation.py [n_sim] [n_perm]
"""

import sys
import time

import numpy as np
from scipy import ndimage, stats

from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.stats import spatial

ALPHA = 0.05
N_SUBJECTS = 16
SHAPE = (18, 18, 18)
RADIUS = 8.0
SIGMA = 1.5  # voxels, FWHM ~ 3.5 voxels


def sphere(shape, radius):
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    return ((grid - centre) ** 2).sum(0) <= radius**2


def null_maps(rng, mask):
    maps = [ndimage.gaussian_filter(rng.standard_normal(mask.shape), SIGMA)
            for _ in range(N_SUBJECTS)]
    return np.stack([m[mask] for m in maps])


def main(n_sim=500, n_perm=250):
    mask = sphere(SHAPE, RADIUS)
    threshold = spatial.cluster_forming_threshold(0.001, N_SUBJECTS - 1)
    options = perm.PermutationOptions(tail="two-sided",
                                      cluster_threshold=threshold, tfce=True)
    rng = np.random.default_rng(2024)
    cut = -np.log10(ALPHA)
    errors = {"voxel max-T": 0, "cluster size": 0, "cluster mass": 0,
              "TFCE": 0, "uncorrected (any voxel)": 0}
    start = time.perf_counter()
    for sim in range(n_sim):
        result = perm.permutation_test(null_maps(rng, mask), mask=mask,
                                       n_perm=n_perm, seed=sim,
                                       options=options)
        errors["voxel max-T"] += result.logp_max_t.max() >= cut
        errors["cluster size"] += result.logp_max_size.max() >= cut
        errors["cluster mass"] += result.logp_max_mass.max() >= cut
        errors["TFCE"] += result.logp_max_tfce.max() >= cut
        errors["uncorrected (any voxel)"] += result.logp_uncorrected.max() >= cut
    elapsed = time.perf_counter() - start
    low, high = stats.binom.interval(0.95, n_sim, ALPHA)
    print(f"{n_sim} null simulations, {N_SUBJECTS} subjects, "
          f"{int(mask.sum())} voxels (sphere r={RADIUS} in {SHAPE}), "
          f"Gaussian smoothing sigma={SIGMA} voxels, {n_perm} sign flips each, "
          f"two-sided, cluster-forming t > {threshold:.2f} (p < 0.001), "
          f"{elapsed:.0f} s")
    print(f"alpha = {ALPHA}; 95% binomial interval of the observed rate if the "
          f"true FWER is {ALPHA}: [{low / n_sim:.3f}, {high / n_sim:.3f}]")
    for name, count in errors.items():
        ci = stats.binomtest(int(count), n_sim).proportion_ci(0.95)
        print(f"  {name:24s} FWER = {count / n_sim:.3f} ({count}/{n_sim}; "
              f"Clopper-Pearson 95% CI [{ci.low:.3f}, {ci.high:.3f}])")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:3]])
