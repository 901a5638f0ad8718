"""The SLURM and SLURMGraph runs against a REAL one-node SLURM cluster.

The session fixture ``slurm_cluster`` (tests/conftest.py) starts the cluster. The
toy workflow (tests/slurm_toy.py) runs through ``run_workflow`` as the command runs
it; its reference outputs come from nipype's MultiProc run of the same workflow.
The first tests need no cluster.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_toy
from slurm_toy import build_toy, executed, outputs, set_fail
from test_interruption import ENV, INTERRUPTED

from nipype_secondlevel.runtime.execution import WorkflowFailed, make_runner, run_workflow
from nipype_secondlevel.runtime.slurm import hint_options

#: bound for one toy run (they take 4-12 s here); a hang fails instead of blocking CI
RUN_TIMEOUT = 90
TOY = ["toy.make_a", "toy.make_b", "toy.make_c", "toy.side", "toy.stats.combine",
       "toy.stats.heavy", "toy.report"]


# ------------------------------------------------------------------ no cluster needed
def test_options_per_node_from_hints_and_the_users_options(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)  # no sbatch --test-only here
    batch = tmp_path / "toy" / "batch"
    # "--exclusive" contains "-e": nipype's SLURM plugin would then drop its -e
    runner = make_runner("SLURM", {"sbatch_args": "--exclusive"}, work_dir=tmp_path,
                         batch_dir=batch)
    assert runner.plugin_args["sbatch_args"] == (
        f"--exclusive --output={batch}/slurm-%x-%j.out --error={batch}/slurm-%x-%j.out")
    wf = build_toy(tmp_path)
    heavy, make_a = wf.get_node("stats.heavy"), wf.get_node("make_a")
    assert hint_options(heavy, [], []) == ["--cpus-per-task=2", "--mem=512M"]
    assert hint_options(make_a, [], []) == []  # nipype's defaults: no option, a quick node
    assert runner.node_tokens(make_a) == ([], True)
    # the user's --mem wins; --mem-per-cpu in the global options: no --mem (exclusive)
    assert hint_options(heavy, [], ["--mem=2G"]) == ["--cpus-per-task=2"]
    assert hint_options(heavy, ["--mem-per-cpu=100M"], []) == [
        "--cpus-per-task=2", "--mem-per-cpu=256M"]
    # options of a node that replace the global ones get the log options too
    heavy.plugin_args = {"sbatch_args": "-p big", "overwrite": True}
    tokens, quick = runner.node_tokens(heavy)
    assert not quick and tokens[:4] == ["-p", "big", "--cpus-per-task=2", "--mem=512M"]
    assert tokens[4:] == [f"--output={batch}/slurm-%x-%j.out", f"--error={batch}/slurm-%x-%j.out"]
    mine = make_runner("SLURM", {"sbatch_args": "-o /x/%j.log"}, work_dir=tmp_path,
                       batch_dir=batch)
    assert mine.plugin_args["sbatch_args"] == "-o /x/%j.log"  # the user says where


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
    """Outputs of the toy workflow run by nipype's own MultiProc."""
    base = tmp_path_factory.mktemp("multiproc")
    wf = build_toy(base)
    wf.config["execution"]["poll_sleep_duration"] = 0.05
    wf.run(plugin="MultiProc", plugin_args={"n_procs": 2})
    out = outputs(base)
    assert out["report/report.txt"] == "total=7 doubled=14\n"
    assert len(out) == 7
    return out


def run_toy(wf, base, plugin):
    return run_workflow(wf, base, plugin=plugin, progress=False, poll_interval=0.2)


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


def _our_jobs(base):
    """Jobs of the queue (pending or running) whose script is in ``base``."""
    queue = subprocess.run(["squeue", "-h", "-o", "%i %T %o"], capture_output=True, text=True,
                           timeout=30, check=False).stdout
    return [line for line in queue.splitlines() if str(base) in line]


@pytest.mark.slurm
@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_slurm_plugins_run_like_multiproc(slurm_cluster, reference, tmp_path, plugin):
    summary = run_toy(build_toy(tmp_path), tmp_path, plugin)
    assert outputs(tmp_path) == reference
    assert sorted(summary.executed) == sorted(TOY) and summary.cached == []
    _assert_heavy_got_its_hints(tmp_path)
    logs = list(Path(tmp_path, "toy", "batch").glob("slurm-*-*.out"))
    if plugin == "SLURM":  # quick nodes ran in this process: one job, the heavy node's
        assert [p.name.split("-")[1] for p in logs] == ["heavy.stats.toy.root"] or len(logs) == 1
    else:  # quick nodes share jobs: a -> b -> combine, heavy, report (c -> side: a sibling)
        assert sorted(re.sub(r"^slurm-j\d+_|-\d+\.out$", "", p.name) for p in logs) == [
            "heavy", "make_a", "report"]
    again = run_toy(build_toy(tmp_path), tmp_path, plugin)  # all from the cache
    assert again.executed == [] and sorted(again.cached) == sorted(TOY)


