"""Shared fixtures: the real demo benchmark and the real tiny model, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id never reaches the network in tests


@pytest.fixture(autouse=True)
def judge_cache_home(tmp_path_factory, monkeypatch) -> Path:
    """Each test's own user cache directory (XDG_CACHE_HOME): no test reads or writes the real
    judge cache, and no test sees verdicts another one cached. The judge cache is
    ``judge_cache_home / "safeeraser" / "judge.sqlite"``."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def pytest_collection_modifyitems(items):
    """A test that needs the trained tiny model is slow: the session pays minutes to train it.

    (A test that asks for it at run time, by ``request.getfixturevalue``, is not seen here: mark
    it ``slow`` itself.) The fast tier is ``python -m pytest -m "not slow"``.
    """
    for item in items:
        if "tiny_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A demo benchmark at the default size (do not modify: copy it first)."""
    from safeeraser.data.demo import make_demo

    out = tmp_path_factory.mktemp("demo") / "data"
    make_demo(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(demo_data, tmp_path_factory) -> Path:
    """The tiny vanilla LLaVA trained on the demo data (about a minute on 2 cores)."""
    from safeeraser.models.tiny import make_tiny

    out = tmp_path_factory.mktemp("model") / "tiny"
    make_tiny(demo_data, out, progress=False)
    return out


def run_cli(*args: str):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from safeeraser.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()
