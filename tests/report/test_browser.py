"""index.html in a real browser: it renders, and its script runs without errors.

Needs Debian's ``chromium`` on PATH (``apt-get install -y chromium``); skipped without it.
To look at the page yourself, the same command the test runs::

    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \\
        --disable-background-networking --disable-component-update --disable-sync \\
        --user-data-dir=/tmp/chromium-profile --screenshot=/tmp/report.png \\
        --window-size=1280,2000 file:///ABSOLUTE/PATH/TO/REPORT/index.html
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from .conftest import study_report

# Offline and quiet: no network, no first-run or background services.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need_chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not on PATH (apt-get install -y chromium)")
    return exe


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_need_chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=90
    )


def test_page_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    done = _chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", (report / "index.html").as_uri()
    )
    assert shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1280, 2000)
        colours = img.convert("RGB").resize((64, 100)).getcolors(maxcolors=64 * 100)
    assert len(colours) > 50  # table, plots and text, not a blank or error page


def test_page_script_runs_without_errors(report, tmp_path):
    done = _chromium(
        tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom", (report / "index.html").as_uri()
    )
    dom = done.stdout
    assert '<table class="results">' in dom
    assert '<span id="f-count">6 shown</span>' in dom  # written by the filter script once it has run
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console


def test_a_two_seed_study_page_renders_its_across_seed_table(demo_runs, tmp_path):
    _need_chromium()  # before building the runs
    out = study_report(demo_runs[0], tmp_path / "study", ["po", "po+pd"], seeds=[0, 1])
    shot = tmp_path / "study.png"
    done = _chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", (out / "index.html").as_uri()
    )
    assert shot.exists(), done.stderr[-2000:]
    dom = _chromium(tmp_path / "profile", "--dump-dom", (out / "index.html").as_uri()).stdout
    assert "<h2>Across seeds</h2>" in dom and ">Seed ids</th>" in dom and "(1 seed)" not in dom
