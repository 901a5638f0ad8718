"""Benchmark: permutation inference of nipype_secondlevel vs nilearn, and at large N.

Not a test; prints figures measured in one run.

Kernels (default): 16 subjects' paired differences (smooth Gaussian noise plus
a small blob) on the 3 mm grid 53 x 63 x 46 inside nilearn's MNI152 brain mask
resampled to it. nilearn runs with n_jobs=1 and one BLAS thread (as ours): max-T
on all 10,000 permutations, TFCE on a few (the difference of two runs, said so in
the output). A few minutes.

    python benchmarks/bench_permutation.py

TFCE kernel alone (``--tfce-kernel``): the largest TFCE of both tails of sign-flipped
t maps of the demo's simulated sample inside its mask (68,601 voxels), in maps per
second of CPU (``stats/spatial_lanes.py``, 4 maps at once); with ``--against REV`` the
kernel of git revision REV (its ``spatial_lanes`` or, before it, its ``spatial_kernels``)
runs on the same maps in turn (its maxima must be bit-identical) and the ratio of CPU
times is printed (issue 24's target: >= 2 against the kernel before the change).

    python benchmarks/bench_permutation.py --tfce-kernel [--against main] [--maps 200]

Large N (``--large-n 2000``): N one-sample maps at 2 mm inside the MNI152 brain
mask written as the masked data file, then the permutation sub-workflow (plan,
chunk, merge; Linear) with 1,000 max-T permutations in a fresh process whose
peak resident memory (``wait4`` ru_maxrss) is printed against ``--mem-gb``.

    python benchmarks/bench_permutation.py --large-n 2000 --mem-gb 1 [--base /tmp/bench_perm]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

N_SUBJECTS = 16
SHAPE = (53, 63, 46)
NILEARN_MAXT_PERM = 10_000
NILEARN_TFCE_PERM = 4
GIB = 2**30


def brain_mask():
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-78.0, -112.0, -70.0]
    img = resample_img(load_mni152_brain_mask(resolution=2), target_affine=affine,
                       target_shape=SHAPE, interpolation="nearest", force_resample=True,
                       copy_header=True)
    return img.get_fdata() > 0, affine


def simulate(mask, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    blob = np.zeros(mask.shape)
    blob[20:26, 30:36, 25:31] = 0.8
    maps = []
    for _ in range(N_SUBJECTS):
        noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.2)
        maps.append(noise / noise[mask].std() + blob)
    return np.stack([m[mask] for m in maps]), maps


def timed(fn, repeats=1):
    """Smallest wall time of ``repeats`` calls, and the last result."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def wall_and_cpu(fn):
    """(wall, CPU time of this process) of one call: the CPU time is less moved by
    other work on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def paired(fn_a, fn_b, repeats=5):
    """A and B in turn: medians of wall times, of the ratios B / A pair by pair, in
    wall and in CPU time of this process (robust to other work on the machine)."""
    walls, cpus = [], []
    for _ in range(repeats):
        pair_wall, pair_cpu = [], []
        for fn in (fn_a, fn_b):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            pair_wall.append(time.perf_counter() - wall)
            pair_cpu.append(time.process_time() - cpu)
        walls.append(pair_wall)
        cpus.append(pair_cpu)
    walls, cpus = np.array(walls), np.array(cpus)
    return (np.median(walls, axis=0), np.median(walls[:, 1] / walls[:, 0]),
            np.median(cpus[:, 1] / cpus[:, 0]))


def nilearn_run(maps, affine, mask_img, n_perm, tfce):
    import nibabel as nib
    import pandas as pd
    from nilearn.glm.second_level import non_parametric_inference
    from threadpoolctl import threadpool_limits

    imgs = [nib.Nifti1Image(m.astype(np.float32), affine) for m in maps]
    design = pd.DataFrame({"intercept": np.ones(N_SUBJECTS)})
    # one BLAS thread, as our chunks (threads of small products on shared cores
    # cost far more than they gain)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")
        return non_parametric_inference(
            imgs, design_matrix=design, mask=mask_img, n_perm=n_perm, two_sided_test=True,
            n_jobs=1, tfce=tfce, random_state=0, verbose=0)


def _chunk(args):
    from nipype_secondlevel.stats import permutation as perm

    model, Y, plan, start, stop = args
    return perm.null_chunk(model, Y, plan, start, stop)


def two_processes(model, Y, plan):
    """Two chunks in two worker processes, as MultiProc runs the MapNode."""
    from concurrent.futures import ProcessPoolExecutor

    from nipype_secondlevel.stats import permutation as perm

    jobs = [(model, Y, plan, a, b) for a, b in perm.chunk_bounds(plan.n_perm, 2)]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_chunk, [(model, Y, plan, 0, 2)] * 2))  # start-up, kernel load
        start = time.perf_counter()
        out = list(pool.map(_chunk, jobs))
        return time.perf_counter() - start, out


def kernels():
    import nibabel as nib

    from nipype_secondlevel.stats import permutation as perm

    print(f"load average: {os.getloadavg()}")
    mask, affine = brain_mask()
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    Y, maps = simulate(mask)
    print(f"data: {N_SUBJECTS} subjects, grid {SHAPE}, "
          f"{int(mask.sum())} voxels in the MNI152 brain mask")
    model = perm.one_sample_model(N_SUBJECTS)

    # --- voxel max-T, 10,000 random sign flips, without / with the uncorrected map
    plan = perm.plan_permutations(N_SUBJECTS, 10_000, seed=1)
    max_only = perm.PermutationOptions(uncorrected=False)
    both = perm.PermutationOptions()
    # Load the compiled kernel once (numba's per-process start-up, like an import).
    perm.null_chunk(model, Y, plan, 0, 2, mask, both)
    print("\n(our kernel was loaded by one 2-permutation call before timing; ours: "
          "medians of 5 alternating runs)")
    (ours, with_unc), wall_ratio, cpu_ratio = paired(
        lambda: perm.null_chunk(model, Y, plan, 0, plan.n_perm, mask, max_only),
        lambda: perm.null_chunk(model, Y, plan, 0, plan.n_perm, mask, both))
    theirs, _ = timed(lambda: nilearn_run(maps, affine, mask_img, NILEARN_MAXT_PERM, False))
    print("\nvoxel max-T, 10,000 sign flips")
    print(f"  ours, max-T only:           {ours:8.2f} s")
    print(f"  ours, with uncorrected map: {with_unc:8.2f} s  (+{100 * (wall_ratio - 1):.0f}% "
          f"wall, +{100 * (cpu_ratio - 1):.0f}% CPU time, pair by pair; target <= +50%)")
    print(f"  nilearn (max-T only):       {theirs:8.2f} s (all {NILEARN_MAXT_PERM} "
          "permutations timed)")
    print(f"  ratio nilearn / ours:       {theirs / ours:8.1f}x (max-T only), "
          f"{theirs / with_unc:.1f}x (with the uncorrected map)")

    # --- exhaustive enumeration of 2^16 = 65,536 patterns
    plan = perm.plan_permutations(N_SUBJECTS, 2**N_SUBJECTS)
    assert plan.exhaustive
    one = wall_and_cpu(lambda: perm.null_chunk(model, Y, plan, 0, plan.n_perm, mask, both))
    two, _ = two_processes(model, Y, plan)
    print(f"\nexhaustive 65,536 sign patterns (max-T + uncorrected): {one[0]:.2f} s in one "
          f"process ({one[1]:.2f} s CPU); {two:.2f} s as 2 chunks in 2 processes (target "
          f"<= 5 s on 2 cores; speed-up {one[0] / two:.2f}x)")

    # --- TFCE per permutation
    options = perm.PermutationOptions(tfce=True)
    plan = perm.plan_permutations(N_SUBJECTS, 10_000, seed=2)
    n_ours = 200
    perm.null_chunk(model, Y, plan, 0, 2, mask, options)  # loads the TFCE kernels
    ours_tfce = wall_and_cpu(lambda: perm.null_chunk(model, Y, plan, 0, n_ours, mask, options))
    ours_tfce /= n_ours
    one = wall_and_cpu(lambda: nilearn_run(maps, affine, mask_img, 1, tfce=True))
    many = wall_and_cpu(lambda: nilearn_run(maps, affine, mask_img, 1 + NILEARN_TFCE_PERM,
                                            tfce=True))
    theirs_tfce = (many - one) / NILEARN_TFCE_PERM
    print("\nTFCE (two-sided, dh auto, 6-connectivity), per permutation (wall, CPU)")
    print(f"  ours:    {ours_tfce[0] * 1e3:8.1f} ms {ours_tfce[1] * 1e3:8.1f} ms CPU (mean of "
          f"{n_ours}; includes t maps, max-T and the uncorrected counts)")
    print(f"  nilearn: {theirs_tfce[0] * 1e3:8.1f} ms {theirs_tfce[1] * 1e3:8.1f} ms CPU "
          f"(difference of runs with {1 + NILEARN_TFCE_PERM} and 1 permutations, "
          f"/ {NILEARN_TFCE_PERM})")
    print(f"  ratio:   {theirs_tfce[0] / ours_tfce[0]:8.1f}x faster (wall), "
          f"{theirs_tfce[1] / ours_tfce[1]:.1f}x (CPU); target >= 100x")
    from nipype_secondlevel.stats.permutation.repeats import (
        balanced_chunk_bounds,
        chunk_work,
        pattern_classes,
    )

    demo_plan = perm.plan_permutations(N_SUBJECTS, 10_000)  # the demo's seed
    classes = pattern_classes(demo_plan, True)
    computed = int(np.count_nonzero(classes[1]))
    print(f"  maps computed of the demo's 10,000 two-sided patterns: {computed:,} "
          f"({computed / demo_plan.n_perm:.3f}; the rest repeat or negate one of them)")
    larger = [max(chunk_work(classes, a, b).own.size for a, b in bounds)
              for bounds in (balanced_chunk_bounds(demo_plan, 2, True),
                             perm.chunk_bounds(demo_plan.n_perm, 2))]
    print(f"  the larger of the demo's 2 chunks computes {larger[0]:,} of them (half: "
          f"{-(-computed // 2):,}), {larger[0] / larger[1]:.3f} of the {larger[1]:,} of the "
          "larger of 2 chunks of equal length (the wall time of the chunks on 2 cores)")

    # --- clusters, for information
    options = perm.PermutationOptions(cluster_threshold=3.0)
    perm.null_chunk(model, Y, plan, 0, 2, mask, options)  # loads the cluster kernels
    clusters = wall_and_cpu(lambda: perm.null_chunk(model, Y, plan, 0, n_ours, mask, options))
    print(f"\ncluster size + mass (t > 3.0), per permutation: "
          f"{clusters[0] / n_ours * 1e3:.1f} ms ({clusters[1] / n_ours * 1e3:.1f} ms CPU)")
    print(f"\nload average at the end: {os.getloadavg()}")


# --- the TFCE kernel alone ------------------------------------------------------------

def demo_t_maps(n_maps, seed=3):
    """Sign-flipped one-sample t maps of the demo's paired differences in its mask."""
    from nipype_secondlevel.datasets.simulation import localizer_brain_mask, simulate_paired_sample

    mask, affine = localizer_brain_mask()
    maps, _ = simulate_paired_sample(mask, affine)
    diff = (maps[:, 0] - maps[:, 1])[:, mask].astype(float)
    n = diff.shape[0]
    flips = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_maps, n))
    mean = flips @ diff / n
    sd = np.sqrt((np.sum(diff * diff, axis=0) - n * mean * mean) / (n - 1))
    return mask, np.ascontiguousarray(mean / sd * np.sqrt(n))


