"""nipype_secondlevel.runtime.slurm against a REAL one-node SLURM cluster.

The session fixture ``slurm_cluster`` (tests/conftest.py) starts the cluster.
The first tests need no cluster.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    import nipype_secondlevel  # noqa: F401
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("NIPYPE_NO_ET", "1")

import slurm_toy
from slurm_toy import build_toy, executed, outputs, set_fail

from nipype_secondlevel.runtime import nipype_seam, slurm
from nipype_secondlevel.runtime.slurm import (
    SlurmRunError,
    prepare_slurm_run,
    run_on_slurm,
    slurm_run_error,
    wait_for_slurmgraph,
)

#: bound for one toy run (they take 4-12 s here); a hang fails instead of blocking CI
RUN_TIMEOUT = 90


# ------------------------------------------------------------------ no cluster needed
def _node(wf, name):
    return wf.get_node(name)


def test_prepare_slurm_plugin_args_and_node_hints(tmp_path, monkeypatch):
    monkeypatch.delenv("LOGNAME", raising=False)
    wf = build_toy(tmp_path)
    _node(wf, "make_b").plugin_args = {"sbatch_args": "--time=5"}
    # "--exclusive" contains "-e": nipype's SLURM plugin would then drop its -e
    args = prepare_slurm_run(wf, "SLURM", sbatch_args="--exclusive", poll_interval=0.3,
                             plugin_args={"max_tries": 3}, check=False)
    assert os.environ["LOGNAME"]
    assert os.environ["NIPYPE_NO_ET"] == "1"
    assert float(wf.config["execution"]["poll_sleep_duration"]) == 0.3
    assert args["max_tries"] == 3
    batch = tmp_path / "toy" / "batch"
    assert args["sbatch_args"] == (f"--exclusive --output={batch}/slurm-%x-%j.out "
                                   f"--error={batch}/slurm-%x-%j.out")
    heavy = _node(wf, "stats.heavy").plugin_args["sbatch_args"]
    # leading space: SLURMGraph glues node args to the global ones without one
    assert heavy == " --cpus-per-task=2 --mem=512M"
    assert "sbatch_args" not in _node(wf, "make_a").plugin_args  # nipype defaults: no hint
    assert _node(wf, "make_b").plugin_args["sbatch_args"] == "--time=5"
    # idempotent: a second call (a rerun) gives the same, nothing piles up
    again = prepare_slurm_run(wf, "SLURM", sbatch_args="--exclusive", poll_interval=0.3,
                              plugin_args={"max_tries": 3}, check=False)
    assert again == args
    assert _node(wf, "stats.heavy").plugin_args["sbatch_args"] == heavy


def test_prepare_respects_user_options(tmp_path):
    wf = build_toy(tmp_path)
    heavy = _node(wf, "stats.heavy")
    heavy.plugin_args = {"sbatch_args": "--mem=2G -p big", "overwrite": True}
    args = prepare_slurm_run(wf, "slurm", sbatch_args="--mem-per-cpu=100M -o /x/%j.log",
                             check=False)
    assert args["sbatch_args"] == "--mem-per-cpu=100M -o /x/%j.log --error=/x/%j.log"
    # the user's --mem wins; overwrite=True replaces the global args, so the node
    # gets its own log options
    assert heavy.plugin_args["sbatch_args"].split() == [
        "--mem=2G", "-p", "big", "--cpus-per-task=2",
        f"--output={tmp_path}/toy/batch/slurm-%x-%j.out",
        f"--error={tmp_path}/toy/batch/slurm-%x-%j.out"]
    # with --mem-per-cpu in the global args, a hint must not add --mem (exclusive)
    heavy.plugin_args = {}
    prepare_slurm_run(wf, "SLURM", sbatch_args="--mem-per-cpu=100M", check=False)
    assert heavy.plugin_args["sbatch_args"] == " --cpus-per-task=2 --mem-per-cpu=256M"


def test_prepare_slurmgraph_args(tmp_path):
    from nipype.pipeline.plugins import slurmgraph

    nipypes_own = slurmgraph.node_completed_status
    wf = build_toy(tmp_path)
    args = prepare_slurm_run(wf, "SLURMGraph", check=False)
    assert args["dont_resubmit_completed_jobs"] is True
    assert slurmgraph.node_completed_status is nipypes_own  # preparing patches nothing
    assert prepare_slurm_run(wf, "SLURMGraph", plugin_args={
        "dont_resubmit_completed_jobs": False}, check=False)[
        "dont_resubmit_completed_jobs"] is False


def test_prepare_rejects_bad_calls(tmp_path):
    wf = build_toy(tmp_path)
    with pytest.raises(ValueError, match="SLURM"):
        prepare_slurm_run(wf, "MultiProc")
    wf.base_dir = None
    with pytest.raises(ValueError, match="base_dir"):
        prepare_slurm_run(wf, "SLURM", check=False)


@pytest.mark.parametrize("written", [["--sbatch-args", "--time=30"],
                                     ["--sbatch-args=--time=30"]])
def test_one_sbatch_option_is_read_as_users_write_it(written):
    from nipype_secondlevel.cli_options import build_parser, join_dash_values

    args = build_parser().parse_args(join_dash_values(["demo", *written, "--plugin", "SLURM"]))
    assert (args.sbatch_args, args.plugin) == ("--time=30", "SLURM")


def test_sbatch_args_that_cannot_be_split_are_an_argparse_error(capsys):
    from nipype_secondlevel.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--sbatch-args", "--comment='unbalanced"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "argument --sbatch-args: cannot be split into options" in err.splitlines()[-1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Outputs of the toy workflow run locally with MultiProc."""
    base = tmp_path_factory.mktemp("multiproc")
    wf = build_toy(base)
    wf.config["execution"]["poll_sleep_duration"] = 0.05
    wf.run(plugin="MultiProc", plugin_args={"n_procs": 2})
    out = outputs(base)
    assert out["report/report.txt"] == "total=7 doubled=14\n"
    assert len(out) == 7
    return out


