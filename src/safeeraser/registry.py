"""One small registry type: each seam of the toolkit (judges, metrics, ...) is one ``Registry``.

An entry is a frozen dataclass with a ``name``; the registry keeps them in registration order and
behaves as a read-only mapping from name to entry, so ``name in JUDGES``, ``list(JUDGES)`` and
``JUDGES["keyword"]`` all read it. An unknown name is a one-line ``UserError`` that lists the names.

Plugins: a package installed beside safeeraser adds entries without editing it, through the
entry-point group the registry names (``safeeraser.judges``, ``safeeraser.metrics``, ...). Each
entry point loads one entry object; they are read once, on the first lookup, so that importing
safeeraser stays cheap. A plugin that fails to load, or that reuses a built-in name, is an error
that names the plugin, never a silent skip.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Generic, TypeVar

from safeeraser.errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, group: str, entry_type: type):
        self.kind = kind  # "judge", "metric", ...: how an error names an entry
        self.group = group  # the entry-point group plugins register under
        self.entry_type = entry_type
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, entry: T) -> T:
        """Adds ``entry``; a second entry under a name already taken is an error."""
        if not isinstance(entry, self.entry_type):
            raise UserError(
                f"a {self.kind} registration must be a {self.entry_type.__name__}, got {type(entry).__name__}"
            )
        name = entry.name
        if name in self._entries:
            raise UserError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in sorted(metadata.entry_points(group=self.group), key=lambda p: p.name):
            try:
                entry = point.load()
            except Exception as e:  # a broken plugin is named, not skipped
                raise UserError(
                    f"the {self.kind} plugin {point.name!r} ({point.value}) failed to load: {type(e).__name__}: {e}"
                ) from e
            if getattr(entry, "name", None) != point.name:
                raise UserError(
                    f"the {self.kind} plugin {point.name!r} ({point.value}) loads an entry named {getattr(entry, 'name', None)!r}: the names must agree"
                )
            self.register(entry)

    def __getitem__(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}: expected one of {', '.join(self)}") from None

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def declared(self) -> tuple[str, ...]:
        """The names registered so far, without reading plugins (the built-ins, at import time)."""
        return tuple(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"
