"""Time of the up-front checks of a large inputs table (issue 23: "a 100,000-row table ...").

    python benchmarks/bench_table_checks.py [--rows 100000] [--distinct]

Writes a one-sample table of ROWS maps (hard links to four 10x12x10 maps, or with
``--distinct`` as many files, each header different: no header is checked twice) whose
last map is 4D, and runs ``nipype-secondlevel run`` on it: the command reads the table,
checks every map's header and stops at the last one, with one line. Prints the wall and
CPU seconds of the whole command (imports included) and per map, and the load average.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def write_table(folder, rows, distinct):
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    (folder / "maps").mkdir(parents=True)
    shape = (2, 2, 2) if distinct else (10, 12, 10)
    sources = []
    if not distinct:  # a file has at most 65,000 hard links on ext4
        for k in range(4):
            sources.append(folder / f"source{k}.nii.gz")
            nib.save(nib.Nifti1Image(rng.normal(size=shape).astype(np.float32), affine),
                     sources[-1])
    lines = ["subject\tpath"]
    for i in range(rows - 1):
        path = folder / "maps" / f"m{i:06d}.nii.gz"
        if distinct:
            img = nib.Nifti1Image(rng.normal(size=shape).astype(np.float32), affine)
            img.header["descrip"] = f"map {i}".encode()
            nib.save(img, path)
        else:
            os.link(sources[i % 4], path)
        lines.append(f"s{i:06d}\t{path}")
    nib.save(nib.Nifti1Image(np.zeros((*shape, 2), np.float32), affine), folder / "last.nii.gz")
    lines.append(f"s{rows - 1:06d}\t{folder / 'last.nii.gz'}")
    (folder / "inputs.tsv").write_text("\n".join(lines) + "\n")
    return folder / "inputs.tsv"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the table")
    parser.add_argument("--distinct", action="store_true",
                        help="a file and a different header per row (else hard links)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = write_table(Path(tmp) / "data", args.rows, args.distinct)
        command = [sys.executable, "-m", "nipype_secondlevel", "run", "--inputs", str(table),
                   "--design", "one-sample", "--out-dir", f"{tmp}/out",
                   "--work-dir", f"{tmp}/work", "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{args.rows:,} rows ({'distinct files' if args.distinct else 'hard links'}): "
          f"exit {done.returncode}, {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({1e6 * cpu / args.rows:.0f} us CPU per map); load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"  {done.stderr.strip()}")


if __name__ == "__main__":
    main()
