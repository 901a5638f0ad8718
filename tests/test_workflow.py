"""The demo workflow end to end: numbers, the simulated effect, and the cache."""

import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nipype_secondlevel.runtime.execution import run_workflow
from nipype_secondlevel.workflows import init_demo_wf, plan_demo

LABEL = "verticalVsHorizontal"
EXPECTED_OUTPUTS = {
    f"contrast-{LABEL}_stat-{s}_statmap.nii.gz" for s in ("z", "t", "p", "effect", "variance")
} | {
    f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.nii.gz",
    f"contrast-{LABEL}_stat-z_clusters.tsv",
    f"contrast-{LABEL}_stat-z_glassbrain.png",
    "design.tsv",
    "design.png",
    "desc-group_mask.nii.gz",
    "desc-truth_mask.nii.gz",
    "report.html",
    "desc-group_mask.json",
    "desc-truth_mask.json",
    "stat-n_desc-coverage_statmap.nii.gz",
    "stat-n_desc-coverage_statmap.json",
    ".bidsignore",
    f"contrast-{LABEL}_stat-z_clusters.json",  # the atlas of the region names
    "dataset_description.json",  # the results folder is a BIDS derivatives dataset
    "plan.json",  # every decision of the analysis
} | {  # JSON sidecars of the maps
    f"contrast-{LABEL}_stat-{s}_statmap.json" for s in ("z", "t", "p", "effect", "variance")
} | {f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.json"}
ALL_NODES = {
    "demo_wf.simulate", "demo_wf.sink", "demo_wf.report", "demo_wf.dataset_description",
    "demo_wf.report_slices", "demo_wf.report_viewers",
    *(f"demo_wf.group_analysis_wf.{n}"
      for n in ("plan", "design", "select_maps", "resample", "summarize_maps", "mask",
                "stack_masked_data", "estimate", "contrast", "threshold",
                "labels", "plot")),
}


def load(out_dir, name):
    return nib.load(out_dir / name).get_fdata()


def test_outputs_have_bids_style_names(demo_run):
    out_dir, _, summary = demo_run
    assert {p.name for p in out_dir.iterdir()} == EXPECTED_OUTPUTS | {
        ".nipype-secondlevel-results.json"}  # the manifest of this run's files
    assert set(summary.executed) == ALL_NODES and summary.cached == []


def test_z_map_equals_nilearn_second_level_model(demo_run):
    from nilearn.glm.second_level import SecondLevelModel

    out_dir, work_dir, _ = demo_run
    inputs = pd.read_csv(work_dir / "demo_wf" / "simulate" / "inputs.tsv", sep="\t")
    vertical = inputs[inputs.condition == "vertical"].sort_values("subject")
    horizontal = inputs[inputs.condition == "horizontal"].sort_values("subject")
    n = len(vertical)
    # The design as in nilearn's example (its +1/-1 coding gives the same t and z).
    design = pd.DataFrame(
        np.column_stack([np.r_[np.ones(n), -np.ones(n)], np.vstack([np.eye(n)] * 2)]),
        columns=["vertical vs horizontal"] + list(vertical.subject),
    )
    model = SecondLevelModel().fit(list(vertical.path) + list(horizontal.path),
                                   design_matrix=design)
    expected = model.compute_contrast("vertical vs horizontal", output_type="z_score")
    mask = load(out_dir, "desc-group_mask.nii.gz") > 0
    np.testing.assert_array_equal(mask, model.masker_.mask_img_.get_fdata() > 0)
    z = load(out_dir, f"contrast-{LABEL}_stat-z_statmap.nii.gz")
    assert np.abs(z[mask] - expected.get_fdata()[mask]).max() <= 1e-5
    # 1/0 coding: the effect is the mean paired difference (nilearn's +1/-1 halves it).
    a = np.stack([nib.load(p).get_fdata()[mask] for p in vertical.path])
    b = np.stack([nib.load(p).get_fdata()[mask] for p in horizontal.path])
    effect = load(out_dir, f"contrast-{LABEL}_stat-effect_statmap.nii.gz")[mask]
    np.testing.assert_allclose(effect, (a - b).mean(axis=0), atol=1e-5)


def test_simulated_effect_is_found_where_it_was_put(demo_run):
    out_dir, _, _ = demo_run
    truth = load(out_dir, "desc-truth_mask.nii.gz")
    thresholded = load(out_dir, f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.nii.gz")
    for sign in (1, -1):
        detected = np.mean(np.sign(thresholded[truth == sign]) == sign)
        assert detected > 0.6, f"only {detected:.0%} of the sign {sign} blob detected"
    # The strongest peaks of both signs lie in the blobs.
    assert truth[np.unravel_index(np.argmax(thresholded), truth.shape)] == 1
    assert truth[np.unravel_index(np.argmin(thresholded), truth.shape)] == -1
    # Outside the blobs, z > 3.1 is about as rare as p < .001 says (two-sided .002).
    mask = load(out_dir, "desc-group_mask.nii.gz") > 0
    far = mask & (truth == 0)
    assert np.mean(thresholded[far] != 0) < 0.01
    clusters = pd.read_csv(out_dir / f"contrast-{LABEL}_stat-z_clusters.tsv", sep="\t")
    top = clusters.sort_values("Cluster Size (mm3)", ascending=False).head(2)
    assert (top[["X", "Y"]].abs().to_numpy() < [30, 100]).all()  # both in occipital cortex
    assert (top["Y"] < -60).all()


def test_rerun_executes_no_computing_node(demo_run):
    out_dir, work_dir, _ = demo_run
    summary = run_workflow(init_demo_wf(str(out_dir)), work_dir, progress=False)
    # Only the sink re-exports (it always runs, so deleted results come back).
    assert summary.executed == ["demo_wf.sink"]
    assert set(summary.cached) == ALL_NODES - {"demo_wf.sink"}


def test_changing_the_threshold_reruns_only_what_depends_on_it(demo_run, tmp_path):
    _, work_dir, _ = demo_run
    summary = run_workflow(init_demo_wf(str(tmp_path / "out"), plan_demo(threshold=4.0)),
                           work_dir, progress=False)
    assert set(summary.executed) == {
        "demo_wf.group_analysis_wf.threshold", "demo_wf.group_analysis_wf.labels",
        "demo_wf.group_analysis_wf.plot", "demo_wf.report", "demo_wf.sink",
        "demo_wf.report_slices", "demo_wf.report_viewers",  # the threshold is drawn
        "demo_wf.group_analysis_wf.plan",  # plan.json records threshold=4.0
        "demo_wf.dataset_description",  # its GeneratedBy records the call, threshold=4.0
    }
    thresholded = load(tmp_path / "out", f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.nii.gz")
    assert np.all((thresholded == 0) | (np.abs(thresholded) > 4.0))


def test_multiproc_gives_the_same_maps(demo_run, tmp_path):
    out_dir, _, _ = demo_run
    summary = run_workflow(init_demo_wf(str(tmp_path / "out")), tmp_path / "work",
                           plugin="MultiProc", n_procs=2, progress=False)
    assert set(summary.executed) == ALL_NODES
    for name in EXPECTED_OUTPUTS:
        if name.endswith(".nii.gz"):
            np.testing.assert_array_equal(load(tmp_path / "out", name), load(out_dir, name))


@pytest.mark.parametrize("field", ["inputnode", "outputnode"])
def test_analysis_workflow_has_identity_boundaries(field):
    from nipype.interfaces.utility import IdentityInterface

    from nipype_secondlevel.workflows import init_group_analysis_wf

    wf = init_group_analysis_wf(plan_demo(), name="custom_wf")
    assert wf.name == "custom_wf"
    assert isinstance(wf.get_node(field).interface, IdentityInterface)


def _python(code):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


#: Heavy libraries that building a run's workflow (the command line, the plan) does not need.
HEAVY = ("matplotlib", "nilearn", "numba", "scipy.stats", "scipy.ndimage", "sklearn", "bids")


@pytest.mark.parametrize("imports_nilearn", [True, False])
def test_building_the_demo_imports_no_heavy_library_and_multiproc_imports_them_at_its_fork(
        imports_nilearn):
    """Issue 24: the command line and the plan import none of :data:`HEAVY` (a rerun from
    the cache needs none). MultiProc's first node runs in a process forked once nilearn's
    core is imported, before the pictures' libraries: it has the one, none of the other
    (nor matplotlib); a first node whose interface imports none of nilearn (the demo's
    simulation) forks before both. This process imports them, frozen out of the garbage
    collections (none runs while they are imported; they run again after), while that node
    runs, and the pool's workers fork with them after."""
    printed = _python(f"""
import gc, multiprocessing, sys
from types import SimpleNamespace
from nipype_secondlevel.cli import build_workflow
from nipype_secondlevel.cli_options import build_parser
from nipype_secondlevel.runtime.workers import (
    CORE_IMPORTS, FORKED_IMPORTS, _WorkerPool, frozen_heap)
args = build_parser().parse_args(["demo", "--correction", "tfce"])
args.argv = []
build_workflow(args)
print(*[name in sys.modules for name in {HEAVY!r}])
def imported(node, core, later, taskid):
    return (all(name in sys.modules for name in core),
            any(name in sys.modules for name in later))
class Pool:
    def submit(self, *args):
        return args
    def shutdown(self, wait):
        pass
node = SimpleNamespace(interface=SimpleNamespace(imports_nilearn={imports_nilearn!r}))
with frozen_heap():
    pool = _WorkerPool(Pool(), multiprocessing.get_context("fork"))
    print(any(name in sys.modules for name in FORKED_IMPORTS))
    first = pool.submit(imported, node, CORE_IMPORTS, FORKED_IMPORTS + ("matplotlib",), 1)
    print(all(name in sys.modules for name in CORE_IMPORTS + FORKED_IMPORTS),
          gc.get_freeze_count() > 0, gc.isenabled())
    print(*first.result(timeout=60), pool.submit(len, [])[1:] == (len, []))
    pool.shutdown(wait=True)
print(gc.get_freeze_count())
""")
    assert printed == (["False"] * len(HEAVY)
                       + ["False", "True", "True", "True", str(imports_nilearn), "False", "True",
                          "0"])


def test_the_design_figure_is_drawn_in_a_multiproc_worker_and_stays_local_on_a_cluster(tmp_path):
    """The design node is quick (a cluster runs it in the submitting process); MultiProc
    runs it in a worker, where matplotlib is imported, not in its scheduler's process."""
    import networkx as nx

    from nipype_secondlevel.runtime.execution import make_runner

    for plugin, args, design_local in (("PBS", {}, True), ("SLURM", {}, True),
                                       ("MultiProc", {"n_procs": 1}, False)):
        wf = init_demo_wf(plan_demo(), name="demo_wf")
        analysis = wf.get_node("group_analysis_wf")
        nodes = [analysis.get_node("design"), analysis.get_node("plan")]
        graph = nx.DiGraph()
        graph.add_nodes_from(nodes)
        make_runner(plugin, args, work_dir=tmp_path,
                    batch_dir=tmp_path / "batch").prepare(graph)
        assert [n.run_without_submitting for n in nodes] == [design_local, True], plugin


def test_the_fork_warning_left_out_is_python_s_own():
    """Python 3.12's warning of a fork beside threads (CPython's posixmodule.c,
    ``warn_about_fork_with_threads``), which MultiProc's pool would print while the first
    node's pool has its threads: the pattern left out matches it, and only it."""
    import re

    from nipype_secondlevel.runtime.workers import FORK_WARNING

    assert re.match(FORK_WARNING, "This process (pid=4242) is multi-threaded, use of fork() "
                    "may lead to deadlocks in the child.")
    assert not re.match(FORK_WARNING, "This process (pid=4242) is multi-threaded, use of "
                        "forkpty() may lead to deadlocks in the child.")


def test_the_first_node_s_process_ending_without_its_result_is_the_node_s_failure():
    """The first node's own process killed (the OOM killer, a SIGKILL): its node fails in
    nipype's ``run_node`` shape, naming the exit code; the run does not wait forever."""
    import multiprocessing

    from nipype_secondlevel.runtime.workers import _FirstNode

    first = _FirstNode(multiprocessing.get_context("fork"), os._exit, (9,))
    assert first.future.result(timeout=60) == {
        "result": None, "taskid": 9,
        "traceback": ["the node's process ended (exit code 9) without its result\n"]}