def kernel_at(revision, folder):
    """The TFCE maxima's kernel of git revision ``revision``: its
    ``stats/spatial_kernels.py`` and, where it has one, ``stats/spatial_lanes.py``,
    imported as a package in ``folder`` (their own numba cache there); the module of
    the two that holds ``tfce_max_batch``."""
    import importlib

    root = Path(__file__).resolve().parents[1]
    name = "kernels_" + "".join(c if c.isalnum() else "_" for c in revision)
    package = folder / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").touch()
    for module in ("spatial_kernels", "spatial_lanes"):
        shown = subprocess.run(["git", "-C", str(root), "show",
                                f"{revision}:nipype_secondlevel/stats/{module}.py"],
                               check=False, capture_output=True, text=True)
        if shown.returncode:  # no such file at that revision
            continue
        path = package / f"{module}.py"
        if not path.exists() or path.read_text() != shown.stdout:
            path.write_text(shown.stdout)
        found = module
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"{name}.{found}")


def tfce_kernel(args):
    from nipype_secondlevel.stats import spatial, spatial_lanes

    print(f"load average: {os.getloadavg()}")
    mask, t = demo_t_maps(args.maps)
    graph = spatial.voxel_graph(mask)
    steps = [spatial.tfce_thresholds(top) for top in spatial._tops(t, "two-sided")]
    kernel_args = (t, graph.neighbours, graph.forward, np.stack(steps),
                   np.array([s.size for s in steps]), True, True, spatial.TFCE_E,
                   spatial.TFCE_H)
    ours = spatial_lanes.tfce_max_batch(*kernel_args)  # loads the kernel
    assert np.array_equal(ours, spatial.tfce_maxima(t, graph, "two-sided"))
    print(f"{args.maps} demo-like t maps (16 subjects, sign flips), {t.shape[1]} voxels, "
          "both tails, dh auto, 6-connectivity")
    if not args.against:
        cpu = min(wall_and_cpu(lambda: spatial_lanes.tfce_max_batch(*kernel_args))[1]
                  for _ in range(args.repeats))
        print(f"  ours: {args.maps / cpu:8.0f} maps per CPU second ({cpu / args.maps * 1e3:.2f} "
              f"ms per map; best of {args.repeats})")
    else:
        before = kernel_at(args.against, args.base / "kernels")
        theirs = before.tfce_max_batch(*kernel_args)
        same = np.array_equal(theirs, ours)
        worst = np.max(np.abs(theirs - ours) / np.maximum(np.abs(theirs), 1e-300))
        (ours_s, theirs_s), _, cpu_ratio = paired(
            lambda: spatial_lanes.tfce_max_batch(*kernel_args),
            lambda: before.tfce_max_batch(*kernel_args), repeats=args.repeats)
        print(f"  maxima equal to {args.against}'s: {'bit-identical' if same else 'NO'} "
              f"(largest relative difference {worst:.1e})")
        print(f"  ours: {args.maps / ours_s:8.0f} maps/s, {args.against}: "
              f"{args.maps / theirs_s:.0f} maps/s (wall, medians of {args.repeats} "
              "alternating runs)")
        print(f"  {args.against} / ours, CPU time pair by pair: {cpu_ratio:.2f}x "
              "(kept at >= 1.15; issue 24: >= 2 against its start)")
    print(f"load average at the end: {os.getloadavg()}")


