"""Mixed effects in bounded memory: peak memory of `run --estimation mixed` at a fixed --mem-gb.

Simulates N one-sample effect maps and their first-level variance maps inside
nilearn's MNI152 brain mask (at ``--resolution`` mm), then, for each N, runs the
whole command

    nipype-secondlevel run --inputs inputs.tsv --estimation mixed --mem-gb G

in a fresh process, and the same command with ``--estimation ols`` (the peer:
its estimate reads the masked data in voxel chunks too), and prints per N:

- wall time of each command and the ratio mixed / OLS;
- peak memory of each command: the largest resident set of the process tree
  sampled every 50 ms, and the kernel's maximum resident set (``wait4``
  ru_maxrss); the ratio mixed / OLS; the size of the masked effect and variance
  files, which the mixed estimate held whole before it read them in chunks.

    python benchmarks/bench_mixed_memory.py [--sizes 50 200 800] [--mem-gb 0.5]
                                            [--resolution 4] [--base /tmp/bench_mixed]

Target: at a fixed --mem-gb the mixed peak does not grow with N (it stays
within the OLS peak plus half of --mem-gb).
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import measured_run

GIB = 2**30


def simulate(folder, n_maps, resolution, seed=0):
    """Effect and variance maps (float32 .nii.gz) and the inputs table; reused if present.

    y = sqrt(s) z1 + sqrt(v) z2 in the brain, s = 0.5, v ~ U(0.2, 2) per voxel: no
    effect, so that the thresholded maps (and their cluster tables) are small.
    """
    import nibabel as nib
    import pandas as pd
    from nilearn.datasets import load_mni152_brain_mask

    folder.mkdir(parents=True, exist_ok=True)
    img = load_mni152_brain_mask(resolution=resolution)
    mask = np.asarray(img.dataobj) > 0
    rows = []
    for i in range(n_maps):
        effect = folder / f"sub-{i + 1:04d}_effect.nii.gz"
        variance = folder / f"sub-{i + 1:04d}_variance.nii.gz"
        rows.append({"subject": f"s{i + 1:04d}", "path": str(effect),
                     "variance_path": str(variance)})
        if effect.exists() and variance.exists():
            continue
        rng = np.random.default_rng([seed, i])
        v = np.zeros(mask.shape, np.float32)
        v[mask] = rng.uniform(0.2, 2.0, int(mask.sum()))
        y = np.zeros(mask.shape, np.float32)
        y[mask] = (np.sqrt(0.5) * rng.standard_normal(int(mask.sum()))
                   + np.sqrt(v[mask]) * rng.standard_normal(int(mask.sum())))
        nib.save(nib.Nifti1Image(v, img.affine), variance)
        nib.save(nib.Nifti1Image(y, img.affine), effect)
    return pd.DataFrame(rows), int(mask.sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800],
                        help="numbers of maps, one run each")
    parser.add_argument("--mem-gb", type=float, default=0.5, help="--mem-gb of the runs (GiB)")
    parser.add_argument("--resolution", type=int, default=4, help="grid (mm)")
    parser.add_argument("--base", type=Path, default=Path("/tmp/bench_mixed"),
                        help="folder of the simulated maps and work folders")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    sizes = sorted(args.sizes)
    t0 = time.perf_counter()
    maps = args.base / f"maps_{args.resolution}mm"
    table, n_vox = simulate(maps, max(sizes), args.resolution)
    print(f"load average: {os.getloadavg()}")
    print(f"{max(sizes)} effect and variance maps, {n_vox} voxels in the MNI152 brain mask "
          f"at {args.resolution} mm ({time.perf_counter() - t0:.0f} s to write or reuse); "
          f"--mem-gb {args.mem_gb:g}", flush=True)
    rows = []
    for n in sizes:
        inputs = args.base / f"inputs_{n}.tsv"
        table.iloc[:n].to_csv(inputs, sep="\t", index=False)
        figures = {}
        for estimation in ("ols", "mixed"):
            work = args.base / f"work_{estimation}_{n}"
            shutil.rmtree(work, ignore_errors=True)
            cmd = [sys.executable, "-m", "nipype_secondlevel", "run", "--inputs", str(inputs),
                   "--estimation", estimation, "--mem-gb", str(args.mem_gb),
                   "--mask-strategy", "coverage", "--quiet", "--out-dir", str(work / "out"),
                   "--work-dir", str(work / "work")]
            _, seconds, tree_peak, maxrss, _ = measured_run(cmd)
            figures[estimation] = (seconds, max(tree_peak, maxrss))
            data = sum(p.stat().st_size for p in work.rglob("masked_data.npy"))
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            print(f"N = {n:4d} {estimation:5s}: {seconds:6.1f} s, peak memory "
                  f"{tree_peak / GIB:.2f} GiB (process tree, sampled), {maxrss / GIB:.2f} GiB "
                  f"(ru_maxrss); masked data files {data / GIB:.2f} GiB", flush=True)
        (t_ols, m_ols), (t_mixed, m_mixed) = figures["ols"], figures["mixed"]
        rows.append((n, m_mixed))
        print(f"N = {n:4d}: mixed / OLS: time {t_mixed / t_ols:.2f}, peak memory "
              f"{m_mixed / m_ols:.2f}", flush=True)
    (n0, m0), (n1, m1) = rows[0], rows[-1]
    print(f"mixed peak at N = {n1} / at N = {n0}: {m1 / m0:.2f} (N ratio {n1 / n0:g}); "
          f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
