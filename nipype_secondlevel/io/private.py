"""Private folders: made by one process, written by it alone, and removed by it, also when
a stop signal (Ctrl-C, SIGTERM) ends its work.

Each is recorded before it exists, so a stop signal at any moment (even between the
``mkdir`` and the ``try`` that would remove it) leaves none that
:func:`remove_private_folders` does not find. This module imports nothing heavy: the
command's start-up and its interrupt handling use it.
"""

import os
import secrets
import shutil
from pathlib import Path

#: The private folders this process made and has not removed yet.
_private = set()
os.register_at_fork(after_in_child=_private.clear)  # a worker's are its own


def private_folder(parent, prefix, suffix=""):
    """Make a new folder ``<prefix><random><suffix>`` in ``parent``, mode 0700, that only
    this process writes in; remove it with :func:`remove_private_folder`."""
    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(8)}{suffix}"
        _private.add(path)  # (a stop signal may come the moment mkdir returns)
        try:
            os.mkdir(path, 0o700)
        except OSError as err:
            _private.discard(path)  # not made by us
            if isinstance(err, FileExistsError):
                continue  # someone else's: another name
            raise
        return path


def remove_private_folder(path):
    """Remove a folder :func:`private_folder` made, with what it holds (links are
    removed, never followed)."""
    shutil.rmtree(path, ignore_errors=True)
    _private.discard(path)


def remove_private_folders():
    """Remove every private folder this process made and still has: what the writers
    a stop signal interrupted left (called when a run is stopped)."""
    for path in list(_private):
        remove_private_folder(path)
