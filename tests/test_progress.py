"""The progress lines: one counted line per node; MultiProc's MapNode items are
named ``<MapNode>[i]`` and not counted, so the counter never exceeds its total; a
rerun says "cached"."""

import re

from nipype import MapNode, Node, Workflow
from nipype.interfaces.utility import Function

from nipype_secondlevel.runtime.execution import run_workflow


def square(x):
    return x * x


def total(values):
    return sum(values)


def build():
    items = MapNode(Function(input_names=["x"], output_names=["y"], function=square),
                    iterfield=["x"], name="chunks")
    items.inputs.x = [1, 2, 3]
    plan = Node(Function(input_names=["values"], output_names=["sum"], function=total),
                name="plan")
    wf = Workflow(name="toy_wf")
    wf.connect(items, "y", plan, "values")
    return wf


def test_map_items_are_named_and_not_counted(tmp_path, capsys):
    run_workflow(build(), tmp_path, plugin="MultiProc", n_procs=2)
    lines = capsys.readouterr().err.splitlines()
    done = sorted(line.strip().split(": done")[0] for line in lines if ": done in" in line)
    assert done == ["[1/2] toy_wf.chunks", "[2/2] toy_wf.plan", "toy_wf.chunks[0]",
                    "toy_wf.chunks[1]", "toy_wf.chunks[2]"]
    assert "        toy_wf.chunks[1]: running" in lines
    summary = run_workflow(build(), tmp_path, plugin="MultiProc", n_procs=2)
    counted = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert [re.sub(r"^\[\d/2\] ", "", line) for line in counted] == [
        "toy_wf.chunks: cached", "toy_wf.plan: cached"]
    assert (summary.executed, sorted(summary.cached)) == ([], ["toy_wf.chunks", "toy_wf.plan"])
