"""``python -m nipype_secondlevel`` and the ``nipype-secondlevel`` command (:func:`entry`)."""

import gc
import signal
import sys

#: The signals that stop a run (Ctrl-C, a kill or a cluster's time limit).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def entry():
    """The command. Its first act is to record Ctrl-C and SIGTERM instead of raising them:
    while the command line loads, an exception could land anywhere in the libraries' code
    (a finalizer prints and loses it; the run went on), so a signal received then is acted
    on once it has loaded: the one line of a stopped run and its exit status, nothing run.
    A shell's background job ignores SIGINT, and keeps ignoring it."""
    received = []
    previous = {}
    try:  # a Ctrl-C may also land while the handlers are installed, or given back
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, lambda sig, frame: received.append(sig))
        from .cli import main

        for signum, handler in previous.items():  # main() sets up its own
            signal.signal(signum, handler)
        if not received:
            code = main()
            # The interpreter's last garbage collections, over the heap of numpy, scipy,
            # nilearn and nipype, cost up to a second at exit; nothing in it needs them
            # (files are closed, exit handlers still run): frozen objects are left out.
            gc.freeze()
            return code
    except KeyboardInterrupt:
        received.append(signal.SIGINT)
    from .cli_options import PROG
    from .runtime.console import stopped_line

    print(stopped_line(PROG, received[0]), file=sys.stderr)
    return 128 + received[0]

if __name__ == "__main__":
    sys.exit(entry())
