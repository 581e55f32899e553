"""User-facing errors.

Anything the user can fix (a bad file, a wrong flag, a missing model) is raised as
``UserError`` with a one-line message that names what is wrong and where. The CLI turns it
into ``error: <message>`` on stderr and a non-zero exit; library callers can catch it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported in one line without a traceback."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class TrainingStopped(UserError):
    """Training stopped on purpose (non-finite loss); the last good checkpoint is kept."""

    exit_code = 3
