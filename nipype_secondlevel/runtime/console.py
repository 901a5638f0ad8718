"""What a command-line run prints: our lines only, nipype's console log off.

Nipype logs a failing node on the console (``nipype.workflow ERROR: Node x failed
...``, the traceback, "Saving crash info to ...") and its warnings on stdout. The
command says the same in one line; the details stay in the crash file.
"""

import logging
from contextlib import contextmanager


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
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)
