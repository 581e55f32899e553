"""Files in and out.

Out: a result is either complete on disk or absent, never half-written: every file goes through
``atomic_path`` (a temporary file beside it, renamed over it on success) and every folder through
``atomic_dir`` or ``replace_files``.

In: ``read_json`` and ``read_jsonl`` turn every way a file can be unreadable into a one-line
``UserError`` that names the file (and the line).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from safeeraser.errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` to write; when the block succeeds it is synced and renamed
    over ``path``, when it fails it is removed. ``suffix`` keeps a name's extension for writers
    that read the format from it (matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.close(fd)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def check_output_file(path: Path) -> None:
    """Refuse an output file that could never be written, before hours of work go into it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; --out names the file to write")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{path}: cannot be written, {above} is a file and not a folder")


def refuse_foreign_folder(path: Path, *, marker: str) -> None:
    """Refuse to replace a non-empty folder that this tool did not write (no ``marker`` file in it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise UserError(f"{path}: folder exists and is not empty; choose a new --out or empty it")


def _temp_dir_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a folder under a temporary name; on success it replaces ``path`` in one rename."""
    path = Path(path)
    tmp = _temp_dir_beside(path)
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


@contextlib.contextmanager
def replace_files(folder: Path, names: Iterable[str]) -> Iterator[Path]:
    """Write the files ``names`` into a temporary folder beside ``folder``; when the block succeeds,
    each one written replaces its namesake in ``folder`` with one rename, and each one not written
    is removed from ``folder`` (left by an earlier writer). Other files in ``folder`` are left
    alone, and a failed block changes nothing in it."""
    folder = Path(folder)
    staging = _temp_dir_beside(folder)
    try:
        yield staging
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (staging / name).exists():
                os.replace(staging / name, folder / name)
            else:
                (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class JsonlLog:
    """Append-only JSON Lines file, flushed per line; a torn last line is ignored on read (``read_jsonl``)."""

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


def read_text(path: Path) -> str:
    """A UTF-8 text file (a leading byte-order mark dropped)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a JSON file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def parse_json(text: str, where: str, *, line: bool = False) -> Any:
    """``json.loads`` with every way it can fail (bad syntax, nesting too deep, a huge integer) as a UserError."""
    what = "JSON Lines record" if line else "JSON"
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if line:
            raise UserError(f"{where}: invalid {what}: {e.msg} (column {e.colno})") from None
        raise UserError(f"{where}: invalid {what} at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"{where}: unreadable {what} ({' '.join(str(e).split()[:8])})") from None


def parse_json_lines(text: str, path: Path) -> list[Any]:
    """Every non-blank line of a JSON Lines text; an error names the line."""
    # Only "\n" ends a record: str.splitlines() would also split at U+2028 and kin, which JSON
    # allows unescaped inside strings.
    return [
        parse_json(line, f"{path}: line {n}", line=True)
        for n, line in enumerate(text.split("\n"), start=1)
        if line.strip()
    ]


def read_json(path: Path) -> Any:
    return parse_json(read_text(path), str(path))


def read_jsonl(path: Path, *, repair: bool = False) -> list[Any]:
    """The rows of a JSON Lines file this tool wrote ([] when there is none).

    A last line without its newline was cut short by a crash (``JsonlLog`` writes whole lines):
    it is dropped, and with ``repair`` cut from the file too, so that appending can go on. Any
    other line that is not JSON is damage no crash leaves, and an error.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    whole = data[: data.rfind(b"\n") + 1]
    try:
        text = whole.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    rows = parse_json_lines(text, path)
    if repair and len(whole) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(whole))
    return rows
