"""Ctrl-C and SIGTERM during a run: stop at once, one line, no crash or temporary file.

The run's process turns the first SIGINT or SIGTERM into :class:`Interrupted` (a
``KeyboardInterrupt``), raised once: a second signal does not break the clean-up
that the first one started. A node stopped that way removes its temporary files
(the atomic writers clean up as the exception passes) and nipype leaves it
unfinished, so the next run runs it again.

MultiProc's workers are forked from the run's process. A fork made during a run
(``os.register_at_fork``) asks the kernel to kill the worker when the run's
process dies (``PR_SET_PDEATHSIG``: killing the parent leaves no worker holding
the work folder's lock) and installs the worker's own handler: a signal stops
the node the worker is running (:func:`run_in_worker` marks that time), and a
worker that is idle or interrupted starts no other node. The run's process
forwards its signal to its workers (:func:`stop_workers`), so a SIGTERM sent to
it alone stops them too, and ends those its pool left idle.

A ``KeyboardInterrupt`` raised while a finalizer runs (``__del__``, e.g. llvmlite's
during a garbage collection) would be printed as "Exception ignored ..." and lost;
:func:`_unraisable` keeps it off the console and raises it again just after.
"""

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager

from ..io.private import remove_private_folders

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by signal ``signum`` (SIGINT: Ctrl-C, SIGTERM)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    """This process's part in a run: None outside a run."""

    def __init__(self, run_pid, busy):
        self.run_pid = run_pid  # the run's process
        self.busy = busy  # a node may be stopped now (always, in the run's process)
        self.signum = None  # the first stop signal received
        self.time = None
        self.reraise = False  # an Interrupted was swallowed by a finalizer
        self.again = None  # the thread that sends the signal again (see _unraisable)
        self.hook = sys.unraisablehook  # the one to restore, and to call otherwise


_state = None


def _on_signal(signum, frame):
    state = _state
    if state is None:
        raise Interrupted(signum)
    first = state.signum is None
    if first:
        state.signum, state.time = signum, time.time()
    if state.busy and (first or state.reraise):
        state.reraise = False
        raise Interrupted(state.signum)


def _unraisable(unraisable):
    """An Interrupted lost in a finalizer is not printed but raised again, by the signal
    sent again once this hook has returned: raised inside the hook, it would be lost
    again ("Exception ignored in sys.unraisablehook") and the run would go on."""
    if isinstance(unraisable.exc_value, Interrupted) and _state is not None:
        _state.reraise = True
        _state.again = threading.Timer(0.01, os.kill, (os.getpid(), _state.signum))
        _state.again.start()
        return
    (_state.hook if _state is not None else sys.__unraisablehook__)(unraisable)


def raise_if_stopped():
    """Raise :class:`Interrupted` in the run's process once a stop signal has come.

    The handler raises it once, where the signal lands, and there it can be lost: a
    library's bare ``except:``, or C code that clears errors (a dict lookup calling a
    ``__eq__``), swallows it and the run goes on. The run calls this at its checkpoints:
    before the first node, and as each node starts or ends (its progress callback)."""
    state = _state
    if state is not None and state.signum is not None and state.run_pid == os.getpid():
        raise Interrupted(state.signum)


