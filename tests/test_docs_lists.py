"""The documentation's lists of judges, metrics, methods, backends and model families name exactly
what the registries declare: a registration without its line in the docs (or a line left behind by
one removed) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def table_names(page: str, header: str) -> list[str]:
    """The backticked names opening each row of the table whose header row starts with ``header``."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        found = re.match(r"\|\s*`([^`]+)`", line)
        if found:
            names.append(found.group(1))
    return names


def test_the_families_table_lists_every_registered_family():
    from safeeraser.models.families import FAMILIES

    assert sorted(table_names("families.md", "| family | model | hub ids |")) == sorted(FAMILIES.declared())


def test_the_methods_table_lists_every_registered_method():
    from safeeraser.unlearn.methods import METHODS

    listed = table_names("methods.md", "| method | follows |")
    assert set(METHODS.declared()) <= set(listed)
    # besides them only the composed names (X+sineproject), spelt with a capital X
    assert {name for name in listed if name not in METHODS.declared()} <= {"X+sineproject"}


@pytest.mark.parametrize(
    "module, registry, page",
    [
        ("safeeraser.judge", "JUDGES", "metrics-and-judges.md"),
        ("safeeraser.metrics.registry", "METRICS", "metrics-and-judges.md"),
        ("safeeraser.generate.backends", "BACKENDS", "multi-gpu.md"),
    ],
)
def test_every_registered_judge_metric_and_backend_is_named_on_its_page(module, registry, page):
    import importlib

    names = getattr(importlib.import_module(module), registry).declared()
    text = (DOCS / page).read_text(encoding="utf-8")
    missing = [name for name in names if not re.search(rf"(`|\*\*){re.escape(name)}(`|\*\*)", text)]
    assert not missing, f"docs/{page} does not name {missing}"
