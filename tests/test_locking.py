"""The work folder lock: busy, wait, stale lock of a killed run, clean release."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nipype_secondlevel.runtime.locking import LOCK_NAME, FolderBusy, FolderLock

HOLDER = textwrap.dedent("""
    import sys, time
    from nipype_secondlevel.runtime.interrupts import die_with_parent
    from nipype_secondlevel.runtime.locking import FolderLock
    die_with_parent()
    FolderLock(sys.argv[1], stream=False).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/'work'; killed at the end."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "work")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_busy_work_folder_names_the_folder_and_the_pid(tmp_path, holder):
    work = tmp_path / "work"
    with pytest.raises(FolderBusy) as err:
        FolderLock(work).acquire()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"work folder {work} is in use by another run: PID {holder.pid} ")
    assert message.endswith("wait for it to end or pass --wait")
    notes = io.StringIO()
    with pytest.raises(FolderBusy):
        FolderLock(work, wait=True, timeout=0.3, stream=notes).acquire()
    assert f"is in use by PID {holder.pid}" in notes.getvalue()


def test_stale_lock_of_a_killed_run_is_released_and_said(tmp_path, holder):
    work = tmp_path / "work"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (work / LOCK_NAME).read_text()  # the record stays behind
    notes = io.StringIO()
    with FolderLock(work, stream=notes) as lock:
        assert lock.stale["pid"] == str(holder.pid)
        assert (work / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert notes.getvalue().count("\n") == 1
    assert f"the run of PID {holder.pid} on " in notes.getvalue()
    assert "was interrupted; its lock is released, resuming from the cache" in notes.getvalue()
    # Released cleanly: an empty record, and the next run has nothing to say.
    assert (work / LOCK_NAME).read_text() == ""
    notes = io.StringIO()
    with FolderLock(work, stream=notes) as lock:
        assert lock.stale is None
    assert notes.getvalue() == ""


def test_waiting_run_takes_the_lock_when_the_holder_ends(tmp_path, holder):
    work = tmp_path / "work"
    subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {holder.pid}"])
    with FolderLock(work, wait=True, timeout=30, stream=False) as lock:
        assert lock.stale["pid"] == str(holder.pid)


ORPHAN_MAKER = textwrap.dedent("""
    import os, sys, time
    from nipype_secondlevel.runtime.locking import FolderLock, pid_alive
    FolderLock(sys.argv[1], stream=False).acquire()
    child = os.fork()
    if child == 0:  # shares the lock and outlives its parent, which exits at once
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(1, 2)
        for _ in range(1200):  # not beyond the test (argv[2]), should it be stopped
            time.sleep(0.1)
            if not pid_alive(sys.argv[2]):
                break
        os._exit(0)
    print(child, flush=True)
""")


def test_wait_does_not_wait_forever_on_processes_of_an_ended_run(tmp_path):
    work = tmp_path / "work"
    maker = subprocess.run([sys.executable, "-c", ORPHAN_MAKER, str(work), str(os.getpid())],
                           capture_output=True, text=True, timeout=60, check=True)
    child = int(maker.stdout)
    try:
        t0 = time.monotonic()
        with pytest.raises(FolderBusy) as err:
            FolderLock(work, wait=True, orphan_grace=0.5, stream=False).acquire()
        assert time.monotonic() - t0 < 10
        message = str(err.value)
        assert "\n" not in message
        assert f"processes it started (PIDs {child}) still hold the lock after 0.5 s" in message
        assert message.endswith(f"end them (kill {child}) and run again")
        with pytest.raises(FolderBusy, match=f"PIDs {child}"):  # without --wait: at once
            FolderLock(work, stream=False).acquire()
    finally:
        os.kill(child, signal.SIGKILL)


def children(pid):
    """{child PID: its start time} of the live (not zombie) children of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return {c: started for c in found if (started := start_time(c)) is not None}


def start_time(pid):
    """When process ``pid`` started (clock ticks since boot), or None if it is gone or a
    zombie: with the start time a reused PID is not taken for the process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def survivors(processes):
    """The processes of ``processes`` ({PID: start time}) still running, with their state."""
    left = {}
    for pid, started in processes.items():
        try:
            if start_time(pid) == started:
                left[pid] = Path(f"/proc/{pid}/status").read_text().splitlines()[:3]
        except OSError:  # ended meanwhile
            continue
    return left


def test_killing_the_parent_of_a_multiproc_run_ends_its_workers(tmp_path):
    """A worker pauses inside the estimation (tests/interrupt_driver.py); only the run's
    process is killed: its workers end, and the next run takes the work folder."""
    command = ["demo", "--n-subjects", "6", "--plugin", "MultiProc", "--n-procs", "2",
               "--quiet", "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path / "out")]
    small_chunks = ["--mem-gb", "0.002"]  # the estimation in many chunks: a pause mid-way
    marker = tmp_path / "paused"
    driver = Path(__file__).with_name("interrupt_driver.py")
    parent = subprocess.Popen([sys.executable, str(driver), "estimate", str(marker), "--",
                               *command, *small_chunks], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not marker.exists() or not marker.read_text():
        assert parent.poll() is None, "the run ended before the estimation"
        assert time.monotonic() < deadline, "the estimation was not reached"
        time.sleep(0.05)
    paused = int(marker.read_text())
    workers = children(parent.pid)
    assert paused != parent.pid and paused in workers  # a worker is busy in the estimation
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while survivors(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not survivors(workers), f"outlived their parent: {survivors(workers)}"
    # Nothing holds the work folder: the next run takes it at once and resumes (with
    # the default chunks, to be quick: the nodes before the estimation come from the cache).
    rerun = subprocess.run([sys.executable, "-m", "nipype_secondlevel", *command],
                           capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "was interrupted; its lock is released, resuming from the cache" in rerun.stderr, \
        rerun.stderr
    assert (tmp_path / "out" / "contrast-verticalVsHorizontal_stat-z_statmap.nii.gz").exists()
