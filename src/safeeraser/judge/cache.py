"""A persistent cache of judge verdicts, so that a rerun asks nothing it has already asked.

One sqlite file: each committed row survives a crash, and several processes may share it.
A row is keyed by the sha256 of (judge model, full prompt) and holds only the verdict's
fields: no endpoint, no key. Failed verdicts are never stored: a rerun asks them again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.judge.base import Verdict

FIELDS = ("refusal", "unsafe", "normal", "score", "note")


def cache_key(model: str, messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps([model, messages], ensure_ascii=False).encode()).hexdigest()


class VerdictCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Only the thread that calls ``judge`` uses it, but that need not be the one that built it.
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            with self.db:
                self.db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, fields TEXT NOT NULL, created REAL NOT NULL)")
        except (OSError, sqlite3.Error) as e:
            raise UserError(f"{self.path}: cannot use as judge cache ({e})") from None

    def get_many(self, keys: list[str]) -> dict[str, Verdict]:
        found = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), 500):  # sqlite limits the number of bound parameters
            chunk = unique[start : start + 500]
            rows = self.db.execute(f"SELECT key, fields FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update((key, Verdict(**json.loads(fields), cached=True)) for key, fields in rows)
        return found

    def put(self, key: str, verdict: Verdict) -> None:
        if not verdict.ok:
            return
        fields = {f: getattr(verdict, f) for f in FIELDS if getattr(verdict, f) is not None}
        with self.db:  # one transaction per verdict: a crash loses at most the one in flight
            self.db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?)", (key, json.dumps(fields), time.time()))