def die_with_parent(parent=None):
    """Ask the kernel to kill this process when its parent ends (Linux; else a no-op).

    ``parent`` is the PID that should be the parent: if it ended before the call
    (this process was already re-parented), end now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to ask
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _after_fork_in_child():
    global _state
    run = _state
    if run is None or os.getppid() != run.run_pid:
        return  # not a worker of a run in progress
    # First the worker's own state: a signal landing from now on (in the set-up below, or
    # inherited pending) marks the time, never raises outside a node.
    _state = _State(run.run_pid, busy=False)
    _state.hook = run.hook
    die_with_parent(run.run_pid)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


os.register_at_fork(after_in_child=_after_fork_in_child)


def run_in_worker(function, *args):
    """Run nipype's ``run_node(node, updatehash, taskid)`` in a MultiProc worker: a stop
    signal interrupts the node; after one, no node starts (a failure is returned).

    ``run_node`` catches the interrupt itself and then reads the node's result file,
    which the stopped node never wrote: that error, like any other raised once the
    signal came, is the stop's, not a failure to report. Raised without a signal (a
    node failed and wrote no result file: a full disk, its folder deleted), it is the
    node's failure, returned as nipype's own: raised, it never reached nipype's
    scheduler, which waited for that node for ever."""
    state = _state
    try:
        if state is None or state.signum is None:
            if state is not None:
                state.busy = True
            return function(*args)
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - run_node's own error: the node's failure
        if state is None or state.signum is None:
            return {"result": None, "traceback": traceback.format_exception(err),
                    "taskid": args[-1]}
    finally:
        if state is not None:
            state.busy = False
        # What the writers a stop interrupted left (run_node may also have swallowed it).
        remove_private_folders()
    return {"result": None, "traceback": ["interrupted\n"], "taskid": args[-1]}


def stop_workers(pool, interrupted=True, spare=()):
    """Stop the run's MultiProc workers: forward the run's stop signal to them when it was
    ``interrupted`` or has received one (a node running in the run's process, such as the
    sink, fails when nipype's interface catches it), so that they stop their node; shut
    ``pool`` down, and kill the workers it left.

    A stop signal (or a failed fork) while the pool forks its workers, before it starts the
    thread that gives them nodes, leaves those forked so far waiting for a node forever: the
    pool does not know them, and the interpreter's exit would wait for them forever. They
    never ran a node: they hold nothing to clean up. ``spare`` holds the PIDs of the
    process's children from before the pool forked (a script's own): never signalled."""
    def workers():
        return [c for c in multiprocessing.active_children() if c.pid not in spare]

    signum = _state.signum if _state is not None else None
    done, forwarder = threading.Event(), None
    if interrupted or signum:
        forwarder = threading.Thread(target=_forward,
                                     args=(workers(), signum or signal.SIGINT, done))
        forwarder.start()
    try:
        pool.shutdown(wait=True)  # (interrupted, its thread still ends the workers it knows)
    finally:
        done.set()
        if forwarder is not None:  # ended here: a thread still running at the interpreter's
            forwarder.join()       # exit can abort it ("Fatal Python error: PyThreadState_Get")
    for child in workers():
        child.kill()
        child.join()


def _forward(children, signum, done, every=0.2):
    """Send ``signum`` to ``children`` now and every ``every`` seconds until ``done``: a
    signal that lands in a worker between its fork and the interpreter's set-up there is
    dropped (CPython clears a forked child's pending signals), and its node would run to
    its end. Sent again through pidfds only (never to a PID reused once a worker has
    ended); without them (not Linux), once."""
    handles = []
    for child in children:
        try:
            handles.append(os.pidfd_open(child.pid) if hasattr(os, "pidfd_open") else None)
        except OSError:  # it has ended (or no pidfds here: by PID, as it is still ours)
            handles.append(None if child.is_alive() else -1)
    first = True
    try:
        while True:
            for child, handle in zip(children, handles):
                try:
                    if handle is None and first:
                        os.kill(child.pid, signum)
                    elif handle is not None and handle >= 0:
                        signal.pidfd_send_signal(handle, signum)
                except ProcessLookupError:
                    pass
            first = False
            if done.wait(every):
                return
    finally:
        for handle in handles:
            if handle is not None and handle >= 0:
                os.close(handle)


class StopOnSignal:
    """Context manager around a run: SIGINT and SIGTERM raise :class:`Interrupted` once.

    ``interrupted`` is the time of the first signal (epoch seconds) or None. Outside
    the main thread (no handler can be set) it does nothing; a run started in the
    background by a shell, which ignores SIGINT, keeps ignoring it. Nested uses
    share the outer one.
    """

    def __init__(self):
        self._previous = None

    @property
    def interrupted(self):
        return _state.time if _state is not None else None

    @property
    def signum(self):
        return _state.signum if _state is not None else None

    def __enter__(self):
        global _state
        if _state is not None or threading.current_thread() is not threading.main_thread():
            return self
        _state = _State(os.getpid(), busy=True)
        self._previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for signum, previous in self._previous.items():
            if previous is not signal.SIG_IGN:
                signal.signal(signum, _on_signal)
        sys.unraisablehook = _unraisable
        return self

    def __exit__(self, *exc):
        global _state
        if self._previous is None:
            return False
        try:  # no thread of the run left at the interpreter's exit, which it can abort
            if _state.again is not None:  # ("Fatal Python error: PyThreadState_Get")
                _state.again.join()  # its signal is the run's: Interrupted, here at the latest
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            sys.unraisablehook = _state.hook
            _state, self._previous = None, None
        return False


@contextmanager
def removing_files_made_after_interrupt(folder, guard):
    """Files that appear in ``folder`` after the interrupt record it, not a failure
    (nipype's crash files of the nodes it stopped): removed."""
    before = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    try:
        yield
    finally:
        since = guard.interrupted
        if since is not None and os.path.isdir(folder):
            for name in set(os.listdir(folder)) - before:
                path = os.path.join(folder, name)
                # (a small margin: file times come from a coarser clock)
                if os.lstat(path).st_mtime >= since - 0.05 and not os.path.isdir(path):
                    os.unlink(path)
