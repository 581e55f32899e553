"""Shared fixtures: the real demo benchmark and the real tiny model, built once per test run.

Under pytest-xdist (``python -m pytest -n 2``, as CI runs it) the models and datasets that
session fixtures build are built once for all workers (:func:`built_once`), and each worker's
torch gets its share of the cores. (A module-scoped fixture is built by each worker that runs a
test of its module.)
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id never reaches the network in tests

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Each worker (and the processes its tests start) gets its share of the cores: workers whose
    # OpenMP threads outnumber the cores spin against each other and slow every test down.
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    if "torch" in sys.modules:  # (imported before this file, by a plugin: set it directly)
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build(folder)`` fills, built once per test run.

    Alone, it is a fresh temporary folder. Under pytest-xdist, the first worker to ask builds it in
    the run's temporary folder that all workers share, holding a file lock, and the others wait
    for that lock and reuse the folder (a build that failed is retried by the next one to ask).
    The build uses every core, as it would without xdist (the other workers mostly wait for it)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    import torch
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / "built-once"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            threads = torch.get_num_threads()
            torch.set_num_threads(os.cpu_count() or 1)
            try:
                build(folder)
            finally:
                torch.set_num_threads(threads)
            done.touch()
    return folder


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


# CI (.ci/run) makes the README's demo (`safeeraser demo`, seed 0) beside the suite. Its data and
# tiny model are these fixtures' recipe (the demo benchmark at its defaults, the tiny LLaVA trained
# on it at seed 0), so the suite waits for them there rather than building them a second time.
# SAFEERASER_TEST_DEMO_BESIDE names the demo's folder and SAFEERASER_TEST_DEMO_BESIDE_EXIT the file
# its exit status is written to: a demo that ended without them, or built them otherwise, lends
# nothing, and the fixtures build their own (as they do wherever the variables are not set).
DEMO_BESIDE_WAIT_S = 1800


def from_demo_beside(part: str, marker: str, want: dict) -> Path | None:
    """``DEMO/part`` once its marker is written, when its record holds ``want``; else None."""
    import json
    import time

    demo, exit_file = os.environ.get("SAFEERASER_TEST_DEMO_BESIDE"), os.environ.get("SAFEERASER_TEST_DEMO_BESIDE_EXIT")
    if not demo:
        return None
    folder = Path(demo) / part
    deadline = time.monotonic() + DEMO_BESIDE_WAIT_S
    while not (folder / marker).is_file():  # (both folders are written whole, by a rename)
        if (exit_file and Path(exit_file).exists()) or time.monotonic() > deadline:
            return None
        time.sleep(1)
    record = json.loads((folder / marker).read_text())
    return folder if all(record.get(key, default) == value for key, (value, default) in want.items()) else None


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A demo benchmark at the default size (do not modify: copy it first)."""
    from safeeraser.data.demo import IMAGES_PER_CATEGORY, MARKER, make_demo

    beside = from_demo_beside("data", MARKER, {"seed": (0, None), "images_per_category": (IMAGES_PER_CATEGORY, None)})
    return beside or built_once(tmp_path_factory, "demo", lambda folder: make_demo(folder / "data")) / "data"


@pytest.fixture(scope="session")
def tiny_model(demo_data, tmp_path_factory) -> Path:
    """The tiny vanilla LLaVA trained on the demo data (about a minute on 2 cores; do not modify)."""
    from safeeraser.models.families.llava import SIZES
    from safeeraser.models.tiny import MARKER, make_tiny

    beside = os.environ.get("SAFEERASER_TEST_DEMO_BESIDE")
    if beside and demo_data.parent == Path(beside):  # (the model only with the demo's own data)
        want = {
            "family": ("llava", "llava"),
            "size": ("tiny", None),
            "seed": (0, None),
            "steps": (SIZES["tiny"].steps, None),
        }
        beside = from_demo_beside("model", MARKER, want)
        if beside is not None:
            return beside
    return (
        built_once(tmp_path_factory, "model", lambda folder: make_tiny(demo_data, folder / "tiny", progress=False))
        / "tiny"
    )


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
