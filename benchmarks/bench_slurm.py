"""Demo wall time on SLURM, SLURMGraph and MultiProc, from one run on one machine.

Starts the project's one-node cluster (scripts/slurm_cluster_start.sh, root) if it is
not up, runs the demo cold with each plugin in a fresh work folder, prints seconds
and the ratio to MultiProc:

    python benchmarks/bench_slurm.py [--poll-interval 0.2]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import timed_command

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll-interval", type=float, default=0.2)
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm_cluster_start.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = {}
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # on the filesystem jobs see
        for plugin in ("MultiProc", "SLURM", "SLURMGraph"):
            seconds[plugin] = timed_command([
                sys.executable, "-m", "nipype_secondlevel", "demo", "--quiet",
                "--plugin", plugin, "--poll-interval", str(args.poll_interval),
                "--out-dir", f"{tmp}/{plugin}/out", "--work-dir", f"{tmp}/{plugin}/work",
            ])
    print("demo, 16 subjects, cold runs (whole processes), one-node SLURM cluster")
    for plugin, s in seconds.items():
        print(f"  {plugin:<10} {s:6.1f} s   ratio to MultiProc {s / seconds['MultiProc']:.2f}")


if __name__ == "__main__":
    main()
