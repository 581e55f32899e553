"""Progress bars: tqdm, off when a caller asks, and otherwise as the user's ``TQDM_*`` settings say.

tqdm reads ``TQDM_DISABLE``, ``TQDM_MININTERVAL`` and the like from the environment, but only
for options a caller leaves out; so ``disable`` is passed only to switch a bar off.

On a terminal a bar updates in place. Written to a file or a pipe (a log), a bar is one line per
update, at most one every ``QUIET_INTERVAL`` seconds (and its last state when it closes), instead
of a carriage-return redraw at every step: a 240-prompt generation leaves a few lines, not hundreds.
"""

from __future__ import annotations

import os
import sys

QUIET_INTERVAL = 30.0  # seconds between a bar's lines in a log


class _Lines:
    """A stream for tqdm that writes each redraw as a line of its own (for files and pipes)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(*args, enabled: bool = True, **options):
    from tqdm.auto import tqdm

    if not enabled:
        options["disable"] = True
    options.setdefault("dynamic_ncols", True)
    stream = options.get("file") or sys.stderr
    if not _is_terminal(stream):
        options["file"] = _Lines(stream)
        if "TQDM_MININTERVAL" not in os.environ:
            options.setdefault("mininterval", QUIET_INTERVAL)
        options.setdefault("ncols", 100)
    return tqdm(*args, **options)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
