"""User-facing errors.

Anything the user can fix (a bad file, a wrong flag, a missing model) is raised as
``UserError`` with a one-line message that names what is wrong and where. The CLI turns it
into ``error: <message>`` on stderr and a non-zero exit; library callers can catch it.
"""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """A problem with the user's input, reported in one line without a traceback."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class TrainingStopped(UserError):
    """Training stopped on purpose (non-finite loss); the last good checkpoint is kept."""

    exit_code = 3


@dataclass(frozen=True)
class FieldProblem:
    """The first problem a pydantic ``ValidationError`` reports, in the words of our messages."""

    loc: tuple  # where in the data, as pydantic gives it: ("unsafe_pairs", 0, "question")
    kind: str  # pydantic's error type: missing, extra_forbidden, too_short, ...
    problem: str  # what is wrong, in words
    more: str  # " (+N more problems)", or ""

    @property
    def field(self) -> str:
        """The location as it reads in the data: ``unsafe_pairs[0].question``."""
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out


def field_problem(error) -> FieldProblem:
    """The first problem of ``error`` (a pydantic ``ValidationError``)."""
    first = error.errors()[0]
    if first["type"] == "missing":
        problem = "missing"
    elif first["type"] == "extra_forbidden":  # (only the unlearning config forbids unknown keys)
        problem = "unknown setting"
    else:
        problem = f"{first['msg'].lower()} (got {type(first.get('input')).__name__})"
    more = f" (+{error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return FieldProblem(tuple(first["loc"]), first["type"], problem, more)
