"""Shared fixtures: a simulated sample and one demo run, made once per session."""

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("NIPYPE_NO_ET", "1")

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts" / "slurm_cluster_start.sh"
STOP = ROOT / "scripts" / "slurm_cluster_stop.sh"


@pytest.fixture(scope="session", autouse=True)
def _linear_in_this_process():
    """Runs in the test process default to Linear, as before ``--plugin auto``:
    ``pytest.warns`` and ``capsys`` see this process only, not MultiProc's forked workers.
    Commands run as subprocesses (``run_cli``) take the real default."""
    from nipype_secondlevel.runtime import execution
    from nipype_secondlevel.spec import AUTO_PLUGIN

    real = execution.local_plugin
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(execution, "local_plugin",
                      lambda name: "Linear" if str(name).lower() == AUTO_PLUGIN else real(name))
        yield


def _in_ci():
    return os.environ.get("CI", "").strip().lower() == "true"


def made_once(tmp_path_factory, name, make):
    """The folder ``name`` made by ``make(folder)`` once per test run, shared by the
    pytest-xdist workers: the first to ask makes it (under a lock), the others wait and
    reuse it. Tests only read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's
    folder, made = root / f"shared-{name}", root / f"shared-{name}.made"
    with open(root / f"shared-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a maker that failed
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """The simulated 16-subject paired sample, written by the Simulate interface."""
    from nipype_secondlevel.interfaces import SimulatePaired

    folder = tmp_path_factory.mktemp("simulated")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = SimulatePaired(n_subjects=16, seed=3).run()
    finally:
        os.chdir(cwd)
    return result.outputs


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One cold run of the demo workflow (Linear): (out_dir, work_dir, summary)."""
    from nipype_secondlevel.runtime.execution import run_workflow
    from nipype_secondlevel.workflows import init_demo_wf

    base = tmp_path_factory.mktemp("demo")
    out_dir, work_dir = base / "out", base / "work"
    summary = run_workflow(init_demo_wf(str(out_dir)), work_dir, progress=False)
    return out_dir, work_dir, summary


@pytest.fixture(scope="session")
def clean_demo(tmp_path_factory):
    """The folder of one uninterrupted run of test_interruption.py's small demo command
    (its out/ and work/ are the reference of the interruption and cache tests), made once
    per test run."""
    from test_interruption import run_clean_demo

    return made_once(tmp_path_factory, "clean-demo", run_clean_demo)


@pytest.fixture(scope="session")
def bids_derivatives(tmp_path_factory):
    """A generated BIDS dataset with first-level maps as derivatives (tests/bids_data.py):
    (raw_dir, derivatives_dir, expected inputs table); 10 subjects, two groups, age,
    contrasts faces and houses with effect and variance maps. Do not modify it."""
    from bids_data import make_bids_derivatives

    return make_bids_derivatives(tmp_path_factory.mktemp("bids"))


def run_in(folder, interface):
    """Run a Nipype interface with ``folder`` as working directory."""
    cwd = os.getcwd()
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    try:
        return interface.run().outputs
    finally:
        os.chdir(cwd)


def chromium_binary():
    """Path of a Chromium-like browser; skip without one (fail under CI=true)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if _in_ci():
        pytest.fail("CI=true and chromium is not installed (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def run_chromium(url, folder, *args):
    """Open ``url`` in headless Chromium with no network (every host unresolvable, a
    proxy on a closed local port) and a fresh profile in ``folder``; skips without
    Chromium. Returns the finished process."""
    browser = chromium_binary()
    profile = folder / f"profile{len(list(folder.glob('profile*')))}"
    profile.mkdir()
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
               f"--user-data-dir={profile}", "--hide-scrollbars", *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _cluster_answers():
    if not shutil.which("scontrol"):
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "UP" in out


#: Every test session (and pytest-xdist worker) using the cluster holds a shared lock
#: on the first file while it runs; starting, joining and stopping hold the second.
SLURM_USERS = Path(os.environ.get("NSL_SLURM_DIR", "/tmp/nsl-slurm") + ".users.lock")
SLURM_START = SLURM_USERS.with_suffix(".start")
#: Present while the cluster runs because a test session started it.
SLURM_OURS = SLURM_USERS.with_suffix(".ours")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster (started by scripts/slurm_cluster_start.sh if it is not
    up). The last session (or xdist worker) using a cluster that a session started stops
    it, unless NSL_SLURM_KEEP=1; a cluster that was up before is left running."""

    def unavailable(reason):
        if _in_ci():
            pytest.fail(f"CI=true and the SLURM cluster is not available: {reason}")
        pytest.skip(f"SLURM cluster not available: {reason}")

    with open(SLURM_START, "a") as start, open(SLURM_USERS, "a") as users:
        fcntl.flock(start, fcntl.LOCK_EX)  # one start (or stop) at a time
        started = not _cluster_answers()
        if started:
            _start_cluster(unavailable)
            SLURM_OURS.touch()
        fcntl.flock(users, fcntl.LOCK_SH)  # in use by this session
        fcntl.flock(start, fcntl.LOCK_UN)
        yield "SLURM cluster started" if started else "SLURM cluster already running"
        # the last user stops a cluster a session started
        fcntl.flock(start, fcntl.LOCK_EX)
        try:  # exclusive only if no other session or worker uses it
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        if SLURM_OURS.exists() and os.environ.get("NSL_SLURM_KEEP") != "1":
            subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120,
                           check=False)
            SLURM_OURS.unlink()


def _start_cluster(unavailable):
    if os.geteuid() != 0:
        unavailable("not root (starting slurmctld/slurmd and apt-get need root)")
    if not shutil.which("slurmctld") and not os.path.exists("/usr/sbin/slurmctld") \
            and not shutil.which("apt-get"):
        unavailable("SLURM is not installed and there is no apt-get to install it")
    t0 = time.time()
    proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900,
                          check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        unavailable(f"{START.name} exited {proc.returncode}:\n{tail}")
    print(f"\n{proc.stdout.strip()} [{time.time() - t0:.1f} s]")


def planned_design(folder, inputs_table, **options):
    """A table's plan (``plan_analysis``, any ``run`` option) and its design files written
    by the DesignMatrix node: the plan, design_matrix, design_table, design_plot, in_files,
    variance_files and the plan's contrasts, as the analysis workflow's first nodes give
    them."""
    from types import SimpleNamespace

    from nipype_secondlevel.interfaces import DesignMatrix
    from nipype_secondlevel.workflows import plan_analysis

    plan = plan_analysis(inputs_table=str(inputs_table), **options)
    design = plan.design
    files = run_in(folder, DesignMatrix(kind=design.kind, columns=design.columns,
                                        matrix=design.matrix, rows=design.rows))
    return SimpleNamespace(plan=plan, contrasts=plan.contrasts, in_files=design.paths,
                           variance_files=design.variance_paths, **files.get())
