"""A small Nipype workflow for the SLURM tests (tests/test_slurm.py).

    make_a ─┐
            ├─> stats.combine ─> stats.heavy ─> report
    make_b ─┘          (fail=True raises)
    make_c ──> side                         (independent branch)

``stats`` is a nested workflow; ``heavy`` carries resource hints
(``n_procs=2``, ``mem_gb=0.5``) and records the SLURM allocation it got.
Every node appends its name to ``<log>/executed.log`` when it executes, so a
test can count which nodes ran. (``log`` is a folder, not the file: nipype hashes
an input naming an existing *file* by its time stamp, and the log changes on
every run, which would invalidate every node's cache.)
"""

import os

from nipype import Node, Workflow
from nipype.interfaces.utility import Function

HEAVY_N_PROCS = 2
HEAVY_MEM_GB = 0.5
ALL_NODES = ("make_a", "make_b", "make_c", "combine", "heavy", "report", "side")


def make_number(value, tag, log):
    import os

    path = os.path.abspath(f"{tag}.txt")
    with open(path, "w") as fp:
        fp.write(f"{value}\n")
    with open(os.path.join(log, "executed.log"), "a") as fp:
        fp.write(f"{tag}\n")
    return value, path


def combine(a, b, fail, log):
    import os

    with open(os.path.join(log, "executed.log"), "a") as fp:
        fp.write("combine\n")
    if fail:
        raise ValueError(f"deliberate failure of combine (fail={fail})")
    total = a + b
    path = os.path.abspath("sum.txt")
    with open(path, "w") as fp:
        fp.write(f"{a} + {b} = {total}\n")
    return total, path


def heavy(total, log):
    import os

    with open(os.path.join(log, "executed.log"), "a") as fp:
        fp.write("heavy\n")
    path = os.path.abspath("doubled.txt")
    with open(path, "w") as fp:
        fp.write(f"{2 * total}\n")
    # what SLURM gave this job (not part of the outputs compared between plugins)
    with open(os.path.abspath("allocation.txt"), "w") as fp:
        keys = ("SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_MEM_PER_NODE")
        fp.writelines(f"{key}={os.environ.get(key, '')}\n" for key in keys)
    return 2 * total, path


def report(total, doubled, log):
    import os

    with open(os.path.join(log, "executed.log"), "a") as fp:
        fp.write("report\n")
    path = os.path.abspath("report.txt")
    with open(path, "w") as fp:
        fp.write(f"total={total} doubled={doubled}\n")
    return path


def side(value, log):
    import os

    with open(os.path.join(log, "executed.log"), "a") as fp:
        fp.write("side\n")
    path = os.path.abspath("side.txt")
    with open(path, "w") as fp:
        fp.write(f"{value * 10}\n")
    return path


def _fn(func, inputs, outputs, name, **kw):
    return Node(Function(input_names=inputs, output_names=outputs, function=func),
                name=name, **kw)


def build_toy(base_dir, name="toy", fail=False, log=None, combine_mem_gb=None):
    """The toy workflow in ``base_dir``; nodes log to ``<log or base_dir>/executed.log``.
    ``combine_mem_gb``: a resource hint for ``stats.combine`` (then a job of its own
    with the SLURM plugin, rather than a quick node run in the submitting process)."""
    log = os.path.abspath(log or base_dir)
    make_a = _fn(make_number, ["value", "tag", "log"], ["value", "path"], "make_a")
    make_a.inputs.trait_set(value=3, tag="a", log=log)
    make_b = _fn(make_number, ["value", "tag", "log"], ["value", "path"], "make_b")
    make_b.inputs.trait_set(value=4, tag="b", log=log)
    make_c = _fn(make_number, ["value", "tag", "log"], ["value", "path"], "make_c")
    make_c.inputs.trait_set(value=5, tag="c", log=log)

    n_combine = _fn(combine, ["a", "b", "fail", "log"], ["total", "path"], "combine",
                    **({"mem_gb": combine_mem_gb} if combine_mem_gb else {}))
    n_combine.inputs.trait_set(fail=fail, log=log)
    n_heavy = _fn(heavy, ["total", "log"], ["doubled", "path"], "heavy",
                  n_procs=HEAVY_N_PROCS, mem_gb=HEAVY_MEM_GB)
    n_heavy.inputs.log = log
    stats = Workflow(name="stats")
    stats.connect(n_combine, "total", n_heavy, "total")

    n_report = _fn(report, ["total", "doubled", "log"], ["path"], "report")
    n_report.inputs.log = log
    n_side = _fn(side, ["value", "log"], ["path"], "side")
    n_side.inputs.log = log

    wf = Workflow(name=name, base_dir=os.path.abspath(base_dir))
    wf.connect([
        (make_a, stats, [("value", "combine.a")]),
        (make_b, stats, [("value", "combine.b")]),
        (stats, n_report, [("combine.total", "total"), ("heavy.doubled", "doubled")]),
        (make_c, n_side, [("value", "value")]),
    ])
    wf.config["execution"].update({
        "crashdump_dir": os.path.join(os.path.abspath(base_dir), "crash"),
        # keep files that are not connected outputs (allocation.txt, the .txt outputs)
        "remove_unnecessary_outputs": False,
    })
    return wf


def set_fail(wf, fail):
    wf.get_node("stats.combine").inputs.fail = fail


def executed(base_dir):
    """Node names in the order they executed (from ``<base_dir>/executed.log``)."""
    path = os.path.join(base_dir, "executed.log")
    if not os.path.exists(path):
        return []
    tags = {"a": "make_a", "b": "make_b", "c": "make_c"}
    with open(path) as fp:
        return [tags.get(line.strip(), line.strip()) for line in fp if line.strip()]


def outputs(base_dir, name="toy"):
    """{relative path: content} of the files the nodes wrote (allocation.txt excluded)."""
    root = os.path.join(base_dir, name)
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".txt") and f != "allocation.txt":
                with open(os.path.join(dirpath, f)) as fp:
                    out[os.path.relpath(os.path.join(dirpath, f), root)] = fp.read()
    return out


def allocation(base_dir, name="toy"):
    """The SLURM allocation the heavy node recorded, as a dict."""
    path = os.path.join(base_dir, name, "stats", "heavy", "allocation.txt")
    with open(path) as fp:
        return dict(line.strip().split("=", 1) for line in fp if "=" in line)
