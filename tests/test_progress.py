"""Progress bars follow the caller's switch and, when on, the user's TQDM_* environment."""

import os
import subprocess
import sys

from safeeraser.progress import bar


def test_a_bar_is_on_unless_switched_off():
    if os.environ.get("TQDM_DISABLE"):
        return  # the environment of this run switches bars off
    assert bar(range(3)).disable is False
    assert bar(range(3), enabled=False).disable is True


def test_tqdm_disable_in_the_environment_switches_bars_off():
    # tqdm reads TQDM_* when it is imported, so ask a fresh interpreter
    probe = "from safeeraser.progress import bar; print(bar(range(3)).disable)"
    for value, expected in (("1", "True"), ("", "False")):
        env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | ({"TQDM_DISABLE": value} if value else {})
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
        assert done.stdout.strip() == expected, done.stderr
