"""One run per work folder: an advisory lock on a file in the work folder.

The lock is ``fcntl.flock`` on ``<work folder>/.nipype-secondlevel.lock``. The
kernel releases it when the process holding it ends, however it ends (SIGKILL
included), so a killed run never blocks the next one. The file also records
who holds the lock (PID, host, start time) for the messages: a run that finds
the lock held names the holder; a run that takes the lock and finds a record
left behind knows the previous run was interrupted and says it is resuming.

Processes forked by the run (MultiProc workers) share the lock: it is released
when the last of them ends, so a rerun cannot start while workers of a killed
run still write into the work folder. They end with the run's process (the
kernel kills them, see ``nipype_seam.die_with_parent``); should processes of a
run that has ended still hold the lock (started otherwise), ``--wait`` does not
wait for them forever: after ``ORPHAN_GRACE`` seconds it stops and names them.
"""

import errno
import fcntl
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..io.errors import InputError

LOCK_NAME = ".nipype-secondlevel.lock"
#: flock errors meaning "this file system does not do locks" (some NFS/Lustre set-ups).
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
#: Seconds a waiting run gives processes left by a run that has ended to let go.
ORPHAN_GRACE = 10.0


class WorkFolderBusy(InputError):
    """Another run holds the work folder."""


def describe_holder(record, host=None, holding=True):
    """'PID 123 on host (started 2024-01-01T10:00:00)' from a lock record.

    With ``holding``, says so when that PID has ended on this host (its forked
    workers still hold the lock)."""
    if not record:
        return "another process (no PID recorded)"
    text = f"PID {record.get('pid', '?')} on {record.get('host', '?')}"
    if record.get("started"):
        text += f" (started {record['started']})"
    host = host or socket.gethostname()
    if holding and record.get("host") == host and not pid_alive(record.get("pid")):
        text += ", which has ended; processes it started still hold the lock"
    return text


def lock_holders(path):
    """PIDs of the other processes on this host with ``path`` open (Linux /proc)."""
    target = os.path.realpath(path)
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:  # ended meanwhile, or not ours to look at
            continue
    return sorted(pids)


def orphaned(record):
    """True when the run that wrote ``record`` ran on this host and has ended."""
    return bool(record) and record.get("host") == socket.gethostname() and not pid_alive(
        record.get("pid"))


def pid_alive(pid):
    """True when a process with this PID exists on this host."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_record(text):
    """The lock file's content ('pid host started...') as a dict ({} if empty)."""
    parts = text.strip().split(maxsplit=2)
    if not parts:
        return {}
    record = {"pid": parts[0]}
    if len(parts) > 1:
        record["host"] = parts[1]
    if len(parts) > 2:
        record["started"] = parts[2]
    return record


class WorkFolderLock:
    """Exclusive lock on a work folder for the time of a run.

    Parameters
    ----------
    work_dir : path
        The work folder (created if missing).
    wait : bool
        If another run holds the folder, wait for it to end instead of raising
        :class:`WorkFolderBusy`.
    timeout : float or None
        With ``wait``, give up after this many seconds (None: wait as long as it takes).
    stream : file or None
        Where the one-line notes (waiting, resuming after an interrupted run) go;
        default stderr. None-like ``False`` silences them.
    """

    def __init__(self, work_dir, wait=False, timeout=None, stream=None, poll=0.2,
                 orphan_grace=ORPHAN_GRACE):
        self.work_dir = Path(work_dir).absolute()
        self.path = self.work_dir / LOCK_NAME
        self.wait = wait
        self.timeout = timeout
        self.stream = sys.stderr if stream is None else stream
        self.poll = poll
        self.orphan_grace = orphan_grace
        self._fd = None
        #: Record left by an earlier run that did not release the lock (it was
        #: killed), or None.
        self.stale = None

    def _note(self, text):
        if self.stream:
            print(text, file=self.stream, flush=True)

    def _read_record(self):
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            return parse_record(os.read(self._fd, 4096).decode(errors="replace"))
        except OSError:
            return {}

    def _busy(self, record):
        if orphaned(record):
            return self._orphans(record)
        return WorkFolderBusy(
            f"work folder {self.work_dir} is in use by another run: "
            f"{describe_holder(record)}; wait for it to end or pass --wait"
        )

    def acquire(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            self._lock()
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        record = self._read_record()
        if record:
            # The previous holder did not clear its record: it was killed. The
            # kernel released its lock; its record is stale.
            self.stale = record
            self._note(
                f"work folder {self.work_dir}: the run of "
                f"{describe_holder(record, holding=False)} "
                "was interrupted; its lock is released, resuming from the cache"
            )
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, f"{os.getpid()} {socket.gethostname()} {started}\n".encode())
        os.fsync(self._fd)
        return self

    def _lock(self):
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as err:
            if err.errno in _UNSUPPORTED:
                return self._fallback()
            raise
        record = self._read_record()
        if not self.wait:
            raise self._busy(record)
        self._note(f"work folder {self.work_dir} is in use by {describe_holder(record)}; "
                   "waiting for it to end")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        orphans_since = None
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise self._busy(self._read_record()) from None
                record = self._read_record()
                orphans_since = (orphans_since or now) if orphaned(record) else None
                if orphans_since is not None and now - orphans_since >= self.orphan_grace:
                    raise self._orphans(record, waited=self.orphan_grace) from None
                time.sleep(self.poll)

    def _orphans(self, record, waited=None):
        pids = " ".join(map(str, lock_holders(self.path))) or "unknown"
        after = f" after {waited:g} s" if waited is not None else ""
        return WorkFolderBusy(
            f"work folder {self.work_dir}: the run of {describe_holder(record, holding=False)}"
            f" has ended but processes it started (PIDs {pids}) still hold the lock{after}; "
            f"end them (kill {pids}) and run again"
        )

    def _fallback(self):
        """No flock on this file system: trust the record (same host, live PID)."""
        record = self._read_record()
        while record and record.get("host") == socket.gethostname() and pid_alive(
            record.get("pid")
        ) and int(record["pid"]) != os.getpid():
            if not self.wait:
                raise self._busy(record)
            time.sleep(self.poll)
            record = self._read_record()

    def release(self):
        if self._fd is None:
            return
        try:
            # An empty record means "released cleanly"; then unlock.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


@contextmanager
def work_folder_lock(work_dir, wait=False, timeout=None, stream=None):
    """Hold the work folder's lock for the time of a ``with`` block.

    >>> with work_folder_lock("work"):          # doctest: +SKIP
    ...     run_workflow(workflow, "work")
    """
    lock = WorkFolderLock(work_dir, wait=wait, timeout=timeout, stream=stream)
    with lock:
        yield lock