def run_graph(wf, args):
    """wf.run with SLURMGraph as the project runs it (nipype's up-to-date check fixed)."""
    with nipype_seam.patched_for_run("SLURMGraph"):
        wf.run(plugin="SLURMGraph", plugin_args=args)


def _scontrol_job(job_id):
    return subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True,
                          text=True, timeout=30, check=False).stdout


def _assert_heavy_got_its_hints(base):
    alloc = slurm_toy.allocation(base)
    assert alloc["SLURM_CPUS_PER_TASK"] == str(slurm_toy.HEAVY_N_PROCS)
    assert alloc["SLURM_MEM_PER_NODE"] == str(int(slurm_toy.HEAVY_MEM_GB * 1024))
    job = _scontrol_job(alloc["SLURM_JOB_ID"])
    assert f"CPUs/Task={slurm_toy.HEAVY_N_PROCS}" in job, job
    assert "MinMemoryNode=512M" in job, job


def _result_mtimes(base):
    return {str(p.relative_to(base)): p.stat().st_mtime
            for p in Path(base, "toy").rglob("result_*.pklz")}


def _check_failure_report(err, base, plugin):
    text = str(err)
    assert f"{plugin} run of workflow 'toy'" in text
    assert "1 node(s) failed, 2 not run (4 ok)" in text
    assert [o.name for o in err.failed] == ["toy.stats.combine"]
    assert sorted(o.name for o in err.not_run) == ["toy.report", "toy.stats.heavy"]
    failed = err.failed[0]
    assert "ValueError: deliberate failure of combine (fail=True)" in failed.error
    assert "FAILED  toy.stats.combine" in text
    assert Path(failed.crash_file).is_file()
    assert Path(failed.crash_file).parent == Path(base, "crash")
    assert f"crash file: {failed.crash_file}" in text
    assert Path(failed.slurm_log).is_file()
    assert Path(failed.slurm_log).parent == Path(base, "toy", "batch")
    assert f"slurm log:  {failed.slurm_log}" in text
    assert failed.job_id and re.fullmatch(r"\d+", failed.job_id)
    for o in err.not_run:
        assert o.blocked_by == ["toy.stats.combine"]
        assert f"NOT RUN {o.name} (because toy.stats.combine failed" in text
    assert err.outcomes["toy.side"].ok  # the independent branch still ran


