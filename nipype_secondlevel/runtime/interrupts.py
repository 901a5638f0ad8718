"""Ctrl-C during a run: stop at once, leave no crash file, keep the cache consistent.

Nipype turns a ``KeyboardInterrupt`` raised inside a node into a node failure (a
crash file, "node x failed"). :class:`InterruptGuard` remembers that the run was
interrupted, so that :func:`~nipype_secondlevel.runtime.execution.run_workflow`
reports an interruption instead, and removes the crash files written after it.

MultiProc's workers are forked from the run's process and share its process
group, so Ctrl-C reaches them too: a worker running a node stops it (the node's
temporary files are removed by the atomic writers and nipype leaves the node
marked unfinished, so the next run runs it again); an idle worker ignores the
signal (raising there would print a traceback) and ends when the pool shuts down.
"""

import os
import signal
import threading
import time
from pathlib import Path


def running_a_node(frame):
    """True when ``frame`` (a signal handler's) is inside a nipype node's ``run``."""
    from nipype.pipeline.engine import MapNode, Node

    codes = {Node.run.__code__, MapNode.run.__code__}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


class InterruptGuard:
    """Context manager around ``workflow.run``: SIGINT is recorded, then raised as
    ``KeyboardInterrupt`` in the run's process (once: a second Ctrl-C does not
    break the clean-up) and, in forked workers, only inside a node.

    ``interrupted`` is the time of the first SIGINT (epoch seconds) or None.
    Outside the main thread (no signal handler can be set), or where SIGINT is
    ignored, it does nothing.
    """

    def __init__(self, crash_dir):
        self.crash_dir = Path(crash_dir)
        self.interrupted = None
        self._pid = os.getpid()
        self._previous = None

    def _handler(self, signum, frame):
        if os.getpid() != self._pid:  # a forked MultiProc worker
            if running_a_node(frame):
                raise KeyboardInterrupt
            return
        if self.interrupted is None:
            self.interrupted = time.time()
            raise KeyboardInterrupt

    def __enter__(self):
        # (a run started in the background by a shell ignores SIGINT: it keeps ignoring it)
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.interrupted is not None:
            self.remove_crash_files()
        return False

    def remove_crash_files(self):
        """Crash files written since the interrupt: they record the interrupt, not a failure."""
        if not self.crash_dir.is_dir():
            return
        for crash in self.crash_dir.glob("crash-*"):
            try:
                # (a small margin: file times come from a coarser clock)
                if crash.stat().st_mtime >= self.interrupted - 0.05:
                    crash.unlink()
            except FileNotFoundError:
                pass
