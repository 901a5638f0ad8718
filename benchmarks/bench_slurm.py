"""Demo wall time on SLURM, SLURMGraph and MultiProc, from one run on one machine.

Starts the project's one-node cluster (scripts/slurm_cluster_start.sh, root) if it is
not up, runs the demo cold with each plugin in a fresh work folder (the plugins one
after the other, ``--rounds`` times), and prints seconds and the ratio to the MultiProc
run of the same round, with the machine's load average:

    python benchmarks/bench_slurm.py [--poll-interval 0.2] [--rounds 1] [--plugins SLURM]

On SLURM, nodes left at nipype's default resource hints run in the submitting process
and the heavy ones (masked data, estimation, permutation chunks) as jobs with their own
requests; SLURMGraph submits every node as a job.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import timed_command

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll-interval", type=float, default=0.2,
                        help="seconds between queue polls")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every plugin (medians over them)")
    parser.add_argument("--plugins", nargs="+", default=["SLURM", "SLURMGraph"],
                        choices=["SLURM", "SLURMGraph"],
                        help="the SLURM plugins timed (against MultiProc)")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm_cluster_start.sh")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plugins = ["MultiProc", *args.plugins]
    seconds = {plugin: [] for plugin in plugins}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # on the filesystem jobs see
        for round_ in range(args.rounds):
            for plugin in plugins:
                folder = f"{tmp}/{round_}/{plugin}"
                seconds[plugin].append(timed_command([
                    sys.executable, "-m", "nipype_secondlevel", "demo", "--quiet",
                    "--plugin", plugin, "--poll-interval", str(args.poll_interval),
                    "--out-dir", f"{folder}/out", "--work-dir", f"{folder}/work",
                ]))
                loads.append(os.getloadavg()[0])
    print(f"demo, 16 subjects, cold runs (whole processes), one-node SLURM cluster, "
          f"{args.rounds} round(s); 1-min load average {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores")
    for plugin in plugins:
        ratios = [s / m for s, m in zip(seconds[plugin], seconds["MultiProc"], strict=True)]
        print(f"  {plugin:<10} median {statistics.median(seconds[plugin]):6.1f} s   "
              f"ratio to MultiProc (same round) median {statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