@pytest.mark.slurm
def test_slurm_plugin_runs_like_multiproc(slurm_cluster, reference, tmp_path):
    wf = build_toy(tmp_path)
    args = prepare_slurm_run(wf, "SLURM")
    t0 = time.time()
    wf.run(plugin="SLURM", plugin_args=args)
    print(f"SLURM plugin run: {time.time() - t0:.1f} s")
    assert outputs(tmp_path) == reference
    assert sorted(executed(tmp_path)) == sorted(slurm_toy.ALL_NODES)
    _assert_heavy_got_its_hints(tmp_path)
    # every job logged where prepare_slurm_run said
    logs = list(Path(tmp_path, "toy", "batch").glob("slurm-*-*.out"))
    assert len(logs) == len(slurm_toy.ALL_NODES)
    outcomes = slurm.collect_outcomes(wf, "SLURM")
    assert {o.status for o in outcomes.values()} == {"ran"}


@pytest.mark.slurm
def test_slurmgraph_waits_and_runs_like_multiproc(slurm_cluster, reference, tmp_path):
    wf = build_toy(tmp_path)
    args = prepare_slurm_run(wf, "SLURMGraph")
    t0 = time.time()
    run_graph(wf, args)  # returns right after sbatch
    outcomes = wait_for_slurmgraph(wf, timeout=RUN_TIMEOUT)
    print(f"SLURMGraph run + wait: {time.time() - t0:.1f} s")
    assert sorted(outcomes) == sorted(
        ["toy.make_a", "toy.make_b", "toy.make_c", "toy.side", "toy.stats.combine",
         "toy.stats.heavy", "toy.report"])
    assert all(o.status == "ran" for o in outcomes.values())
    assert outputs(tmp_path) == reference
    _assert_heavy_got_its_hints(tmp_path)
    submit = Path(tmp_path, "toy", "batch", "submit_jobs.sh").read_text()
    heavy_line = next(ln for ln in submit.splitlines() if ln.startswith("j5_heavy="))
    assert "--cpus-per-task=2 --mem=512M" in heavy_line
    # a folder works as well as the workflow object (nothing left to wait for)
    again = wait_for_slurmgraph(tmp_path, timeout=RUN_TIMEOUT)
    assert {o.status for o in again.values()} == {"ran"}


@pytest.mark.slurm
def test_slurm_plugin_failure_report_and_rerun(slurm_cluster, reference, tmp_path):
    wf = build_toy(tmp_path, fail=True)
    args = prepare_slurm_run(wf, "SLURM")
    with pytest.raises(RuntimeError) as info:
        wf.run(plugin="SLURM", plugin_args=args)
    err = slurm_run_error(wf, info.value)
    assert isinstance(err, SlurmRunError)
    _check_failure_report(err, tmp_path, "SLURM")
    assert err.failed[0].slurm_log.endswith(f"-{err.failed[0].job_id}.out")
    assert "combine.stats.toy." in Path(err.failed[0].slurm_log).name

    # fix the cause and rerun: only the failed node and its dependents execute
    n_before = len(executed(tmp_path))
    before = _result_mtimes(tmp_path)
    set_fail(wf, False)
    wf.run(plugin="SLURM", plugin_args=prepare_slurm_run(wf, "SLURM"))
    assert sorted(executed(tmp_path)[n_before:]) == ["combine", "heavy", "report"]
    after = _result_mtimes(tmp_path)
    for kept in ("toy/make_a/result_make_a.pklz", "toy/side/result_side.pklz"):
        assert after[kept] == before[kept]
    assert outputs(tmp_path) == reference
    statuses = {k: o.status for k, o in slurm.collect_outcomes(wf, "SLURM").items()}
    assert statuses["toy.make_a"] == "cached" and statuses["toy.report"] == "ran"


