"""``python -m nipype_secondlevel`` and the ``nipype-secondlevel`` command (:func:`entry`)."""

import gc
import sys


def entry():
    """The command: imports the command line only here, so that a Ctrl-C while it loads
    (a second or more) ends with the one line of an interrupted run, not a traceback."""
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("nipype-secondlevel: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
    code = main()
    # The interpreter's last garbage collections, over the heap of numpy, scipy, nilearn
    # and nipype, cost up to a second at exit; nothing in it needs them (files are closed,
    # exit handlers still run): frozen objects are left out.
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(entry())
