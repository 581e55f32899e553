#!/usr/bin/env bash
# The GPU check (benchmarks/README.md, "GPU check"): LLaVA-1.5-7B (and Qwen2.5-VL-7B) at their
# real sizes, randomly initialised; 20 unlearning steps of po+pd and kl+pd; published-protocol
# generation on 512 prompts; a JSON summary. Nothing is downloaded.
#
#   benchmarks/gpu_check.sh                 # on one GPU (about 8 minutes on an H200, not yet measured),
#                                           # then the real processors against the parts path (pytest)
#   benchmarks/gpu_check.sh --dry-run       # on a CPU: tiny widths, same code paths, under a minute
#   benchmarks/gpu_check.sh --out FILE ...  # every other flag: python benchmarks/gpu_check.py --help
#
# It runs from this checkout without installing the package. safeeraser's dependencies that the
# machine lacks (on the lent GPU machine: pydantic and its three helpers) are installed from
# benchmarks/wheels/ into a temporary folder when that folder holds them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import pydantic, yaml, PIL, peft, accelerate, pytest" 2>/dev/null && compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
  site="$(mktemp -d)"
  "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" benchmarks/wheels/*.whl
  export PYTHONPATH="$PYTHONPATH:$site"
fi
if ! "$PYTHON" -c "import pydantic, yaml, PIL, peft, accelerate" 2>/dev/null; then
  echo "gpu_check: a dependency is missing and benchmarks/wheels/ does not hold it (see benchmarks/README.md)" >&2
  exit 2
fi
"$PYTHON" benchmarks/gpu_check.py "$@"
# Where torchvision imports (every GPU install), the families whose tests here build their inputs
# from the image processor and tokenizer ("parts path") are checked against their real processor
# classes: the tests skip on the CPU machines. Needs pytest (carried as wheels, see the README).
case " $* " in *" --dry-run "*) exit 0 ;; esac
if "$PYTHON" -c "import pytest, torchvision" 2>/dev/null; then
  mkdir -p benchmarks/results
  "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" -rs tests/models/test_families.py -k "parts_path_builds_what_the_real" \
    2>&1 | tee benchmarks/results/gpu_processors.txt
  exit "${PIPESTATUS[0]}"
fi
echo "gpu_check: the real-processor comparison needs pytest and torchvision; skipped" >&2
