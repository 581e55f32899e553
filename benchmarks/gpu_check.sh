#!/usr/bin/env bash
# The GPU check (benchmarks/README.md, "GPU check"): LLaVA-1.5-7B (and Qwen2.5-VL-7B) at their
# real sizes, randomly initialised; 20 unlearning steps of po+pd and kl+pd; published-protocol
# generation on 512 prompts; a JSON summary. Nothing is downloaded.
#
#   benchmarks/gpu_check.sh                 # on one GPU (about 8 minutes on an H200, not yet measured)
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
if ! "$PYTHON" -c "import pydantic, yaml, PIL, peft, accelerate" 2>/dev/null; then
  if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
    site="$(mktemp -d)"
    "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" benchmarks/wheels/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
  else
    echo "gpu_check: a dependency is missing and benchmarks/wheels/ holds no wheels (see benchmarks/README.md)" >&2
    exit 2
  fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
