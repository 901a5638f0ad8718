"""Scaling: the whole ``nipype-secondlevel run`` command on N one-sample maps at 2 mm.

Simulates N one-sample maps (one per subject) on the MNI152 2 mm grid inside
nilearn's MNI152 brain mask (235,375 voxels), writes an inputs table, and for
each N runs ``nipype-secondlevel run --design one-sample --mask-strategy mni152
--mem-gb G`` cold (a fresh work folder) twice, ``--plugin Linear`` and ``--plugin
MultiProc --n-procs P``, alternately in the same run, and prints:

- wall time of the command per N and plugin, and the per-map cost and fixed cost
  fitted over the sizes (time = fixed + per-map x N), extrapolated to 5,000 and
  10,000 maps where they were not measured (disk or time; said so);
- the reading of the maps into the masked data file (the ``masked_data``
  MapNode over blocks of maps, from its jobs' start and end times): seconds,
  seconds per map, and the ratio Linear / MultiProc (two cores read about twice
  as fast when they are free); also the mask's own pass over the maps (the
  ``summarize_maps`` MapNode over blocks of maps, then ``mask``) and the
  stacking of the blocks;
- peak memory of the whole process tree (the command and its MultiProc
  workers): the largest sum of their proportional set sizes (a page shared with a
  forked worker counted once), sampled every 50 ms from /proc, and the kernel's
  maximum resident set of one process (ru_maxrss);
- the load average before each run (the machine is shared: compare the ratios
  of one run, not absolute times across runs);
- the reference: one plain Python process reading every map once with nibabel (the
  in-mask values of each, as nilearn's masker would), run before the command at each N;
  the whole command's time against it (issue 24's target: MultiProc on 2 cores <= 2.5x
  at 1,000 maps, <= 1.5x at 10,000);
- at the smallest N, the largest |z difference| with nilearn's ``SecondLevelModel``
  (when it fits at most NILEARN_CHECK_MAX maps: its memory grows with them);
- with ``--n-perm P``: after each plain run, the same command with ``--correction
  maxT --n-perm P`` (same plugin, a fresh work folder): its time against the plain
  run's, its permutation chunks' and merge's spans and the peak memory of its
  process tree;
- the disk: each run's work folder (its files, hard links counted once) and the least
  free space seen during the run; a run is stopped (and the script with it) when the
  free space falls below ``--min-free-gb``.

With ``--distinct K``, N > K inputs are K distinct simulated maps, each hard-linked
under new names (input i is map i mod K): simulating 10,000 distinct maps takes over an
hour on 2 cores. Both the plain read and the command read the same N files, mostly from
the page cache (K maps of 0.88 MiB), so the ratios then measure the decompression and
the pipeline, not the disk. The z check then fits nilearn on the K distinct maps: with
every map repeated N / K times the mean is the same and t scales by sqrt((N - 1) / (K - 1)).

    python benchmarks/bench_scale.py [--sizes 500 1000 2000] [--mem-gb 2] [--n-procs 2]
                                     [--plugins Linear MultiProc] [--n-perm 1000]
                                     [--base /work/scale-data] [--keep]
                                     [--distinct 1000] [--min-free-gb 5]

Targets: the whole ``run`` with MultiProc <= 2.5x the plain read at 1,000 maps and
<= 1.5x at 10,000; time linear in N; peak memory of the process tree <= --mem-gb (2 GiB);
MultiProc on 2 free cores reads the maps about 2x as fast as Linear; ``run
--correction maxT --n-perm 1000`` on 10,000 maps <= 2x the plain run, within
--mem-gb 2 (issue 24).
"""

import argparse
import datetime
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

GIB = 2**30
# nilearn's SecondLevelModel holds the maps in float64, several copies: 11 GiB and rising
# for 1,000 maps at 2 mm (stopped there on a 23 GiB machine); the z check fits at most this.
NILEARN_CHECK_MAX = 500


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


