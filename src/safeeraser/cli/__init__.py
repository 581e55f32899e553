"""Command line: a thin shell over the library. Every user error ends in one line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as cli_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as cli_errors

# isort: off
# The commands register themselves on the app in import order, which is the order --help lists them.
from safeeraser.cli import data_commands  # noqa: F401
from safeeraser.cli import train_commands  # noqa: F401
from safeeraser.cli import eval_commands  # noqa: F401
from safeeraser.cli import study_commands  # noqa: F401

# isort: on
from safeeraser.cli.common import _positive, _say, app  # noqa: F401
from safeeraser.errors import UserError


def _pin_cpu_isa(argv: list[str]) -> None:
    """The demo, and any command after --reproducible, pin the kernels' instruction set (numerics.py),
    before torch loads; SAFEERASER_REPRODUCIBLE=1/0 decides for every command."""
    from safeeraser.numerics import pin_cpu_isa, wanted

    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    asked = "--reproducible" in argv[:command]
    if wanted(default=asked or argv[command : command + 1] == ["demo"]):
        done = pin_cpu_isa()
        if asked and "not pinned" in done:
            print(f"note: --reproducible: {done}", file=sys.stderr)


INTERRUPTED = 130  # the shell's exit code for a process stopped by Ctrl-C (128 + SIGINT)


def _interrupted() -> NoReturn:
    print("error: interrupted; finished work is kept, rerun the same command to resume", file=sys.stderr)
    sys.exit(INTERRUPTED)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; turn user errors into one line and an exit code."""
    if argv is None:  # the process's own command line (called with argv, e.g. in tests, the caller's environment stays)
        _pin_cpu_isa(sys.argv[1:])
    try:
        result = app(args=argv, standalone_mode=False, prog_name="safeeraser")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except cli_errors.UsageError as e:
        if e.format_message():  # (empty when a group was called without a command: help was shown)
            where = f" ({e.ctx.command_path})" if e.ctx else ""
            print(f"error: {e.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    if result == INTERRUPTED:  # typer turns Ctrl-C inside a command into this code and returns it
        _interrupted()
    sys.exit(result if isinstance(result, int) else 0)
