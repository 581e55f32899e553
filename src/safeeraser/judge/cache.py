"""A persistent cache of judge verdicts, so that the same answer is never judged twice.

One sqlite file, by default in the user's cache directory (``default_path``), shared by every
output folder, method and rerun: each committed row survives a crash, and several processes may
use it at once (write-ahead log, so readers never wait, and a busy timeout, so that writers
queue instead of failing). A row is keyed by the sha256 of (judge identity, full prompt) and
holds only the verdict's fields: no endpoint, no key. Failed verdicts are never stored, nor an
unreadable score answer read as 0.0: a rerun asks them again. A row is one request's answer:
under the published protocol, one sub-question of an item.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.judge.base import Verdict

FIELDS = ("refusal", "unsafe", "normal", "score", "note")
BUSY_TIMEOUT = 60.0  # seconds a writer waits for another process's transaction before failing


def default_path() -> Path:
    """``$XDG_CACHE_HOME/safeeraser/judge.sqlite`` (``~/.cache/...`` when XDG_CACHE_HOME is unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "safeeraser" / "judge.sqlite"


def cache_key(identity, prompt) -> str:
    """The key of one prompt's answer under one judge (``identity``: what besides the prompt decides it)."""
    return hashlib.sha256(json.dumps([identity, prompt], ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class VerdictCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        # A cache file that exists is checked now; a new one is made at the first look-up, so
        # that a run stopped by bad input leaves no file behind.
        if self.path.exists():
            self._connect()

    @property
    def db(self) -> sqlite3.Connection:
        return self._db if self._db is not None else self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The judge's worker threads write to it, one at a time under the judge's lock; other
            # processes queue behind the busy timeout.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            with self._db:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, fields TEXT NOT NULL, created REAL NOT NULL)"
                )
        except (OSError, sqlite3.Error) as e:
            raise UserError(f"{self.path}: cannot use as judge cache ({e})") from None
        return self._db

    def get_many(self, keys: list[str]) -> dict[str, Verdict]:
        found = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), 500):  # sqlite limits the number of bound parameters
            chunk = unique[start : start + 500]
            rows = self.db.execute(
                f"SELECT key, fields FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((key, Verdict(**json.loads(fields), cached=True)) for key, fields in rows)
        return found

    def put(self, key: str, verdict: Verdict) -> None:
        if not verdict.ok or verdict.errors:  # a partly failed verdict would hide its failed part on a rerun
            return
        if verdict.read_as_zero:  # an unreadable answer stands in as 0.0 for this run only: a rerun asks again
            return
        fields = {f: getattr(verdict, f) for f in FIELDS if getattr(verdict, f) is not None}
        with self.db:  # one transaction per verdict: a crash loses at most the one in flight
            self.db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?)", (key, json.dumps(fields), time.time()))