def inputs(base, n, distinct=0, seed=0):
    """Paths of n input maps: simulated, or with ``distinct`` (< n) that many simulated
    maps, input i a hard link to map i mod distinct (in ``base/linked-<distinct>``)."""
    if not distinct or n <= distinct:
        return simulate(base / "maps", n, seed=seed)
    maps = simulate(base / "maps", distinct, seed=seed)
    folder = base / f"linked-{distinct}"
    folder.mkdir(exist_ok=True)
    paths = [folder / f"sub-{i + 1:05d}_effect.nii.gz" for i in range(n)]
    for i, path in enumerate(paths):
        source = maps[i % distinct]
        if not (path.exists() and os.path.samefile(path, source)):
            path.unlink(missing_ok=True)
            os.link(source, path)
    return [str(p) for p in paths]


def repeated(n, distinct):
    """Whether n inputs are ``distinct`` maps each repeated the same number of times."""
    return bool(distinct) and n > distinct and n % distinct == 0


def describe_inputs(n, distinct):
    if not distinct or n <= distinct:
        return f"{n:,} distinct simulated maps"
    return (f"{n:,} inputs made of {distinct:,} distinct simulated maps, each hard-linked "
            f"{n / distinct:g} times under new names (the plain read and the run read the "
            f"same files, mostly from the page cache: the ratios measure decompression and "
            f"the pipeline, not the disk)")


# --- one run of the command ------------------------------------------------------------

def write_table(paths, path):
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"subject": [f"s{i + 1:05d}" for i in range(len(paths))],
                  "path": paths}).to_csv(path, sep="\t", index=False)
    return path


def command(table, work, out, plugin, mem_gb, n_procs, n_perm=0):
    cmd = [sys.executable, "-m", "nipype_secondlevel", "run", "--inputs", str(table),
           "--design", "one-sample", "--mask-strategy", "mni152", "--mem-gb", str(mem_gb),
           "--work-dir", str(work), "--out-dir", str(out), "--quiet", "--plugin", plugin]
    if n_perm:
        cmd += ["--correction", "maxT", "--n-perm", str(n_perm)]
    return cmd + (["--n-procs", str(n_procs)] if plugin == "MultiProc" else [])


def node_span(*folders):
    """Seconds from the first start to the last end of the jobs whose results are in
    ``folders`` (nodes, or a MapNode's jobs)."""
    from nipype.utils.filemanip import loadpkl

    starts, ends = [], []
    for result in (r for folder in folders for r in folder.rglob("result_*.pklz")):
        runtime = loadpkl(str(result)).runtime
        starts.append(datetime.datetime.fromisoformat(runtime.startTime))
        ends.append(datetime.datetime.fromisoformat(runtime.endTime))
    return (max(ends) - min(starts)).total_seconds()


# --- measuring ----------------------------------------------------------------------------

def tree_memory(pid):
    """Memory (bytes) of ``pid`` and all its descendants, from /proc: the sum of their
    proportional set sizes (Pss: a page shared by k processes counts 1/k in each, so
    the pages a forked MultiProc worker shares with the command count once), or of their
    resident sets (VmRSS) where the kernel gives no Pss."""
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
        for name, key in ((f"/proc/{p}/smaps_rollup", "Pss:"), (f"/proc/{p}/status", "VmRSS:")):
            try:
                with open(name) as f:
                    found = [int(line.split()[1]) * 1024 for line in f if line.startswith(key)]
            except OSError:
                continue
            if found:
                total += found[0]
                break
    return total


def free_bytes(folder):
    return shutil.disk_usage(folder).free


def folder_bytes(folder):
    """Disk used by the files under ``folder`` (allocated blocks; hard links once)."""
    seen, total = set(), 0
    for root, _, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


LEAST_FREE = {}  # the least free disk space seen during the last measured run, bytes