def _check_failure_report(text, base, plugin, not_run):
    assert f"{plugin} run of workflow 'toy' ({base / 'toy'}): 1 node(s) failed" in text
    assert "FAILED  toy.stats.combine" in text
    assert "    error:      ValueError: deliberate failure of combine (fail=True)" in text
    crash = re.search(r"crash file: (\S+)", text).group(1)
    assert Path(crash).parent == base / "crash" and Path(crash).is_file()
    log = re.search(r"slurm log:  (\S+)", text).group(1)
    assert Path(log).parent == base / "toy" / "batch" and Path(log).is_file()
    # (a SLURM plugin's job stores the node's error and ends COMPLETED)
    state = "FAILED" if plugin == "SLURMGraph" else "COMPLETED"
    job = re.search(rf"slurm job:  (\d+) {state}", text).group(1)
    assert log.endswith(f"-{job}.out")
    for name in not_run:
        assert f"NOT RUN {name} (because toy.stats.combine failed" in text


@pytest.mark.slurm
@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_failure_is_reported_per_node_and_the_rerun_resumes(slurm_cluster, reference,
                                                              tmp_path, plugin):
    wf = build_toy(tmp_path, fail=True, combine_mem_gb=0.3)  # combine: a job of its own
    t0 = time.time()
    with pytest.raises(WorkflowFailed) as failure:
        run_toy(wf, tmp_path, plugin)
    assert time.time() - t0 < 2 * RUN_TIMEOUT, "waiting on the failed dependency took too long"
    _check_failure_report(str(failure.value), tmp_path, plugin,
                          ["toy.stats.heavy", "toy.report"])
    if plugin == "SLURMGraph":  # dependents were cancelled, not left pending
        assert re.search(r"NOT RUN toy.report \(because .*; SLURM job \d+ CANCELLED", str(
            failure.value))
    assert _our_jobs(tmp_path) == []
    n_before = len(executed(tmp_path))
    set_fail(wf, False)
    summary = run_toy(wf, tmp_path, plugin)
    # only what had not finished: the failed node, its dependents (and, with SLURM,
    # stopped at the first crash, whatever had not ended then)
    assert {"combine", "heavy", "report"} <= set(executed(tmp_path)[n_before:])
    assert not {"make_a", "make_b"} & set(executed(tmp_path)[n_before:])
    assert {"toy.stats.combine", "toy.report"} <= set(summary.executed)
    assert outputs(tmp_path) == reference


@pytest.mark.slurm
def test_slurmgraph_rerun_after_parameter_change(slurm_cluster, tmp_path):
    """nipype's own check of SLURMGraph counts an OUTDATED cache as done: ours does not."""
    wf = build_toy(tmp_path)
    run_toy(wf, tmp_path, "SLURMGraph")
    n_before = len(executed(tmp_path))
    wf.get_node("make_a").inputs.value = 30
    summary = run_toy(wf, tmp_path, "SLURMGraph")
    assert sorted(executed(tmp_path)[n_before:]) == ["combine", "heavy", "make_a", "report"]
    assert sorted(summary.executed) == ["toy.make_a", "toy.report", "toy.stats.combine",
                                        "toy.stats.heavy"]
    assert outputs(tmp_path)["report/report.txt"] == "total=34 doubled=68\n"


def cli(*args):
    return [sys.executable, "-m", "nipype_secondlevel", *args]


@pytest.mark.slurm
def test_impossible_resource_hint_is_refused_up_front(slurm_cluster, tmp_path):
    done = subprocess.run(cli("demo", "--n-subjects", "4", "--plugin", "SLURMGraph",
                              "--mem-gb", "100000", "--quiet"), cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("nipype-secondlevel: error: --sbatch-args: SLURM refuses the "
                           "options"), line
    assert "--mem=102400000M" in line and "demo_wf.group_analysis_wf.estimate" in line
    assert not list((tmp_path / "work").rglob("result_*.pklz"))  # before the first node


@pytest.mark.slurm
@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_ctrl_c_cancels_the_jobs_it_submitted(slurm_cluster, tmp_path, plugin):
    """Jobs held back (--begin in 10 minutes) are pending when Ctrl-C comes: the run
    ends with exit 130 and one line, and its jobs leave the queue."""
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cli("demo", "--n-subjects", "4", "--plugin", plugin, "--quiet",
                                    "--poll-interval", "0.2", "--sbatch-args=--begin=now+600"),
                                cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _our_jobs(tmp_path):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no job was submitted"
            time.sleep(0.2)
        time.sleep(0.5)  # (SLURMGraph: every job submitted)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert log.read_text().splitlines() == [INTERRUPTED]
    deadline = time.monotonic() + 10
    while _our_jobs(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _our_jobs(tmp_path) == []
