"""What a command-line run prints: our lines only, one line per warning, nipype's
console log off.

Nipype logs a failing node on the console (``nipype.workflow ERROR: Node x failed
...``, the traceback, "Saving crash info to ...") and its warnings on stdout. The
command says the same in one line; the details stay in the crash file. Python
warnings (ours, nilearn's...) print as ``nipype-secondlevel: warning: ...``, one
line each (control characters escaped), without the source line; the few that say
nothing to the user are not printed (:data:`SILENCED`). MultiProc's workers, forked
during the run, inherit both.
"""

import logging
import warnings
from contextlib import contextmanager

from ..io.errors import InputWarning, escaped

#: Warnings that say nothing to the user (message patterns, matched at the start).
SILENCED = (
    # nilearn announces a new default for a threshold that we always give
    r"\s*From nilearn version>=0\.15, the default 'threshold'",
    # nilearn's figures of an empty map (nothing survived the threshold): the report says so
    r"empty mask$",
    r"Given img is empty",
)


def stopped_line(prog, signum):
    """The one line of a run stopped by signal ``signum`` (SIGINT: Ctrl-C, SIGTERM)."""
    import signal

    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    return f"{prog}: {what}; rerun the same command to resume"


@contextmanager
def one_line_warnings(prog):
    """Every warning printed as one line ``<prog>: warning: <message>``."""

    def one_line(message, category, filename, lineno, line=None):
        # (ours name the user's values: shown escaped; a library's: its lines joined)
        text = str(message) if issubclass(category, InputWarning) else " ".join(
            str(message).split())
        return f"{prog}: warning: {escaped(text)}\n"

    formatted, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        with warnings.catch_warnings():
            for pattern in SILENCED:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        warnings.formatwarning = formatted


def _console_handlers(logger):
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextmanager
def nipype_console_off():
    """Silence the console handler of nipype's loggers (file logging, if enabled, is
    kept); restored on exit. MultiProc's forked workers inherit the setting."""
    import nipype  # noqa: F401  (nipype adds its console handler when first imported)

    handlers = _console_handlers(logging.getLogger("nipype"))
    levels = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)
