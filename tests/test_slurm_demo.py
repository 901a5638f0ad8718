"""The demo workflow on a real SLURM cluster (SLURM and SLURMGraph plugins).

Needs the ``slurm_cluster`` fixture (tests/conftest.py): skipped where no cluster can
be started, failing instead under CI=true.
"""

import nibabel as nib
import numpy as np
import pytest

from nipype_secondlevel.runtime.execution import WorkflowFailed, run_workflow
from nipype_secondlevel.workflows import init_demo_wf

pytestmark = pytest.mark.slurm
ANALYSIS = "demo_wf.group_analysis_wf"


def finished_nodes(work):
    """Dotted names of the nodes whose result file the run left in ``work``."""
    return {".".join(result.parent.relative_to(work).parts)
            for result in work.glob("demo_wf/**/result_*.pklz")
            if not result.parent.name.startswith("_")}


def maps_of(out_dir):
    return {p.name: nib.load(p).get_fdata() for p in sorted(out_dir.glob("*.nii.gz"))}


@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_demo_on_slurm_gives_the_local_numbers(slurm_cluster, demo_run, tmp_path, plugin):
    local_out, _, local = demo_run
    summary = run_workflow(init_demo_wf(str(tmp_path / "out")), tmp_path / "work",
                           plugin=plugin, progress=False, poll_interval=0.2)
    assert set(summary.executed) == set(local.executed) and summary.cached == []
    ours, reference = maps_of(tmp_path / "out"), maps_of(local_out)
    assert ours.keys() == reference.keys() and len(ours) >= 8
    for name, data in reference.items():
        np.testing.assert_array_equal(ours[name], data, err_msg=name)
    # The estimation node's memory hint became an sbatch option of its job.
    estimate = tmp_path / "work" / "demo_wf" / "group_analysis_wf" / "estimate"
    assert estimate.is_dir()


@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_failed_node_is_named_and_rerun_resumes(slurm_cluster, tmp_path, plugin):
    work, out = tmp_path / "work", tmp_path / "out"
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(init_demo_wf(str(out), contrasts=["diagonal"]), work, plugin=plugin,
                     progress=False, poll_interval=0.2)
    report = str(failure.value)
    # The contrasts are checked against the design before anything is estimated.
    assert f"{ANALYSIS}.contrast_specs" in report
    assert "contrast 'diagonal'" in report  # the node's own error line
    assert "crash" in report and "slurm-" in report  # where the crash file and log are
    if plugin == "SLURMGraph":  # dependents are reported, not left pending
        assert f"NOT RUN {ANALYSIS}.contrast" in report
    assert not out.exists()
    # stop_on_first_crash: nodes beside the failed one may or may not have finished.
    finished = finished_nodes(work)
    # After the fix only the failed node, what depends on it and what had not finished run.
    summary = run_workflow(init_demo_wf(str(out), contrasts=["vertical_vs_horizontal"]), work,
                           plugin=plugin, progress=False, poll_interval=0.2)
    assert set(summary.executed) >= {
        f"{ANALYSIS}.contrast_specs", f"{ANALYSIS}.contrast", f"{ANALYSIS}.threshold", f"{ANALYSIS}.plot",
        "demo_wf.report", "demo_wf.collect_outputs", "demo_wf.sink",
    }
    assert not set(summary.executed) & finished
    assert (out / "contrast-verticalVsHorizontal_stat-z_statmap.nii.gz").exists()
