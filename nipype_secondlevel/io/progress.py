"""Progress lines from inside long nodes, on stderr, at most one every few seconds.

    estimate: 40% (8,200 of 20,480 voxels), 12 s left

A node's computation calls a :class:`Progress` with how much is done; a loop
shorter than the interval prints nothing. The lines go to the process's
stderr: the console with Linear and MultiProc (a worker inherits it), the job's
log on SLURM. The environment, not an input, silences them, so that node
hashes do not depend on it: the command sets :data:`QUIET_ENV` for ``--quiet``.
"""

import os
import sys
import time
from contextlib import contextmanager

#: Set to anything but "" or "0": no progress lines (the command's ``--quiet``).
QUIET_ENV = "NIPYPE_SECONDLEVEL_QUIET"

#: Seconds between two lines, and before the first (overridden by :data:`INTERVAL_ENV`).
INTERVAL = 5.0

#: Environment variable giving another interval in seconds (tests use 0).
INTERVAL_ENV = "NIPYPE_SECONDLEVEL_PROGRESS_INTERVAL"


@contextmanager
def progress_lines(shown=True):
    """Within the block, progress lines of this process and the ones it starts are
    shown or not (:data:`QUIET_ENV`); the environment is restored after it."""
    before = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "" if shown else "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[QUIET_ENV]
        else:
            os.environ[QUIET_ENV] = before


def _interval():
    try:
        return max(float(os.environ.get(INTERVAL_ENV, INTERVAL)), 0.0)
    except ValueError:
        return INTERVAL


def _duration(seconds):
    """'12 s', '4 min 10 s' or '2 h 5 min'."""
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


class Progress:
    """Reports how much of a long computation is done (see the module notes).

    Parameters
    ----------
    what : str
        The computation, first word of the line (e.g. the node: "estimate").
    stream : file or None
        Where the lines go (default: sys.stderr at the time of the line).
    clock : callable
        Seconds, monotonic (tests give their own).
    """

    def __init__(self, what, stream=None, clock=time.monotonic):
        self.what = what
        self.stream = stream
        self.clock = clock
        self.quiet = os.environ.get(QUIET_ENV, "") not in ("", "0")
        self.interval = _interval()
        self.start = self.last = clock()

    def __call__(self, done, total, unit):
        """Print a line if the interval has passed since the last (and the start),
        ``0 < done < total``: percent, counts of ``unit`` and the time left."""
        if self.quiet or not 0 < done < total:
            return
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        left = (now - self.start) / done * (total - done)
        print(f"{self.what}: {100 * done / total:.0f}% ({done:,} of {total:,} {unit}), "
              f"{_duration(left)} left", file=self.stream or sys.stderr, flush=True)

    def track(self, items, total, unit):
        """Yield ``items`` (``total`` of them), reporting after each."""
        for done, item in enumerate(items, start=1):
            yield item
            self(done, total, unit)
