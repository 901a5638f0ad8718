"""The package uses nipype through its public API: no nipype module or class attribute
is set, no private attribute of nipype's objects is read; the runtime hands nipype
plugin objects; quick SLURMGraph nodes share jobs, heavy ones keep their own."""

import ast

import pytest
from conftest import ROOT

from nipype_secondlevel.runtime.execution import Runner, make_runner, plugin_class
from nipype_secondlevel.runtime.slurm import job_groups

PACKAGE = ROOT / "nipype_secondlevel"
#: Private attributes of nipype's workflows, nodes, plugins and modules that the
#: runtime once read or set (their public twins: fullname, name, list_node_names,
#: get_node, output_dir, result, is_cached, plugin objects).
NIPYPE_PRIVATE = {"_id", "_hierarchy", "_get_all_nodes", "_create_flat_graph", "_interface",
                  "_result", "_pending", "_sbatch_args", "_template", "_taskid", "_task_obj",
                  "_dont_resubmit_completed_jobs", "_config", "_sections", "_get_args",
                  "_output_dir", "_got_inputs", "_mem_gb", "_n_procs"}


def nipype_names(tree):
    """Names bound to nipype modules or objects by the imports of ``tree``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if a.name.split(".")[0] == "nipype"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nipype":
            names |= {a.asname or a.name for a in node.names}
    return names


def base_name(expr):
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def test_no_nipype_attribute_is_set_and_no_private_one_is_read():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        nipype = nipype_names(tree)
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            wrong += [f"{where}:{node.lineno} assigns {ast.unparse(t)}" for t in targets
                      if isinstance(t, ast.Attribute) and base_name(t) in nipype]
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("setattr", "delattr") \
                    and base_name(node.args[0]) in nipype:
                wrong.append(f"{where}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.Attribute) and node.attr in NIPYPE_PRIVATE:
                wrong.append(f"{where}:{node.lineno} reads {ast.unparse(node)}")
            if isinstance(node, ast.Attribute) and node.attr == "__code__":
                wrong.append(f"{where}:{node.lineno} walks code objects")
    assert wrong == []


def test_the_check_finds_what_it_looks_for():
    tree = ast.parse("from nipype.pipeline.plugins import multiproc\n"
                     "import nipype.pipeline.plugins.slurmgraph as sg\n"
                     "multiproc.process_initializer = print\n"
                     "setattr(sg, 'node_completed_status', len)\n")
    assert nipype_names(tree) == {"multiproc", "sg"}
    assigned = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)]
    assert base_name(assigned[0].targets[0]) == "multiproc"


@pytest.mark.parametrize("name, nipype_name", [
    ("Linear", "LinearPlugin"), ("multiproc", "MultiProcPlugin"), ("SLURM", "SLURMPlugin"),
    ("slurmgraph", "SLURMGraphPlugin"), ("SGE", "SGEPlugin"), ("PBS", "PBSPlugin"),
    ("LSF", "LSFPlugin"), ("HTCondor", "CondorPlugin"), ("OAR", "OARPlugin")])
def test_a_run_hands_nipype_its_own_plugin_class_extended(tmp_path, name, nipype_name):
    from nipype.pipeline import plugins

    assert plugin_class(name) is getattr(plugins, nipype_name)
    if name in ("SGE", "HTCondor", "OAR"):  # their constructors look for their queue
        return
    runner = make_runner(name, {"n_procs": 1} if name == "multiproc" else {},
                         work_dir=tmp_path, batch_dir=tmp_path / "batch")
    assert isinstance(runner, getattr(plugins, nipype_name)) and isinstance(runner, Runner)
    assert type(runner).__name__ == nipype_name  # what nipype's logs call it


# The demo's shape: q = quick, h = heavy (resource hints); {index: predecessors}.
DEMO = ["q", "q", "q", "q", "q", "h", "h", "q", "q", "q"]
DEMO_DEPS = {1: [0], 2: [1], 3: [0], 4: [3], 5: [1, 3, 4], 6: [1, 5], 7: [2, 6], 8: [4, 7],
             9: [0, 8]}


def check_schedule(groups, waits, kinds, deps, done):
    """Brute force: every node to submit is in one job; a heavy node is alone in its
    job; each node's predecessors ran before it in its job or in a job it waits for."""
    assert sorted(i for g in groups for i in g) == [i for i in range(len(kinds)) if not done[i]]
    job = {i: g for g, members in enumerate(groups) for i in members}

    def before(g):  # jobs that end before job g starts
        seen, todo = set(), list(waits[g])
        while todo:
            w = todo.pop()
            if w not in seen:
                seen.add(w)
                todo += waits[w]
        return seen

    for g, members in enumerate(groups):
        assert len(members) == 1 or all(kinds[i] == "q" for i in members)
        for k, i in enumerate(members):
            for d in deps.get(i, []):
                assert done[d] or d in members[:k] or job[d] in before(g)


@pytest.mark.parametrize("done_nodes", [(), (0, 1)])
def test_quick_nodes_share_jobs_and_heavy_ones_keep_their_own(done_nodes):
    done = [i in done_nodes for i in range(len(DEMO))]
    groups, waits = job_groups(list(DEMO), DEMO_DEPS, done, lambda kind: kind == "q")
    check_schedule(groups, waits, DEMO, DEMO_DEPS, done)
    if not done_nodes:  # worked out by hand
        assert groups == [[0, 1, 2, 3, 4], [5], [6], [7, 8, 9]]
        assert waits == {0: [], 1: [0], 2: [0, 1], 3: [0, 2]}
    else:
        assert groups == [[2, 3, 4], [5], [6], [7, 8, 9]]


def test_quick_siblings_waiting_for_the_same_jobs_share_one():
    # a -> estimate (h) -> plan -> chunks (h); a, estimate -> contrast -> threshold
    kinds = ["q", "h", "q", "q", "h", "q"]
    deps = {1: [0], 2: [1], 3: [0, 1], 4: [1, 2], 5: [3]}
    done = [False] * len(kinds)
    groups, waits = job_groups(kinds, deps, done, lambda kind: kind == "q")
    check_schedule(groups, waits, kinds, deps, done)
    assert groups == [[0], [1], [2, 3, 5], [4]]
