"""Atomic file output: a result is either complete on disk or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def check_output_file(path: Path) -> None:
    """Refuse an output file that could never be written, before hours of work go into it."""
    from safeeraser.errors import UserError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; --out names the file to write")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{path}: cannot be written, {above} is a file and not a folder")


def refuse_foreign_folder(path: Path, *, marker: str) -> None:
    """Refuse to replace a non-empty folder that this tool did not write (no ``marker`` file in it)."""
    from safeeraser.errors import UserError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise UserError(f"{path}: folder exists and is not empty; choose a new --out or empty it")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a folder under a temporary name; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class JsonlLog:
    """Append-only JSON Lines file, flushed per line; a torn last line is ignored on read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def append(self, row: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict]:
    """The complete lines of a JSONL file; a line cut short by a crash, and all after it, are dropped.

    With ``repair`` the file is also truncated to those lines, so that appending can go on.
    """
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    good = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            good += len(line)
    if repair and good != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good)
    return rows
