"""Write docs/cli.md, the command-line reference, from the typer app's own --help texts.

    python scripts/cli_reference.py           # rewrite docs/cli.md
    python scripts/cli_reference.py --check   # exit 1 when docs/cli.md differs from the app

tests/test_cli_reference.py runs the check, so the page cannot drift from ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
WIDTH = "100"


def commands(group, path=()):
    """(path, command) of every command under the group, depth first in the order defined."""
    yield path, group
    if hasattr(group, "list_commands"):
        for name in group.list_commands(None):
            yield from commands(group.get_command(None, name), (*path, name))


def render() -> str:
    os.environ.update({"TERMINAL_WIDTH": WIDTH, "COLUMNS": WIDTH, "NO_COLOR": "1", "TERM": "dumb"})
    import typer
    from typer.testing import CliRunner

    from safeeraser.cli import app

    runner = CliRunner()
    out = [
        "# Command-line reference\n",
        "Every command's `--help`, generated from the program itself by `python scripts/cli_reference.py`",
        "(a test fails when this page and the program differ). `python -m safeeraser …` works the same.\n",
    ]
    for path, _ in commands(typer.main.get_command(app)):
        result = runner.invoke(
            app, [*path, "--help"], env={"TERMINAL_WIDTH": WIDTH, "COLUMNS": WIDTH, "NO_COLOR": "1", "TERM": "dumb"}
        )
        if result.exit_code != 0:
            raise SystemExit(f"safeeraser {' '.join(path)} --help failed: {result.output}")
        title = " ".join(("safeeraser", *path))
        output = result.output.replace("Usage: root", "Usage: safeeraser")
        body = "\n".join(line.rstrip() for line in output.strip("\n").splitlines())
        out.append(f"## `{title}`\n\n```text\n{body}\n```\n")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare docs/cli.md with the app instead of writing it")
    args = parser.parse_args()
    text = render()
    if args.check:
        if PAGE.read_text(encoding="utf-8") != text:
            print(
                f"{PAGE.relative_to(ROOT)} differs from the program's --help: run python scripts/cli_reference.py",
                file=sys.stderr,
            )
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
