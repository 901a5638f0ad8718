"""``python -m nipype_secondlevel`` and the ``nipype-secondlevel`` command (:func:`entry`)."""

import gc
import os
import signal
import sys

#: The signals that stop a run (Ctrl-C, a kill or a cluster's time limit).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def entry():
    """The command. Its first act is to record Ctrl-C and SIGTERM instead of raising them:
    while the command line loads, an exception could land anywhere in the libraries' code
    (a finalizer prints and loses it; the run went on), so a signal received then is acted
    on once it has loaded: the one line of a stopped run and its exit status, nothing run.
    Once loaded, the command runs stopped by the first signal (``StopOnSignal``: one lost
    in a finalizer is raised again, one a library swallowed at the run's next checkpoint
    or when the command ends; SIGTERM too is the one line, not a silent death), and
    a signal once it has ended is recorded only (no traceback at the interpreter's exit).
    A shell's background job ignores SIGINT, and keeps ignoring it. A stopped run's
    process ends at once after its line (:func:`exit_stopped`)."""
    received = []
    try:  # a Ctrl-C may also land while the handlers are installed
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, lambda sig, frame: received.append(sig))
        from .cli import main
        from .runtime.interrupts import StopOnSignal

        with StopOnSignal() as guard:  # (the recording handlers given back at its end)
            code = None if received else main()
            if code == 0 and guard.signum is not None:  # its exception was lost after the
                received.append(guard.signum)  # run's last checkpoint: a stop all the same
                code = None
        if code in (128 + signum for signum in STOP_SIGNALS):
            exit_stopped(code)
        if code is not None:
            # The interpreter's last garbage collections, over the heap of numpy, scipy,
            # nilearn and nipype, cost up to a second at exit; nothing in it needs them
            # (files are closed, exit handlers still run): frozen objects are left out.
            gc.freeze()
            return code
    except KeyboardInterrupt as err:
        received.append(getattr(err, "signum", signal.SIGINT))
    from .cli_options import PROG
    from .runtime.console import stopped_line

    print(stopped_line(PROG, received[0]), file=sys.stderr)
    exit_stopped(128 + received[0])


def exit_stopped(code):
    """End a stopped run's process with ``code``, its output flushed, without the
    interpreter's finalization, where a stop's exit could abort: on Python 3.11, about 1
    in 700 Ctrl-C's of a MultiProc run printed ``Fatal Python error: PyThreadState_Get``
    after the one line, exit status -6 (no Python thread of the run was left then; C
    threads at finalization are a known cause, CPython issue 110052). By then the run
    has stopped its workers, removed its private folders and released its locks; the
    exit handlers it skips have nothing of the run to do."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

if __name__ == "__main__":
    sys.exit(entry())