@pytest.mark.slurm
def test_slurm_plugin_report_with_text_crash_files_and_stop_on_first_crash(slurm_cluster,
                                                                          tmp_path):
    """The project's run settings: text crash files, stop at the first crash."""
    wf = build_toy(tmp_path, fail=True)
    wf.config["execution"].update({"crashfile_format": "txt", "stop_on_first_crash": True,
                                   "create_report": False})
    with pytest.raises(RuntimeError) as info:
        wf.run(plugin="SLURM", plugin_args=prepare_slurm_run(wf, "SLURM"))
    err = slurm_run_error(wf, info.value)
    assert [o.name for o in err.failed] == ["toy.stats.combine"]
    failed = err.failed[0]
    assert failed.crash_file.endswith(".txt") and Path(failed.crash_file).is_file()
    assert "ValueError: deliberate failure of combine" in failed.error
    assert Path(failed.slurm_log).is_file()
    assert {"toy.stats.heavy", "toy.report"} <= {o.name for o in err.not_run}
    # the independent branch may still be queued/running when nipype stops
    assert {o.status for o in err.outcomes.values()} <= {"ran", "failed", "not_run"}
    # from the folder alone: the failed node, its crash file and log
    by_dir = slurm_run_error(Path(tmp_path, "toy"))
    assert [(o.name, o.crash_file, o.slurm_log) for o in by_dir.failed] == [
        ("toy.stats.combine", failed.crash_file, failed.slurm_log)]


@pytest.mark.slurm
def test_slurmgraph_failure_report_no_hang_and_rerun(slurm_cluster, reference, tmp_path):
    wf = build_toy(tmp_path, fail=True)
    t0 = time.time()
    run_graph(wf, prepare_slurm_run(wf, "SLURMGraph"))
    with pytest.raises(SlurmRunError) as info:
        wait_for_slurmgraph(wf, timeout=RUN_TIMEOUT)
    elapsed = time.time() - t0
    print(f"SLURMGraph failing run + wait: {elapsed:.1f} s")
    assert elapsed < 45, "waiting on the failed dependency took too long"
    err = info.value
    _check_failure_report(err, tmp_path, "SLURMGraph")
    assert err.failed[0].job_state == "FAILED"
    assert Path(err.failed[0].slurm_log).name.startswith("slurm-j3_combine-")
    for o in err.not_run:
        assert o.job_state.startswith("CANCELLED"), o
    # nothing of ours is left in the queue
    queue = subprocess.run(["squeue", "-h", "-o", "%i %T %o"], capture_output=True,
                           text=True, timeout=30, check=False).stdout
    assert str(tmp_path) not in queue

    n_before = len(executed(tmp_path))
    set_fail(wf, False)
    run_graph(wf, prepare_slurm_run(wf, "SLURMGraph"))
    outcomes = wait_for_slurmgraph(wf, timeout=RUN_TIMEOUT)
    # only the failed node and its dependents were submitted, and ran
    assert sorted(outcomes) == ["toy.report", "toy.stats.combine", "toy.stats.heavy"]
    assert sorted(executed(tmp_path)[n_before:]) == ["combine", "heavy", "report"]
    assert outputs(tmp_path) == reference


@pytest.mark.slurm
def test_slurmgraph_rerun_after_parameter_change(slurm_cluster, tmp_path):
    """nipype's dont_resubmit_completed_jobs check counts an OUTDATED cache as done:
    ours replaces it for the time of the run, and nipype's is back afterwards."""
    from nipype.pipeline.plugins import multiproc, slurmgraph

    nipypes_own = (slurmgraph.node_completed_status, multiproc.process_initializer)
    wf = build_toy(tmp_path)
    run_on_slurm(wf, "SLURMGraph", timeout=RUN_TIMEOUT)
    n_before = len(executed(tmp_path))
    _node(wf, "make_a").inputs.value = 30
    outcomes = run_on_slurm(wf, "SLURMGraph", timeout=RUN_TIMEOUT)
    assert (slurmgraph.node_completed_status, multiproc.process_initializer) == nipypes_own
    assert sorted(executed(tmp_path)[n_before:]) == ["combine", "heavy", "make_a", "report"]
    assert sorted(outcomes) == ["toy.make_a", "toy.report", "toy.stats.combine",
                                "toy.stats.heavy"]
    assert outputs(tmp_path)["report/report.txt"] == "total=34 doubled=68\n"


@pytest.mark.slurm
def test_impossible_resource_hint_is_refused_up_front(slurm_cluster, tmp_path):
    wf = build_toy(tmp_path)
    _node(wf, "stats.heavy")._mem_gb = 100_000  # more than the node has (no setter)
    with pytest.raises(ValueError, match=r"--mem=102400000M.*toy\.stats\.heavy"):
        prepare_slurm_run(wf, "SLURMGraph")
