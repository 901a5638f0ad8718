"""Scaling: wall time and peak memory of a one-sample analysis of N subjects at 2 mm.

Simulates N one-sample maps (one per subject) on the MNI152 2 mm grid inside
nilearn's MNI152 brain mask, then, for each N, runs the package's workflow
(mask -> masked data -> chunked OLS -> contrast) in a fresh process with
``--mem-gb`` as the estimation's memory budget, and prints:

- wall time per N (and per 1,000 maps, to see that it grows linearly);
- peak memory of the whole run: the largest resident set of the process tree
  sampled every 50 ms (sum over all its processes), and the kernel's maximum
  resident set of the run and its children (``wait4`` ru_maxrss);
- at the smallest N, the largest |z difference| with nilearn's ``SecondLevelModel``.

    python benchmarks/bench_scale.py [--sizes 250 500 1000 2000] [--mem-gb 2]
                                     [--base /tmp/bench_scale] [--keep]

Targets: peak <= 4 GiB at N = 2000 with --mem-gb 2; time linear in N.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

GIB = 2**30


# --- simulation ------------------------------------------------------------------------

def brain_mask():
    from nilearn.datasets import load_mni152_brain_mask

    img = load_mni152_brain_mask(resolution=2)
    return np.asarray(img.dataobj) > 0, img.affine


def smooth_fields(mask, n_fields, seed):
    """Smooth unit-variance random fields inside the mask (shared spatial patterns)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(n_fields):
        field = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma=3.0)
        field = field[mask]
        fields.append(((field - field.mean()) / field.std()).astype(np.float32))
    return np.stack(fields)


def simulate(folder, n_maps, seed=0, workers=2):
    """Write n_maps one-sample maps (float32 .nii.gz); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"sub-{i + 1:05d}_effect.nii.gz" for i in range(n_maps)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        chunks = [todo[w::workers] for w in range(workers)]
        procs = [
            subprocess.Popen([sys.executable, __file__, "--simulate-into", str(folder),
                              "--seed", str(seed), "--indices", *map(str, chunk)])
            for chunk in chunks if chunk
        ]
        if any(p.wait() for p in procs):
            raise SystemExit("simulation failed")
    return [str(p) for p in paths]


def simulate_worker(folder, indices, seed):
    import nibabel as nib

    mask, affine = brain_mask()
    fields = smooth_fields(mask, 8, seed)
    # A positive effect in a sphere of 10 voxels radius (occipital), 0.5 SD.
    grid = np.indices(mask.shape)
    centre = np.array([49, 30, 40])[:, None, None, None]
    effect = (np.sqrt(((grid - centre) ** 2).sum(0)) < 10)[mask].astype(np.float32) * 0.5
    del grid
    for i in indices:
        # shared smooth patterns plus independent noise at every voxel (which gzip
        # compresses no better than real maps' noise)
        rng = np.random.default_rng([seed, i])
        values = effect + rng.standard_normal(len(fields)).astype(np.float32) @ fields * 0.7
        values += rng.standard_normal(len(values), dtype=np.float32)
        volume = np.zeros(mask.shape, np.float32)
        volume[mask] = values
        path = folder / f"sub-{i + 1:05d}_effect.nii.gz"
        tmp = path.with_name(f".{path.name}.part.nii.gz")
        nib.save(nib.Nifti1Image(volume, affine), tmp)
        os.replace(tmp, path)


# --- one run of the workflow (child process) --------------------------------------------

def build_workflow(paths, design, mem_gb):
    from nipype.pipeline import engine as pe

    from nipype_secondlevel.interfaces import Contrast, EstimateOLS, GroupMask, MaskedData

    wf = pe.Workflow(name=f"one_sample_{len(paths)}_wf")
    mask = pe.Node(GroupMask(in_files=paths, strategy="mni152"), name="mask")
    data = pe.Node(MaskedData(in_files=paths), name="masked_data")
    estimate = pe.Node(EstimateOLS(design_matrix=design, mem_gb=mem_gb), name="estimate",
                       mem_gb=mem_gb)
    contrast = pe.Node(Contrast(design_matrix=design, weights=[1.0], contrast_name="mean"),
                       name="contrast")
    wf.connect([
        (mask, data, [("mask_file", "mask_file")]),
        (mask, estimate, [("mask_file", "mask_file")]),
        (data, estimate, [("data_file", "data_file")]),
        (mask, contrast, [("mask_file", "mask_file")]),
        (estimate, contrast, [("beta", "beta"), ("residual_variance", "residual_variance"),
                              ("dof", "dof")]),
    ])
    return wf


def child_run(paths_file, work_dir, mem_gb):
    import pandas as pd

    from nipype_secondlevel.runtime.execution import run_workflow

    paths = Path(paths_file).read_text().split()
    design = Path(work_dir) / "design.tsv"
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"intercept": np.ones(len(paths))}).to_csv(design, sep="\t", index=False)
    wf = build_workflow(paths, str(design), mem_gb)
    run_workflow(wf, work_dir, progress=False)
    node_dir = Path(work_dir) / wf.name
    print(json.dumps({
        "z_map": str(node_dir / "contrast" / "contrast-mean_stat-z_statmap.nii.gz"),
        "mask": str(node_dir / "mask" / "desc-group_mask.nii.gz"),
    }))


# --- measuring ----------------------------------------------------------------------------

def tree_rss(pid):
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measured_run(cmd):
    """Run ``cmd``; return (stdout, wall seconds, sampled tree peak, wait4 maxrss) in bytes."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    return out, seconds, peak[0], usage.ru_maxrss * 1024