# --- large N ---------------------------------------------------------------------------

def write_large_data(folder, n_maps, seed=0):
    """N one-sample maps at 2 mm in the MNI152 brain mask as the masked data file
    (float32, written row by row), the intercept design, the mask and a z map."""
    import nibabel as nib
    import pandas as pd
    from nilearn.datasets import load_mni152_brain_mask
    from scipy import ndimage

    folder.mkdir(parents=True, exist_ok=True)
    img = load_mni152_brain_mask(resolution=2)
    mask = np.asarray(img.dataobj) > 0
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), img.affine), folder / "mask.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.float32), img.affine), folder / "z.nii.gz")
    pd.DataFrame({"intercept": np.ones(n_maps)}).to_csv(folder / "design.tsv", sep="\t",
                                                        index=False)
    rng = np.random.default_rng(seed)
    fields = np.stack([ndimage.gaussian_filter(rng.standard_normal(mask.shape), 3.0)[mask]
                       for _ in range(8)])
    fields /= fields.std(axis=1, keepdims=True)
    n_vox = int(mask.sum())
    header = {"descr": "<f4", "fortran_order": False, "shape": (n_maps, n_vox)}
    with open(folder / "data.npy", "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        for _ in range(n_maps):
            row = rng.standard_normal(8) @ fields * 0.7 + rng.standard_normal(n_vox) + 0.05
            out.write(row.astype(np.float32).tobytes())
    return n_vox


def large_child(folder, work, mem_gb, n_perm):
    """Run the permutation sub-workflow on the large data (in a fresh process)."""
    from nipype_secondlevel.io.masked_data import masked_data_shape
    from nipype_secondlevel.runtime.execution import run_workflow
    from nipype_secondlevel.workflows import plan_analysis
    from nipype_secondlevel.workflows.inference import init_permutation_wf

    n_maps, _ = masked_data_shape(folder / "data.npy")
    plan = plan_analysis(rows=[{"subject": f"s{i}"} for i in range(n_maps)],
                         correction="maxT", n_perm=n_perm)
    wf = init_permutation_wf(plan, mem_gb=mem_gb, name="large_wf")
    inputs = wf.inputs.inputnode
    inputs.data_file, inputs.design_matrix = str(folder / "data.npy"), str(folder / "design.tsv")
    inputs.mask_file = str(folder / "mask.nii.gz")
    inputs.z_maps = [str(folder / "z.nii.gz")]
    start = time.perf_counter()
    run_workflow(wf, work, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def large_n(args):
    folder = args.base / f"data_{args.large_n}"
    t0 = time.perf_counter()
    if not (folder / "data.npy").exists():
        write_large_data(folder, args.large_n)
    from nipype_secondlevel.io.masked_data import masked_data_shape

    size = (folder / "data.npy").stat().st_size
    n_maps, n_vox = masked_data_shape(folder / "data.npy")
    print(f"load average: {os.getloadavg()}")
    print(f"masked data file: {n_maps} maps x {n_vox} voxels (2 mm MNI152 brain mask), "
          f"{size / GIB:.2f} GiB float32 ({time.perf_counter() - t0:.0f} s to write or reuse)")
    work = args.base / f"work_{args.large_n}"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", str(folder), str(work), "--mem-gb",
           str(args.mem_gb), "--n-perm", str(args.n_perm)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("the large-N run failed")
    inside = json.loads(out.strip().splitlines()[-1])["seconds"]
    peak = usage.ru_maxrss * 1024
    print(f"N = {args.large_n}, {args.n_perm} max-T sign flips (plan, chunk, merge; Linear): "
          f"{wall:.1f} s in all, {inside:.1f} s in the workflow; peak resident memory "
          f"{peak / GIB:.2f} GiB (ru_maxrss) with --mem-gb {args.mem_gb:g} "
          f"({'within' if peak <= args.mem_gb * GIB else 'ABOVE'} the budget)")
    print(f"load average at the end: {os.getloadavg()}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfce-kernel", action="store_true",
                        help="time the TFCE kernel alone on demo-like t maps")
    parser.add_argument("--against", metavar="REV",
                        help="TFCE kernel: compare with the kernel of this git revision")
    parser.add_argument("--maps", type=int, default=200, help="TFCE kernel: maps per run")
    parser.add_argument("--repeats", type=int, default=5, help="TFCE kernel: runs")
    parser.add_argument("--large-n", type=int, help="the large-N case with this many maps")
    parser.add_argument("--mem-gb", type=float, default=1.0,
                        help="large N: --mem-gb of the run (GiB)")
    parser.add_argument("--n-perm", type=int, default=1000, help="large N: max-T permutations")
    parser.add_argument("--base", type=Path, default=Path("/tmp/bench_permutation"),
                        help="large N: folder of the data and work folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    if args.child:
        return large_child(*args.child, args.mem_gb, args.n_perm)
    if args.large_n:
        return large_n(args)
    if args.tfce_kernel:
        return tfce_kernel(args)
    return kernels()


if __name__ == "__main__":
    sys.exit(main())
