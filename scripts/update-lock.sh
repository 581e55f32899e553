#!/usr/bin/env bash
# Regenerate constraints.txt, the lock of exact versions used by the demo, the tests, CI and the
# benchmarks.
#
# Builds a fresh temporary virtualenv, installs torch (CPU build) and then `-e ".[test,bench,docs,cluster,trackers,audit]"`
# WITHOUT the current lock, so pip picks today's newest versions that pyproject.toml allows, and
# writes `pip freeze --exclude-editable` (sorted, under a header) to constraints.txt.
# pyproject.toml itself keeps the library's version ranges; only this file pins.
#
# Usage: scripts/update-lock.sh            (PYTHON=python3.11 scripts/update-lock.sh to choose Python)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"   # the CPU build; keep in step with README.md and .ci/run
LOCK="constraints.txt"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "update-lock: fresh venv in $tmp ($("$PYTHON" --version 2>&1))"
"$PYTHON" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip)
# PIP_CONSTRAINT from the caller's environment must not leak in: the lock is made unconstrained.
unset PIP_CONSTRAINT
echo "update-lock: pip install torch==$TORCH_VERSION"
"${pip[@]}" install -q "torch==$TORCH_VERSION"
echo "update-lock: pip install -e \".[test,bench,docs,cluster,trackers,audit]\" (newest versions pyproject.toml allows)"
"${pip[@]}" install -q -e ".[test,bench,docs,cluster,trackers,audit]"
"$tmp/venv/bin/python" -c "import safeeraser, torch, transformers, peft" # the lock must import

frozen="$tmp/frozen.txt"
"${pip[@]}" freeze --exclude-editable > "$frozen"
# Only plain `name==version` pins belong in a constraints file (no URLs, no editable lines).
if grep -v -E '^[A-Za-z0-9._-]+==[^ ]+$' "$frozen"; then
  echo "update-lock: pip freeze printed the lines above, which are not name==version pins" >&2
  exit 1
fi
torch_built="$(grep -i -E '^torch==' "$frozen" | cut -d= -f3)"
pyver="$("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())')"

{
  cat <<HEADER
# constraints.txt: the lock. Exact versions of every package the demo, the tests, CI and the
# benchmarks install: torch==$TORCH_VERSION (CPU build) and everything \`pip install -e ".[test,bench,docs,cluster,trackers,audit]"\`
# pulls in, transitively. It is a pip constraints file: it pins versions, it installs nothing.
#
#   pip install torch==$TORCH_VERSION -c constraints.txt && pip install -c constraints.txt -e ".[test]"
#
# pyproject.toml keeps the library's ranges: in your own environment \`pip install -e .\` works
# with any versions inside them, but numbers may then differ from the README's.
#
# Do not edit by hand. To update: scripts/update-lock.sh (a fresh venv, the newest versions
# pyproject.toml allows, pip freeze), then regenerate the README tables:
# python scripts/regenerate_readme.py
#
# Made with Python $pyver; torch was $torch_built, pinned without its local
# label (+cpu) so that the build that fits the machine satisfies it.
HEADER
  # Drop local version labels (torch 2.13.0+cpu -> 2.13.0): a CUDA or ROCm build of the same
  # release must satisfy the lock too, and PyPI has no "+cpu" release.
  sed -E 's/^([^=]+==[^+]+)\+.*$/\1/' "$frozen" | LC_ALL=C sort -f -t= -k1,1
} > "$LOCK.tmp"
mv "$LOCK.tmp" "$LOCK"

echo "update-lock: wrote $LOCK ($(grep -c '==' "$LOCK") pins)"
grep -i -E '^(torch|transformers|peft|accelerate|tokenizers)==' "$LOCK" | sed 's/^/  /'
echo
echo "REMINDER: the lock changed the versions the README's numbers come from."
echo "Regenerate the README tables: python scripts/regenerate_readme.py"