def compare_with_nilearn(paths, z_map, mask):
    import nibabel as nib
    import pandas as pd
    from nilearn.glm.second_level import SecondLevelModel

    design = pd.DataFrame({"intercept": np.ones(len(paths))})
    model = SecondLevelModel(mask_img=mask).fit(paths, design_matrix=design)
    expected = model.compute_contrast("intercept", output_type="z_score").get_fdata()
    inside = nib.load(mask).get_fdata() > 0
    ours = nib.load(z_map).get_fdata()
    return float(np.abs(ours[inside] - expected[inside]).max()), int(inside.sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--mem-gb", type=float, default=2.0)
    parser.add_argument("--base", type=Path, default=Path("/tmp/bench_scale"))
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    parser.add_argument("--seed", type=int, default=0)
    # internal: the simulation workers and the measured child runs
    parser.add_argument("--simulate-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--indices", type=int, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("PATHS", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    if args.simulate_into:
        return simulate_worker(args.simulate_into, args.indices, args.seed)
    if args.child:
        return child_run(args.child[0], args.child[1], args.mem_gb)

    sizes = sorted(args.sizes)
    t0 = time.perf_counter()
    paths = simulate(args.base / "maps", max(sizes), seed=args.seed)
    print(f"simulated {len(paths)} maps (MNI152 2 mm grid, float32 .nii.gz) in "
          f"{time.perf_counter() - t0:.0f} s (reused if present)", flush=True)
    rows = []
    first = None
    for n in sizes:
        work = args.base / f"work_{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        list_file = work / "paths.txt"
        list_file.write_text("\n".join(paths[:n]))
        cmd = [sys.executable, __file__, "--mem-gb", str(args.mem_gb),
               "--child", str(list_file), str(work)]
        out, seconds, tree_peak, maxrss = measured_run(cmd)
        result = json.loads(out.strip().splitlines()[-1])
        data_file = next(work.rglob("masked_data.npy"))
        rows.append((n, seconds, tree_peak, maxrss, data_file.stat().st_size))
        print(f"N = {n:5d}: {seconds:7.1f} s ({1000 * seconds / n:5.1f} s per 1000 maps), "
              f"peak memory {tree_peak / GIB:.2f} GiB (process tree, sampled), "
              f"{maxrss / GIB:.2f} GiB (ru_maxrss); masked data file "
              f"{data_file.stat().st_size / GIB:.2f} GiB", flush=True)
        if first is None:
            first = (n, result)
        elif not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    n, result = first
    diff, n_vox = compare_with_nilearn(paths[:n], result["z_map"], result["mask"])
    print(f"N = {n}: max |z - nilearn SecondLevelModel z| = {diff:.2e} over {n_vox} voxels")
    if len(rows) > 1:
        (n0, s0, *_), (n1, s1, *_) = rows[0], rows[-1]
        print(f"time ratio N={n1}/N={n0}: {s1 / s0:.2f} (linear: {n1 / n0:.2f}); "
              f"peak at N={n1}: {max(rows[-1][2], rows[-1][3]) / GIB:.2f} GiB "
              f"(target <= 4 GiB with --mem-gb {args.mem_gb:g})")
    if not args.keep:
        shutil.rmtree(args.base / f"work_{n}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
