"""Benchmark: each voxel analysed with the subjects that have data there.

Not a test; prints figures measured in one run. N one-sample maps (true effect 1,
unit noise) on the 3 mm MNI152 brain mask of nilearn, each subject covering its
own mask: the brain mask shifted by up to one voxel along each axis, minus a
dropout ball of random radius in orbitofrontal cortex (0 outside, as FSL and
nilearn write them). Printed:

* coverage: voxels analysed with every subject (SPM/FLAME's intersection), with
  at least ``--min-subjects`` (the per-voxel fit), and the sets of present
  subjects (patterns);
* the mean estimate at the partially covered voxels, per-voxel against zeros
  taken as data (nilearn's and today's OLS), whose bias is the missing fraction;
* seconds of OLS and mixed-effects fits (``stats.coverage.fit_with_missing``)
  and of 1,000 permutations (``stats.permutation.coverage``) against today's
  code on complete data of the same size.

    python benchmarks/bench_coverage.py [--n-subjects 30] [--min-subjects 10]
"""

import argparse
import os
import time

import numpy as np
from scipy import ndimage


def subject_masks(brain, n_subjects, rng):
    """(n_subjects, n_voxels of the brain) bool: each subject's own coverage."""
    ball_centre = np.array([brain.shape[0] // 2, int(brain.shape[1] * 0.78),
                            int(brain.shape[2] * 0.3)])
    grid = np.indices(brain.shape).reshape(3, -1).T
    masks = []
    for _ in range(n_subjects):
        shifted = ndimage.shift(brain.astype(float), rng.integers(-1, 2, 3), order=0) > 0.5
        radius = rng.uniform(2, 6)
        ball = (np.linalg.norm(grid - ball_centre, axis=1) < radius).reshape(brain.shape)
        masks.append((shifted & ~ball)[brain])
    return np.array(masks)


def timed(call, *args, **kwargs):
    start = time.perf_counter()
    out = call(*args, **kwargs)
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=30,
                        help="one-sample maps simulated (default: 30)")
    parser.add_argument("--min-subjects", type=int, default=10,
                        help="subjects a voxel needs to be analysed (default: 10)")
    parser.add_argument("--n-perm", type=int, default=1000,
                        help="max-T patterns timed, sign flips and permutations (default: 1000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the simulated maps (default: 0)")
    args = parser.parse_args()

    from nilearn.datasets import load_mni152_brain_mask

    from nipype_secondlevel.stats import permutation as perm
    from nipype_secondlevel.stats.coverage import coverage_contrast_maps, fit_with_missing
    from nipype_secondlevel.stats.missing import mark_missing, missing_patterns
    from nipype_secondlevel.stats.permutation.coverage import coverage_permutation_test

    rng = np.random.default_rng(args.seed)
    brain = np.asarray(load_mni152_brain_mask(resolution=3).dataobj) > 0
    n, n_vox = args.n_subjects, int(brain.sum())
    present = subject_masks(brain, n, rng)
    effect = (1.0 + rng.standard_normal((n, n_vox))).astype(np.float32)
    variance = np.full((n, n_vox), 1.0, np.float32)
    written = np.where(present, effect, 0.0).astype(np.float32)  # as FSL and nilearn write
    Y, V = mark_missing(written, np.where(present, variance, 0.0))
    counts = present.sum(axis=0)
    print(f"load average {os.getloadavg()[0]:.1f}; {n} subjects, {n_vox} brain voxels (3 mm)")
    print(f"coverage: every subject {np.mean(counts == n):.1%} of the brain mask; at least "
          f"{args.min_subjects} {np.mean(counts >= args.min_subjects):.1%}; "
          f"{len(missing_patterns(present))} sets of present subjects")
    X = np.ones((n, 1))
    partial = (counts >= args.min_subjects) & (counts < n)
    fit, seconds = timed(fit_with_missing, X, Y, min_subjects=args.min_subjects)
    zeros_as_data = written.mean(axis=0)
    print(f"mean estimate at the {partial.sum()} partially covered voxels (truth 1): "
          f"per voxel {np.nanmean(fit.beta[0, partial]):.3f}, zeros as data "
          f"{zeros_as_data[partial].mean():.3f} (expected missing fraction "
          f"{1 - counts[partial].mean() / n:.3f})")
    _, complete = timed(fit_with_missing, X, effect)
    _, contrast_seconds = timed(coverage_contrast_maps, fit, [1.0])
    print(f"OLS: {seconds:.2f} s with missing values (+{contrast_seconds:.2f} s the contrast), "
          f"{complete:.2f} s complete data (today's path)")
    part = slice(0, 20_000)
    _, mixed = timed(fit_with_missing, X, Y[:, part], V[:, part], method="mixed",
                     min_subjects=args.min_subjects)
    _, mixed_complete = timed(fit_with_missing, X, effect[:, part], variance[:, part],
                              method="mixed")
    print(f"mixed effects, 20,000 voxels: {mixed:.2f} s with missing values, "
          f"{mixed_complete:.2f} s complete data")
    group = np.arange(n) % 2
    two = np.column_stack([group, 1 - group]).astype(float)
    for name, design, contrast, scheme in (("sign flips", X, [1.0], "sign-flip"),
                                           ("permutations", two, [1.0, -1.0], "permute")):
        _, ours = timed(coverage_permutation_test, Y, design, contrast, n_perm=args.n_perm,
                        scheme=scheme, min_subjects=args.min_subjects)
        _, today = timed(perm.permutation_test, effect, design, contrast, n_perm=args.n_perm,
                         scheme=scheme)
        print(f"{args.n_perm} {name}, max-T: {ours:.1f} s with missing values, "
              f"{today:.1f} s complete data (today's kernels)")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
