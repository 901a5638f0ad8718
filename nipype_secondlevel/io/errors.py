"""User-facing errors: one class, one shape of message.

Every problem with what a user gave us (a file, a table, a parameter) is raised
as :class:`InputError` with a one-line message that names the thing and says
what is wrong with it. The command line prints that line and exits non-zero.
"""

import re


class InputError(ValueError):
    """Bad input from the user: a file, a table column or a parameter."""


class InputWarning(UserWarning):
    """Something in the user's input was changed to make the analysis possible (maps
    moved to the reference grid, voxels left out of the mask); the command prints it
    as one line ``nipype-secondlevel: warning: ...``."""


#: Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, and the
#: Unicode line separators and bidirectional overrides (which reorder what follows).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escaped(text):
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``).

    Values echoed from a user's files (a subject label, a path) reach the terminal in
    our messages: an escape sequence there could rewrite the screen, a newline would
    break the one line.

    >>> escaped("s01\\x1b[2J\\n")
    's01\\\\x1b[2J\\\\n'
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                        str(text))


def bad_input(what, problem):
    """Build an :class:`InputError` reading ``"<what>: <problem>"`` on one line (control
    characters of the values it echoes shown escaped, :func:`escaped`)."""
    return InputError(escaped(f"{what}: {problem}"))
