"""User-facing errors: one class, one shape of message.

Every problem with what a user gave us (a file, a table, a parameter) is raised
as :class:`InputError` with a one-line message that names the thing and says
what is wrong with it. The command line prints that line and exits non-zero.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a table column or a parameter."""


class InputWarning(UserWarning):
    """Something in the user's input was changed to make the analysis possible (maps
    moved to the reference grid, voxels left out of the mask); the command prints it
    as one line ``nipype-secondlevel: warning: ...``."""


def bad_input(what, problem):
    """Build an :class:`InputError` reading ``"<what>: <problem>"`` on one line."""
    message = f"{what}: {problem}".replace("\n", " ")
    return InputError(message)
