"""The work folder lock: busy, wait, stale lock of a killed run, clean release."""

import io
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from nipype_secondlevel.runtime.locking import LOCK_NAME, WorkFolderBusy, WorkFolderLock

HOLDER = textwrap.dedent("""
    import sys, time
    from nipype_secondlevel.runtime.locking import WorkFolderLock
    WorkFolderLock(sys.argv[1], stream=False).acquire()
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
    with pytest.raises(WorkFolderBusy) as err:
        WorkFolderLock(work).acquire()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"work folder {work} is in use by another run: PID {holder.pid} ")
    assert message.endswith("wait for it to end or pass --wait")
    notes = io.StringIO()
    with pytest.raises(WorkFolderBusy):
        WorkFolderLock(work, wait=True, timeout=0.3, stream=notes).acquire()
    assert f"is in use by PID {holder.pid}" in notes.getvalue()


def test_stale_lock_of_a_killed_run_is_released_and_said(tmp_path, holder):
    work = tmp_path / "work"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (work / LOCK_NAME).read_text()  # the record stays behind
    notes = io.StringIO()
    with WorkFolderLock(work, stream=notes) as lock:
        assert lock.stale["pid"] == str(holder.pid)
        assert (work / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert notes.getvalue().count("\n") == 1
    assert f"the run of PID {holder.pid} on " in notes.getvalue()
    assert "was interrupted; its lock is released, resuming from the cache" in notes.getvalue()
    # Released cleanly: an empty record, and the next run has nothing to say.
    assert (work / LOCK_NAME).read_text() == ""
    notes = io.StringIO()
    with WorkFolderLock(work, stream=notes) as lock:
        assert lock.stale is None
    assert notes.getvalue() == ""


def test_waiting_run_takes_the_lock_when_the_holder_ends(tmp_path, holder):
    work = tmp_path / "work"
    subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {holder.pid}"])
    with WorkFolderLock(work, wait=True, timeout=30, stream=False) as lock:
        assert lock.stale["pid"] == str(holder.pid)
