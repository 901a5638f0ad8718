"""One run per work folder and per results folder: an advisory lock on a file.

The lock is ``fcntl.flock`` on a lock file: ``<work folder>/.nipype-secondlevel.lock``
for the work folder, ``<parent>/.<name>.nipype-secondlevel.lock`` *beside* the
results folder (so that the results folder holds results only, and a results
folder replaced whole by another keeps its lock). The kernel releases a lock when
the process holding it ends, however it ends (SIGKILL included), so a killed run
never blocks the next one. The file records who holds the lock (PID, host, start
time) for the messages: a run that finds the lock held names the holder; a run
that takes the work folder's lock and finds a record left behind knows the
previous run was interrupted and says it is resuming.

The file is opened without following a symbolic link (``O_NOFOLLOW``) and must be
a regular file: a link planted in the folder is refused, never written through.

Processes forked by the run (MultiProc workers) share the lock: it is released
when the last of them ends. They end with the run's process (see
``interrupts.die_with_parent``); should processes of a run that has ended still
hold the lock, ``--wait`` does not wait for them forever: after ``ORPHAN_GRACE``
seconds it stops and names them.
"""

import errno
import fcntl
import os
import socket
import stat
import sys
import time
from pathlib import Path

from ..io.errors import InputError

LOCK_NAME = ".nipype-secondlevel.lock"
#: flock errors meaning "this file system does not do locks" (some NFS/Lustre set-ups).
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
#: Seconds a waiting run gives processes left by a run that has ended to let go.
ORPHAN_GRACE = 10.0


class FolderBusy(InputError):
    """Another run holds the folder."""


def results_lock_path(out_dir):
    """The results folder's lock file, beside it: ``<parent>/.<name>.nipype-secondlevel.lock``."""
    out_dir = Path(out_dir).absolute()
    return out_dir.parent / f".{out_dir.name}{LOCK_NAME}"


def pid_alive(pid):
    """True when a process with this PID exists on this host."""
    try:
        pid = int(pid)
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


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


def parse_record(text):
    """The lock file's content ('pid host started') as a dict ({} if empty)."""
    return dict(zip(("pid", "host", "started"), text.strip().split(maxsplit=2)))


def describe_holder(record, holding=True):
    """'PID 123 on host (started 2024-01-01T10:00:00)' from a lock record; with
    ``holding``, says so when that PID has ended (its forked workers still hold it)."""
    if not record:
        return "another process (no PID recorded)"
    text = f"PID {record.get('pid', '?')} on {record.get('host', '?')}"
    if record.get("started"):
        text += f" (started {record['started']})"
    if holding and orphaned(record):
        text += ", which has ended; processes it started still hold the lock"
    return text


def orphaned(record):
    """True when the run that wrote ``record`` ran on this host and has ended."""
    return bool(record) and record.get("host") == socket.gethostname() and not pid_alive(
        record.get("pid"))


class FolderLock:
    """Exclusive lock on a folder for the time of a run (a context manager).

    Parameters
    ----------
    folder : path
        The folder (created if missing).
    what : str
        How messages name it: "work folder" or "results folder".
    path : path or None
        The lock file (default ``<folder>/.nipype-secondlevel.lock``).
    wait : bool
        If another run holds the folder, wait for it to end instead of raising
        :class:`FolderBusy`.
    timeout : float or None
        With ``wait``, give up after this many seconds (None: wait as long as it takes).
    stream : file, None or False
        Where the one-line notes go (waiting; resuming after an interrupted run, for
        the work folder); default stderr, False silences them.
    """

    def __init__(self, folder, what="work folder", path=None, wait=False, timeout=None,
                 stream=None, poll=0.2, orphan_grace=ORPHAN_GRACE):
        self.folder = Path(folder).absolute()
        self.what = what
        self.path = Path(path) if path is not None else self.folder / LOCK_NAME
        self.wait, self.timeout, self.poll = wait, timeout, poll
        self.stream = sys.stderr if stream is None else stream
        self.orphan_grace = orphan_grace
        self._fd = None
        #: Record left by an earlier run that did not release the lock (killed), or None.
        self.stale = None

    def _note(self, text):
        if self.stream:
            print(text, file=self.stream, flush=True)

    def _read_record(self):
        try:
            return parse_record(os.pread(self._fd, 4096, 0).decode(errors="replace"))
        except OSError:
            return {}

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                         0o666)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise InputError(f"{self.what} {self.folder}: its lock file {self.path} is a "
                                 "symbolic link, which a run never writes through; remove "
                                 "it") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InputError(f"{self.what} {self.folder}: its lock file {self.path} is not "
                             "a regular file; remove it")
        return fd

    def acquire(self):
        self._fd = self._open()
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
            if self.what == "work folder":
                self._note(f"{self.what} {self.folder}: the run of "
                           f"{describe_holder(record, holding=False)} was interrupted; its "
                           "lock is released, resuming from the cache")
        try:
            os.ftruncate(self._fd, 0)
            started = time.strftime("%Y-%m-%dT%H:%M:%S")
            os.pwrite(self._fd, f"{os.getpid()} {socket.gethostname()} {started}\n".encode(), 0)
            os.fsync(self._fd)
        except BaseException:  # (a stop signal as it wrote: no record of a killed run left)
            self.release()
            raise
        return self

    def _try_lock(self):
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _lock(self):
        try:
            if self._try_lock():
                return
        except OSError as err:
            if err.errno in _UNSUPPORTED:
                return self._fallback()
            raise
        record = self._read_record()
        if not self.wait:
            raise self._busy(record)
        self._note(f"{self.what} {self.folder} is in use by {describe_holder(record)}; "
                   "waiting for it to end")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        orphans_since = None
        while not self._try_lock():
            now = time.monotonic()
            record = self._read_record()
            if deadline is not None and now >= deadline:
                raise self._busy(record)
            orphans_since = (orphans_since or now) if orphaned(record) else None
            if orphans_since is not None and now - orphans_since >= self.orphan_grace:
                raise self._orphans(record, waited=self.orphan_grace)
            time.sleep(self.poll)

    def _busy(self, record):
        if orphaned(record):
            return self._orphans(record)
        return FolderBusy(f"{self.what} {self.folder} is in use by another run: "
                          f"{describe_holder(record)}; wait for it to end or pass --wait")

    def _orphans(self, record, waited=None):
        pids = " ".join(map(str, lock_holders(self.path))) or "unknown"
        after = f" after {waited:g} s" if waited is not None else ""
        return FolderBusy(
            f"{self.what} {self.folder}: the run of {describe_holder(record, holding=False)}"
            f" has ended but processes it started (PIDs {pids}) still hold the lock{after}; "
            f"end them (kill {pids}) and run again")

    def _fallback(self):
        """No flock on this file system: trust the record (same host, live PID)."""
        record = self._read_record()
        while record and record.get("host") == socket.gethostname() and pid_alive(
                record.get("pid")) and int(record["pid"]) != os.getpid():
            if not self.wait:
                raise self._busy(record)
            time.sleep(self.poll)
            record = self._read_record()

    def release(self):
        if self._fd is None:
            return
        try:  # an empty record means "released cleanly"; then unlock
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
