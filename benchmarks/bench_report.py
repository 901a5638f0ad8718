"""Wall time the HTML report adds to the demo: cold run with and without the report.

Each run is a whole new process (imports included) with its own empty work folder,
on one machine, one after the other:

    python benchmarks/bench_report.py [--repeats 1] [--plugin Linear]

Target: with / without <= 1.20. Also prints the report node's own run time.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from timing import timed_command

RUN = r"""
import sys
from nipype_secondlevel.runtime.execution import run_workflow
from nipype_secondlevel.workflows import init_demo_wf

out, work, report, plugin = sys.argv[1:5]
run_workflow(init_demo_wf(out, report=report == "1"), work, plugin=plugin, progress=False)
"""


def report_node_seconds(work):
    from nipype.utils.filemanip import loadpkl

    result = Path(work, "demo_wf", "report", "result_report.pklz")
    return loadpkl(result).runtime.duration if result.exists() else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="rounds (medians over them)")
    parser.add_argument("--plugin", default="Linear", choices=["Linear", "MultiProc"],
                        help="Nipype plugin of the runs")
    args = parser.parse_args()
    without, with_report, node = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        script = tmp / "run_demo.py"
        script.write_text(RUN)
        for i in range(args.repeats):
            for flag, times in (("0", without), ("1", with_report)):
                out, work = tmp / f"out{flag}_{i}", tmp / f"work{flag}_{i}"
                times.append(timed_command([sys.executable, str(script), str(out), str(work), flag,
                                    args.plugin]))
            node.append(report_node_seconds(work))
    a, b, n = (statistics.median(x) for x in (without, with_report, node))
    print(f"demo, 16 subjects, cold, plugin {args.plugin}, median of {args.repeats} "
          "(whole processes, imports included)")
    print(f"  without report : {a:6.2f} s")
    print(f"  with report    : {b:6.2f} s   with / without = {b / a:.2f}  (target <= 1.20)")
    print(f"  report node    : {n:6.2f} s")


if __name__ == "__main__":
    main()
