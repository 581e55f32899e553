"""Helpers for the reliability tests: the CLI in a real subprocess, waiting on it, and file snapshots."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.judge.test_openai_judge import server  # noqa: F401  (the loopback judge server fixture)

PATIENCE = 600  # seconds; generous, because the machine may be busy with other work


def error_lines(text: str) -> list[str]:
    """The lines of a command's output that report an error (progress bars end their lines in \\r)."""
    return [line for line in re.split(r"[\r\n]", text) if line.startswith("error:")]


def _as_from_a_terminal() -> None:
    """In the child: Ctrl-C's default action, as in a terminal. A shell that starts a job in the
    background (``cmd &``, as CI runners may) has it ignored, and Python, seeing it ignored at
    start, would never raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Cli:
    """``python -m safeeraser ...`` in a real subprocess; its output goes to a file (a pipe could fill up and stall it)."""

    def __init__(self, args: list, log: Path, env: dict | None = None):
        self.log = Path(log)
        # One OpenMP thread: on a busy machine, threads of several processes spinning against each
        # other slow a run down many times over.
        env = {**(os.environ if env is None else env), "OMP_NUM_THREADS": "1"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "safeeraser", *map(str, args)],
                stdout=out,
                stderr=out,
                env=env,
                preexec_fn=_as_from_a_terminal,
            )

    @property
    def output(self) -> str:
        """What it wrote to stdout and stderr."""
        return self.log.read_text(errors="replace")

    def wait_until(self, condition, what: str) -> None:
        """Poll ``condition`` until it holds while the process still runs."""
        deadline = time.monotonic() + PATIENCE
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended (exit {self.proc.returncode}) before {what}:\n{self.output[-3000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"gave up waiting for {what}")
            time.sleep(0.005)

    def stop(self, sig: int = signal.SIGKILL) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=PATIENCE)

    def finish(self) -> int:
        return self.proc.wait(timeout=PATIENCE)


def run_to_end(args: list, log: Path, env: dict | None = None) -> str:
    """Run a command to its end; it must succeed. Returns its output."""
    cli = Cli(args, log, env)
    code = cli.finish()
    assert code == 0, cli.output[-3000:]
    return cli.output


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too), with a digest of each file's bytes."""
    return {
        str(p.relative_to(root)): "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }
