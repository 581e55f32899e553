"""Progress bars follow the caller's switch and, when on, the user's TQDM_* environment."""

import os
import subprocess
import sys

from safeeraser.progress import bar

# tqdm reads TQDM_* when it is imported, and tests/conftest.py sets TQDM_DISABLE for this
# process: what a bar does by default is asked of a fresh interpreter with a controlled environment.
PROBE = "from safeeraser.progress import bar; print(bar(range(3)).disable, bar(range(3), enabled=False).disable)"


def _probe(**tqdm_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")} | tqdm_env
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_bar_is_on_unless_switched_off():
    assert _probe() == "False True"  # no TQDM_* settings: on, unless the caller switches it off
    assert bar(range(3), enabled=False).disable is True  # switched off whatever the environment says


def test_tqdm_disable_in_the_environment_switches_bars_off():
    assert _probe(TQDM_DISABLE="1") == "True True"
    assert _probe(TQDM_DISABLE="") == "False True"


LOOP = (
    "import time\nfrom safeeraser.progress import bar\nfor _ in bar(range(300), desc='work'):\n    time.sleep(0.005)\n"
)


def test_a_bar_in_a_pipe_writes_a_few_lines_not_a_redraw_per_step():
    """300 steps over about 1.5 s into a pipe: the first and the last state, each a line of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    done = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "\r" not in done.stderr
    assert 1 <= len(lines) <= 3, lines
    assert lines[-1].startswith("work: 100%") and "300/300" in lines[-1]
    # the user's own TQDM_MININTERVAL still decides how often
    frequent = subprocess.run(
        [sys.executable, "-c", LOOP], capture_output=True, text=True, env=env | {"TQDM_MININTERVAL": "0"}, timeout=60
    )
    assert len(frequent.stderr.splitlines()) > 10