def measured_run(cmd, disk=None, min_free=0):
    """Run ``cmd``; return (stdout, wall seconds, sampled tree peak and wait4 maxrss in
    bytes, CPU seconds of the process and its waited-for children). With ``disk`` (a
    folder), the free space there is sampled too (``LEAST_FREE["bytes"]``); below
    ``min_free`` bytes the run is stopped (its process group) and the script exits."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    peak = [0]
    least = [free_bytes(disk) if disk else 0]
    stopped = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_memory(proc.pid))
            if disk:
                least[0] = min(least[0], free_bytes(disk))
                if least[0] < min_free and not stopped:
                    stopped.append(least[0])
                    os.killpg(proc.pid, 15)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    LEAST_FREE["bytes"] = least[0]
    if stopped:
        raise SystemExit(f"stopped: {stopped[0] / GIB:.1f} GiB free on the disk of {disk}, "
                         f"less than --min-free-gb {min_free / GIB:g}: {' '.join(cmd)}")
    if proc.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    return out, seconds, peak[0], usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def read_child(plugin, n, work, base, n_procs, distinct):
    """(child process) Read the first n maps into the masked data file, as the workflow does."""
    from nipype.pipeline import engine as pe

    from nipype_secondlevel.io.masked_data import MAPS_PER_READ_BLOCK, split_into_blocks
    from nipype_secondlevel.runtime.execution import run_workflow
    from nipype_secondlevel.workflows.group_analysis import masked_data_nodes

    paths = inputs(base, n, distinct)
    wf = pe.Workflow(name="read_wf")
    blocks, stack = masked_data_nodes("masked_data")
    blocks.inputs.in_files = split_into_blocks(paths, MAPS_PER_READ_BLOCK)
    blocks.inputs.mask_file = str(base / "read_ab_mask.nii.gz")
    wf.connect([(blocks, stack, [("data_file", "row_files")])])
    run_workflow(wf, work, plugin=plugin, n_procs=n_procs, progress=False)
    # CPU seconds of this process (with MultiProc: the scheduler) and of its workers
    own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    print(own.ru_utime + own.ru_stime, workers.ru_utime + workers.ru_stime)


def read_ab(n, base, n_procs, repeats, distinct):
    """Reading n maps into the masked data file (blocks, then their stack), Linear and
    MultiProc in turn (L M M L ...), each in a new process: {plugin: [(wall, cpu), ...]}."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    nib.save(load_mni152_brain_mask(resolution=2), base / "read_ab_mask.nii.gz")
    times = {"Linear": [], "MultiProc": []}
    order = [("Linear", "MultiProc"), ("MultiProc", "Linear")]
    for i in range(repeats):
        for plugin in order[i % 2]:
            work = base / f"read_ab_{plugin}"
            shutil.rmtree(work, ignore_errors=True)
            load = os.getloadavg()[0]
            out, wall, _, _, cpu = measured_run([
                sys.executable, __file__, "--base", str(base), "--n-procs", str(n_procs),
                "--distinct", str(distinct), "--read-child", plugin, str(n), str(work)])
            times[plugin].append((wall, cpu))
            own, workers = map(float, out.split()[-2:])
            print(f"  reading {n} maps, {plugin:9s} (load {load:4.1f}): {wall:6.1f} s wall, "
                  f"{cpu:6.1f} s CPU ({own:.1f} s in the command's process, {workers:.1f} s in "
                  f"its workers): {cpu / wall:.2f} cores busy", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    return times


def plain_child(n, base, distinct):
    """(child process) Read the n input maps once with nibabel, their in-mask values."""
    import nibabel as nib

    mask = np.asarray(nib.load(base / "read_ab_mask.nii.gz").dataobj) > 0
    for path in inputs(base, n, distinct):
        np.asarray(nib.load(path).dataobj, dtype=np.float32)[mask]


def measure_plain(n, base, distinct):
    """(wall, CPU seconds, load) of one plain process reading the n input maps."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    nib.save(load_mni152_brain_mask(resolution=2), base / "read_ab_mask.nii.gz")
    load = os.getloadavg()[0]
    _, wall, _, _, cpu = measured_run([sys.executable, __file__, "--base", str(base),
                                       "--distinct", str(distinct), "--plain-child", str(n)])
    print(f"N = {n:5d} plain read with nibabel, one process (load {load:4.1f}): {wall:7.1f} s "
          f"({1000 * wall / n:5.1f} ms per map, CPU {cpu:6.1f} s)", flush=True)
    return wall, cpu, load


def estimate_child(n, folder, mem_gb):
    """(child process) The estimate node (EstimateOLS) on a masked data file of n maps."""
    from nipype_secondlevel.interfaces import EstimateOLS

    os.chdir(folder)
    EstimateOLS(data_file=str(folder / "masked_data.npy"), mask_file=str(folder / "mask.nii.gz"),
                design_matrix=str(folder / "design.tsv"), mem_gb=mem_gb).run()


def measure_estimate(n, base, mem_gb):
    """Peak memory and time of the estimate node on n maps, from a masked data file of
    random rows written here (the largest node of the command; no maps needed)."""
    import nibabel as nib
    import pandas as pd
    from nilearn.datasets import load_mni152_brain_mask

    folder = base / f"estimate_{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    mask_img = load_mni152_brain_mask(resolution=2)
    nib.save(mask_img, folder / "mask.nii.gz")
    n_voxels = int((np.asarray(mask_img.dataobj) > 0).sum())
    pd.DataFrame({"intercept": np.ones(n)}).to_csv(folder / "design.tsv", sep="\t",
                                                     index=False)
    # Written by plain writes of a few rows at a time: a memory map would raise this
    # process's high-water mark, which a child started from it reports as its own
    # ru_maxrss (Linux copies it at fork and keeps it across exec).
    rng = np.random.default_rng(0)
    with open(folder / "masked_data.npy", "wb") as out:
        np.lib.format.write_array_header_1_0(out, {
            "descr": "<f4", "fortran_order": False, "shape": (n, n_voxels)})
        for start in range(0, n, 32):
            rows = rng.standard_normal((min(32, n - start), n_voxels), dtype=np.float32)
            out.write(rows.tobytes())
    load = os.getloadavg()[0]
    _, seconds, tree_peak, maxrss, cpu = measured_run([
        sys.executable, __file__, "--mem-gb", str(mem_gb), "--base", str(base),
        "--estimate-child", str(n)])
    print(f"estimate node alone, N = {n:,} (a {n * n_voxels * 4 / GIB:.1f} GiB masked data "
          f"file of random rows; load {load:4.1f}): {seconds:.0f} s, CPU {cpu:.0f} s, peak "
          f"memory {tree_peak / GIB:.2f} GiB (sampled), {maxrss / GIB:.2f} GiB (ru_maxrss) "
          f"with --mem-gb {mem_gb:g}",
          flush=True)
    shutil.rmtree(folder, ignore_errors=True)


def compare_with_nilearn(paths, z_map, mask, distinct=0):
    """Largest |z - nilearn's z| in the mask, and the mask's voxels. With ``distinct``
    maps each repeated len(paths) / distinct times (in order), nilearn fits the distinct
    ones and its t is rescaled: same mean, sums of squares x r, so t x sqrt((N-1)/(K-1)),
    then z from Student's t with N - 1 degrees of freedom."""
    import nibabel as nib
    import pandas as pd
    from nilearn.glm.second_level import SecondLevelModel
    from scipy import stats

    n = len(paths)
    rescale = repeated(n, distinct)
    # nilearn 0.14 checks a list's fields of view pairwise, loading each path anew for
    # each pair (quadratic: hours at 1,000 paths); images loaded once compare at once.
    fitted = [nib.load(p) for p in (paths[:distinct] if rescale else paths)]
    design = pd.DataFrame({"intercept": np.ones(len(fitted))})
    model = SecondLevelModel(mask_img=mask).fit(fitted, design_matrix=design)
    if rescale:
        t = model.compute_contrast("intercept", output_type="stat").get_fdata()
        t *= np.sqrt((n - 1) / (distinct - 1))
        expected = np.where(t > 0, stats.norm.isf(stats.t.sf(t, n - 1)),
                            stats.norm.ppf(stats.t.cdf(t, n - 1)))
    else:
        expected = model.compute_contrast("intercept", output_type="z_score").get_fdata()
    inside = nib.load(mask).get_fdata() > 0
    ours = nib.load(z_map).get_fdata()
    return float(np.abs(ours[inside] - expected[inside]).max()), int(inside.sum())


def fit_line(sizes, seconds):
    """(fixed seconds, seconds per map) of seconds = fixed + per_map * N, least squares."""
    per_map, fixed = np.polyfit(np.asarray(sizes, float), np.asarray(seconds, float), 1)
    return fixed, per_map


def measure(n, paths, args, plugin, n_perm=0):
    """One cold run of the command on the first n maps (with ``n_perm``: maxT
    permutations); a dict of figures."""
    folder = args.base / (f"run_{n}_{plugin}" + (f"_maxT{n_perm}" if n_perm else ""))
    shutil.rmtree(folder, ignore_errors=True)
    table = write_table(paths[:n], folder / "inputs.tsv")
    work, out = folder / "work", folder / "out"
    load = os.getloadavg()[0]
    free_before = free_bytes(args.base)
    _, seconds, tree_peak, maxrss, cpu = measured_run(
        command(table, work, out, plugin, args.mem_gb, args.n_procs, n_perm),
        disk=args.base, min_free=args.min_free_gb * GIB)
    analysis = work / "group_wf" / "group_analysis_wf"
    data_file = analysis / "stack_masked_data" / "masked_data.npy"
    reads = analysis / "masked_data" / "mapflow"
    reads = reads if reads.exists() else None
    row = {
        "n": n, "plugin": plugin, "load": load, "seconds": seconds, "cpu": cpu,
        "tree_peak": tree_peak, "maxrss": maxrss, "data_bytes": data_file.stat().st_size,
        # Each map read once (the mask's pass keeps the values: no masked_data MapNode)
        # or twice (before: the mask's pass, then the masked_data blocks).
        "read": node_span(analysis / "masked_data" / "mapflow") if reads else 0.0,
        "mask": node_span(analysis / "summarize_maps" / "mapflow", analysis / "mask"),
        "stack": node_span(analysis / "stack_masked_data"),
        "blocks": len(list(reads.iterdir())) if reads else 0,
        "z_map": out / "contrast-intercept_stat-z_statmap.nii.gz",
        "mask_file": out / "desc-group_mask.nii.gz", "folder": folder,
        "work_bytes": folder_bytes(work), "least_free": LEAST_FREE["bytes"],
    }
    what = f"maxT, {n_perm:,} permutations" if n_perm else "plain"
    print(f"N = {n:5d} {plugin:9s} {what} (load {load:4.1f}): {seconds:7.1f} s whole command "
          f"({1000 * seconds / n:5.1f} s per 1000 maps, CPU {cpu:6.1f} s); second read "
          f"{row['read']:6.1f} s ({row['blocks']} blocks), mask pass (first read) "
          f"{row['mask']:5.1f} s ({1000 * row['mask'] / n:5.1f} ms per map), masked data "
          f"(stacking) {row['stack']:4.1f} s; peak memory "
          f"{tree_peak / GIB:.2f} GiB (process tree), {maxrss / GIB:.2f} GiB (largest "
          f"process); masked data {row['data_bytes'] / GIB:.2f} GiB", flush=True)
    print(f"  disk: work folder {row['work_bytes'] / GIB:.2f} GiB "
          f"({row['work_bytes'] / n / 2**20:.2f} MiB per map); free {free_before / GIB:.1f} GiB "
          f"before the run, {row['least_free'] / GIB:.1f} GiB at least during it", flush=True)
    if n_perm:
        permutations = analysis / "permutation_wf"
        chunks = permutations / "chunks" / "mapflow"
        row["chunks"] = node_span(chunks)
        row["merge"] = node_span(permutations / "merge" / "mapflow")
        print(f"  permutations: {len(list(chunks.iterdir()))} chunks in "
              f"{row['chunks']:.1f} s, merge {row['merge']:.1f} s", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[500, 1000, 2000],
                        help="numbers of maps, one whole run each")
    parser.add_argument("--mem-gb", type=float, default=2.0, help="--mem-gb of the runs (GiB)")
    parser.add_argument("--n-procs", type=int, default=2, help="MultiProc's --n-procs")
    parser.add_argument("--base", type=Path, default=Path("/work/scale-data"),
                        help="folder of the simulated maps (kept between runs)")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    parser.add_argument("--plugins", nargs="+", default=["Linear", "MultiProc"],
                        choices=["Linear", "MultiProc"], help="plugins of the runs")
    parser.add_argument("--n-perm", type=int, default=0,
                        help="also run --correction maxT --n-perm N after each plain run "
                        "(0: not)")
    parser.add_argument("--read-maps", type=int, default=512,
                        help="maps of the paired reading A/B (0: skip it)")
    parser.add_argument("--read-repeats", type=int, default=4,
                        help="rounds of the reading comparison")
    parser.add_argument("--estimate-maps", type=int, nargs="*", default=[],
                        help="also run the estimate node alone on this many maps (e.g. 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated maps")
    parser.add_argument("--distinct", type=int, default=0,
                        help="simulate only this many distinct maps; larger N are hard links "
                        "to them under new names, input i to map i mod K (0: N distinct)")
    parser.add_argument("--min-free-gb", type=float, default=5.0,
                        help="stop a run (and the script) when the free disk space of --base "
                        "falls below this (GiB)")
    # internal: the simulation workers
    parser.add_argument("--simulate-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--indices", type=int, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--read-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--estimate-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plain-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    if args.simulate_into:
        return simulate_worker(args.simulate_into, args.indices, args.seed)
    if args.estimate_child:
        return estimate_child(args.estimate_child, args.base / f"estimate_{args.estimate_child}",
                              args.mem_gb)
    if args.plain_child:
        return plain_child(args.plain_child, args.base, args.distinct)
    if args.read_child:
        plugin, n, work = args.read_child
        return read_child(plugin, int(n), Path(work), args.base, args.n_procs, args.distinct)

    sizes = sorted(args.sizes)
    t0 = time.perf_counter()
    n_inputs = max(*sizes, args.read_maps, 1)
    paths = inputs(args.base, n_inputs, args.distinct, seed=args.seed)
    print(f"inputs: {describe_inputs(n_inputs, args.distinct)} (MNI152 2 mm grid, float32 "
          f".nii.gz, {os.path.getsize(paths[0]) / 2**20:.2f} MiB each), simulated in "
          f"{time.perf_counter() - t0:.0f} s (reused if present); {os.cpu_count()} cores, "
          f"--mem-gb {args.mem_gb:g}, MultiProc --n-procs {args.n_procs}; "
          f"{free_bytes(args.base) / GIB:.1f} GiB free on the disk", flush=True)
    if args.read_maps:
        times = read_ab(args.read_maps, args.base, args.n_procs, args.read_repeats,
                        args.distinct)
        (l_wall, l_cpu), (m_wall, m_cpu) = (np.sum(times[p], axis=0)
                                            for p in ("Linear", "MultiProc"))
        runs = len(times["Linear"]) * args.read_maps / 1000
        print(f"reading {args.read_maps} maps into the masked data file, "
              f"{args.read_repeats} runs in turn: Linear {l_wall / runs:.1f} ms per map "
              f"({l_cpu / runs:.1f} ms CPU), MultiProc --n-procs {args.n_procs} "
              f"{m_wall / runs:.1f} ms per map ({m_cpu / runs:.1f} ms CPU): wall Linear / "
              f"MultiProc = {l_wall / m_wall:.2f}x; cores busy {l_cpu / l_wall:.2f} vs "
              f"{m_cpu / m_wall:.2f} ({m_cpu / m_wall / (l_cpu / l_wall):.2f}x)", flush=True)
    for n in args.estimate_maps:
        measure_estimate(n, args.base, args.mem_gb)
    rows = {}
    first_plugin = args.plugins[0]
    for i, n in enumerate(sizes):
        # A/B in turn, the order alternating with N, so that load drifts fall on both.
        plugins = args.plugins if i % 2 == 0 else args.plugins[::-1]
        print(f"N = {n:5d}: {describe_inputs(n, args.distinct)}", flush=True)
        plain_wall, plain_cpu, _ = measure_plain(n, args.base, args.distinct)
        for plugin in plugins:
            rows[n, plugin] = measure(n, paths, args, plugin)
            if not args.keep:  # the outputs stay for the check against nilearn
                shutil.rmtree(rows[n, plugin]["folder"] / "work", ignore_errors=True)
            target = {1000: " (target <= 2.5x)", 10000: " (target <= 1.5x)"}.get(n, "")
            print(f"N = {n:5d} {plugin}: whole command / plain nibabel read = "
                  f"{rows[n, plugin]['seconds'] / plain_wall:.2f}x wall{target}, "
                  f"{rows[n, plugin]['cpu'] / plain_cpu:.2f}x CPU", flush=True)
            if args.n_perm:
                permuted = measure(n, paths, args, plugin, args.n_perm)
                print(f"N = {n:5d} {plugin}: maxT with {args.n_perm:,} permutations / plain "
                      f"= {permuted['seconds'] / rows[n, plugin]['seconds']:.2f}x (target <= "
                      f"2x at 10,000 maps); peak memory {permuted['tree_peak'] / GIB:.2f} GiB "
                      f"(process tree) with --mem-gb {args.mem_gb:g}", flush=True)
                rows[n, plugin, "maxT"] = permuted
                if not args.keep:
                    shutil.rmtree(permuted["folder"], ignore_errors=True)
            if not args.keep and (n != sizes[0] or plugin != first_plugin):
                shutil.rmtree(rows[n, plugin]["folder"], ignore_errors=True)
        if len(args.plugins) == 2:
            linear, multi = rows[n, "Linear"], rows[n, "MultiProc"]
            print(f"N = {n:5d}: reading Linear / MultiProc = "
                  f"{(linear['read'] + linear['mask']) / (multi['read'] + multi['mask']):.2f}x, whole "
                  f"command "
                  f"{linear['seconds'] / multi['seconds']:.2f}x", flush=True)

    if not sizes:
        return 0
    first = rows[sizes[0], first_plugin]
    fitted = args.distinct if repeated(sizes[0], args.distinct) else sizes[0]
    if fitted > NILEARN_CHECK_MAX:
        print(f"N = {sizes[0]}: z not checked against nilearn (its SecondLevelModel would fit "
              f"{fitted:,} maps, more than {NILEARN_CHECK_MAX} in memory)")
    else:
        diff, n_vox = compare_with_nilearn(paths[:sizes[0]], str(first["z_map"]),
                                           str(first["mask_file"]), args.distinct)
        how = (f" (nilearn fitted on the {args.distinct:,} distinct maps, t rescaled)"
               if repeated(sizes[0], args.distinct) else "")
        print(f"N = {sizes[0]}: max |z - nilearn SecondLevelModel z| = {diff:.2e} over "
              f"{n_vox} voxels{how}")
    if not args.keep:
        shutil.rmtree(first["folder"], ignore_errors=True)
    peak = max(max(r["tree_peak"], r["maxrss"]) for r in rows.values())
    print(f"peak memory over every run: {peak / GIB:.2f} GiB (target <= {args.mem_gb:g} GiB "
          f"with --mem-gb {args.mem_gb:g})")
    if len(sizes) < 2:
        return 0
    for plugin in args.plugins:
        fixed, per_map = fit_line(sizes, [rows[n, plugin]["seconds"] for n in sizes])
        _, read_per_map = fit_line(sizes, [rows[n, plugin]["read"] + rows[n, plugin]["mask"]
                                        for n in sizes])
        (n0, n1) = sizes[0], sizes[-1]
        ratio = rows[n1, plugin]["seconds"] / rows[n0, plugin]["seconds"]
        extrapolated = ", ".join(
            f"N = {n:,}: {fixed + per_map * n:,.0f} s" for n in (5000, 10000)
            if n not in sizes)
        print(f"{plugin}: whole command = {fixed:.1f} s + {1000 * per_map:.1f} ms per map "
              f"(reading {1000 * read_per_map:.1f} ms per map); time ratio N={n1}/N={n0} "
              f"{ratio:.2f} (linear: {n1 / n0:.2f})"
              + (f"; extrapolated (not measured here) {extrapolated}" if extrapolated else ""))
    data_per_map = rows[sizes[-1], first_plugin]["data_bytes"] / sizes[-1]
    map_bytes = os.path.getsize(paths[0])
    print(f"disk per map: {map_bytes / 2**20:.2f} MiB input + {data_per_map / 2**20:.2f} MiB "
          f"masked data (twice while it is read in several blocks: the blocks and their "
          f"stack); N = 10,000: {10000 * (map_bytes + 2 * data_per_map) / GIB:.0f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
