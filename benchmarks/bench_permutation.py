"""Benchmark: permutation inference of nipype_secondlevel vs nilearn.

Not a test; prints figures. One run on the same data: 16 subjects' paired
differences (smooth Gaussian noise plus a small blob) on the 3 mm grid
53 x 63 x 46 inside nilearn's MNI152 brain mask resampled to that grid.

    python benchmarks/bench_permutation.py

nilearn runs with n_jobs=1: max-T on all 10,000 permutations, TFCE on a few
permutations (the difference of two runs, said so in the output). Total run
time is a few minutes.
"""

import resource
import time
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.datasets import load_mni152_brain_mask
from nilearn.glm.second_level import non_parametric_inference
from nilearn.image import resample_img
from scipy import ndimage

from nipype_secondlevel.stats import permutation as perm

N_SUBJECTS = 16
SHAPE = (53, 63, 46)
NILEARN_MAXT_PERM = 10_000
NILEARN_TFCE_PERM = 4


def brain_mask():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-78.0, -112.0, -70.0]
    img = resample_img(load_mni152_brain_mask(resolution=2),
                       target_affine=affine, target_shape=SHAPE,
                       interpolation="nearest", force_resample=True,
                       copy_header=True)
    return img.get_fdata() > 0, affine


def simulate(mask, seed=0):
    rng = np.random.default_rng(seed)
    blob = np.zeros(mask.shape)
    blob[20:26, 30:36, 25:31] = 0.8
    maps = []
    for _ in range(N_SUBJECTS):
        noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.2)
        maps.append(noise / noise[mask].std() + blob)
    return np.stack([m[mask] for m in maps]), maps


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def nilearn_run(maps, affine, mask_img, n_perm, tfce):
    imgs = [nib.Nifti1Image(m.astype(np.float32), affine) for m in maps]
    design = pd.DataFrame({"intercept": np.ones(N_SUBJECTS)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return non_parametric_inference(
            imgs, design_matrix=design, mask=mask_img, n_perm=n_perm,
            two_sided_test=True, n_jobs=1, tfce=tfce, random_state=0,
            verbose=0,
        )


def _chunk(args):
    model, data, plan, mask, start, stop = args
    return perm.null_chunk(model, data, plan, start, stop, mask)


def two_processes(model, data, plan, mask):
    """Two chunks in two worker processes, as MultiProc runs the MapNode."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(model, data, plan, mask, a, b) for a, b in perm.chunk_bounds(plan.n_perm, 2)]
    with ProcessPoolExecutor(2) as pool:
        return list(pool.map(_chunk, jobs))


def main():
    import os

    print(f"load average: {os.getloadavg()}")
    mask, affine = brain_mask()
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    Y, maps = simulate(mask)
    print(f"data: {N_SUBJECTS} subjects, grid {SHAPE}, "
          f"{int(mask.sum())} voxels in the MNI152 brain mask")
    model = perm.one_sample_model(N_SUBJECTS)
    data = perm.prepare_data(model, Y)

    # --- voxel max-T, 10,000 random sign flips (nilearn computes max-T only;
    # ours also with the uncorrected permutation p map, for information)
    plan = perm.plan_permutations(N_SUBJECTS, 10_000, seed=1)
    max_only = perm.PermutationOptions(uncorrected=False)
    # Load the compiled kernel once (numba's per-process start-up, like an import),
    # as nilearn's imports are also done before its timing starts.
    perm.null_chunk(model, data, plan, 0, 2, mask, max_only)
    print("\n(our kernel was loaded by one 2-permutation call before timing)")
    ours, _ = timed(lambda: perm.null_chunk(model, data, plan, 0, plan.n_perm, mask,
                                            max_only))
    with_unc, _ = timed(lambda: perm.null_chunk(model, data, plan, 0, plan.n_perm, mask))
    theirs, _ = timed(lambda: nilearn_run(maps, affine, mask_img,
                                          NILEARN_MAXT_PERM, tfce=False))
    theirs_10k = theirs * 10_000 / NILEARN_MAXT_PERM
    print("\nvoxel max-T, 10,000 sign flips")
    print(f"  ours:    {ours:8.2f} s")
    print(f"  nilearn: {theirs_10k:8.2f} s (all {NILEARN_MAXT_PERM} permutations timed)")
    print(f"  ratio:   {theirs_10k / ours:8.1f}x faster (target >= 50x)")
    print(f"  ours with the uncorrected p map too: {with_unc:.2f} s "
          f"({theirs_10k / with_unc:.1f}x)")

    # --- exhaustive enumeration of 2^16 = 65,536 patterns
    plan = perm.plan_permutations(N_SUBJECTS, 2**N_SUBJECTS)
    assert plan.exhaustive
    exhaustive, _ = timed(
        lambda: perm.null_chunk(model, data, plan, 0, plan.n_perm, mask))
    two, _ = timed(lambda: two_processes(model, data, plan, mask))
    print(f"\nexhaustive 65,536 sign patterns (max-T + uncorrected): "
          f"{exhaustive:.2f} s in one process; {two:.2f} s as 2 chunks in 2 "
          f"processes (target < 10 s on 2 cores)")

    # --- TFCE per permutation
    options = perm.PermutationOptions(tfce=True)
    plan = perm.plan_permutations(N_SUBJECTS, 10_000, seed=2)
    n_ours = 100
    ours_tfce, _ = timed(lambda: perm.null_chunk(
        model, data, plan, 0, n_ours, mask, options))
    ours_tfce /= n_ours
    one, _ = timed(lambda: nilearn_run(maps, affine, mask_img, 1, tfce=True))
    many, _ = timed(lambda: nilearn_run(maps, affine, mask_img,
                                        1 + NILEARN_TFCE_PERM, tfce=True))
    theirs_tfce = (many - one) / NILEARN_TFCE_PERM
    print("\nTFCE (two-sided, dh auto, 6-connectivity), per permutation")
    print(f"  ours:    {ours_tfce * 1e3:8.1f} ms (mean of {n_ours}; includes "
          f"t maps and max-T)")
    print(f"  nilearn: {theirs_tfce * 1e3:8.1f} ms (difference of runs with "
          f"{1 + NILEARN_TFCE_PERM} and 1 permutations, / "
          f"{NILEARN_TFCE_PERM})")
    print(f"  ratio:   {theirs_tfce / ours_tfce:8.1f}x faster (target >= 10x)")

    # --- clusters, for information
    options = perm.PermutationOptions(cluster_threshold=3.0)
    clusters, _ = timed(lambda: perm.null_chunk(
        model, data, plan, 0, n_ours, mask, options))
    print(f"\ncluster size + mass (t > 3.0), per permutation: "
          f"{clusters / n_ours * 1e3:.1f} ms")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process (ru_maxrss): {peak:.0f} MB")


if __name__ == "__main__":
    main()
