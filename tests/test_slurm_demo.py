"""The demo workflow on a real SLURM cluster (SLURM and SLURMGraph plugins).

Needs the ``slurm_cluster`` fixture (tests/conftest.py): skipped where no cluster can
be started, failing instead under CI=true.
"""

import re
import subprocess

import nibabel as nib
import numpy as np
import pytest

from nipype_secondlevel.cli import main
from nipype_secondlevel.runtime.execution import WorkflowFailed, run_workflow
from nipype_secondlevel.workflows import init_demo_wf, plan_demo

pytestmark = pytest.mark.slurm
ANALYSIS = "demo_wf.group_analysis_wf"


def finished_nodes(work):
    """Dotted names of the nodes whose result file the run left in ``work``."""
    return {".".join(result.parent.relative_to(work).parts)
            for result in work.glob("demo_wf/**/result_*.pklz")
            if not result.parent.name.startswith("_")}


def maps_of(out_dir):
    return {p.name: nib.load(p).get_fdata() for p in sorted(out_dir.glob("*.nii.gz"))}


def job_ids(work):
    """{job name: job id} from the SLURM logs of the run (batch/slurm-<name>-<id>.out)."""
    found = {}
    for log in (work / "demo_wf" / "batch").glob("slurm-*.out"):
        name, job = re.fullmatch(r"slurm-(.+)-(\d+)\.out", log.name).groups()
        found[name] = job
    return found


def scontrol_job(job):
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                          timeout=30, check=False).stdout


# The two ways of writing a single sbatch option, one per plugin.
@pytest.mark.parametrize("plugin, sbatch", [
    ("SLURM", ["--sbatch-args", "--comment=nsltest"]),
    ("SLURMGraph", ["--sbatch-args=--comment=nsltest"]),
])
def test_demo_on_slurm_gives_the_local_numbers(slurm_cluster, demo_run, tmp_path, capsys,
                                               plugin, sbatch):
    local_out, _, local = demo_run
    work = tmp_path / "work"
    code = main(["demo", "--plugin", plugin, *sbatch, "--poll-interval", "0.2", "--quiet",
                 "--out-dir", str(tmp_path / "out"), "--work-dir", str(work)])
    assert code == 0
    assert f"{len(local.executed)} node(s) executed, 0 from the cache" in capsys.readouterr().out
    ours, reference = maps_of(tmp_path / "out"), maps_of(local_out)
    assert ours.keys() == reference.keys() and len(ours) >= 8
    for name, data in reference.items():
        np.testing.assert_array_equal(ours[name], data, err_msg=name)
    jobs = job_ids(work)
    if plugin == "SLURM":  # quick nodes ran in this process; the heavy ones as jobs
        assert sorted(name.split(".")[0] for name in jobs) == [
            "estimate", "stack_masked_data"]
    else:  # the quick nodes before the masked data share a job, those after the estimate too
        assert sorted(re.sub(r"^j\d+_", "", name) for name in jobs) == [
            "contrast", "estimate", "simulate", "stack_masked_data"]
    estimate = next(job for name, job in jobs.items() if "estimate" in name)
    details = scontrol_job(estimate)
    assert "Comment=nsltest" in details, details  # --sbatch-args reached the job
    assert "MinMemoryNode=1G" in details, details  # and so did its memory hint (--mem-gb)


def test_failed_node_is_named_and_rerun_resumes(slurm_cluster, tmp_path):
    """With SLURM (SLURMGraph's report of a failed node, its cancelled dependents and
    the rerun: test_slurm.py's test_failure_is_reported_per_node_and_the_rerun_resumes)."""
    work, out = tmp_path / "work", tmp_path / "out"
    broken = plan_demo(n_subjects=6)  # a plan spoilt after it was checked: the contrast fails
    broken.contrasts[0].weights = [[1.0, 0.0]]
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(init_demo_wf(str(out), broken), work, plugin="SLURM",
                     progress=False, poll_interval=0.2)
    report = str(failure.value)
    assert f"{ANALYSIS}.contrast" in report
    assert "contrast verticalVsHorizontal: weights" in report  # the node's own error line
    assert "crash" in report  # where the crash file is, and the log of a job
    # a quick node: it ran in the submitting process
    assert "slurm log:  (none: it ran in the submitting process)" in report
    assert not out.exists()
    # stop_on_first_crash: nodes beside the failed one may or may not have finished.
    finished = finished_nodes(work)
    # After the fix only the failed node, what depends on it and what had not finished run.
    summary = run_workflow(init_demo_wf(str(out), plan_demo(n_subjects=6)), work,
                           plugin="SLURM", progress=False, poll_interval=0.2)
    assert set(summary.executed) >= {
        f"{ANALYSIS}.contrast", f"{ANALYSIS}.threshold", f"{ANALYSIS}.plot",
        "demo_wf.report", "demo_wf.sink",
    }
    # (the failed node may leave a result file holding its traceback: it runs again;
    # plan.json records the weights)
    changed = {f"{ANALYSIS}.contrast", f"{ANALYSIS}.plan"}
    assert not set(summary.executed) & (finished - changed)
    assert (out / "contrast-verticalVsHorizontal_stat-z_statmap.nii.gz").exists()
