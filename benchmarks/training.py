"""Training step time and peak memory per unlearning method, each in a fresh process.

The worker (``python benchmarks/training.py ...``) runs the library's real ``unlearn`` for a few
steps and times every optimizer step. Peak memory is the process's resident high-water mark
(``VmHWM`` in /proc/self/status; ``ru_maxrss`` would not do, as Linux carries the parent's
resident size over into it) read after the last step, so every method pays the same import and
load costs and nothing after training (saving, plotting) counts.

``--reference copy`` is the published way, for comparison only: the KL / NPO reference is a
second full model loaded from disk instead of the adapter switched off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.15  # KL and NPO peak memory at most this multiple of GA's


def max_rss_mb() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # reported in kB


def measure(model: str, data: str, method: str, reference: str, steps: int, batch_size: int) -> dict:
    """Run ``unlearn`` for ``steps`` optimizer steps in this process; the first is a warm-up."""
    import torch

    from safeeraser.models.loading import load_model
    from safeeraser.unlearn import trainer
    from safeeraser.unlearn.config import resolve_config
    from safeeraser.unlearn.methods.base import Forward

    baseline = max_rss_mb()
    times: list[float] = []
    peak = [0.0]
    real_step = trainer.UnlearnRun.step

    def timed_step(*args, **kwargs):
        began = time.perf_counter()
        terms = real_step(*args, **kwargs)
        times.append(time.perf_counter() - began)
        peak[0] = max_rss_mb()
        return terms

    class SecondCopyForward(Forward):
        """The reference as the published code makes it: a second full model in memory."""

        def __init__(self, wrapped, peft_model=None):
            super().__init__(wrapped, peft_model)
            self.copy = load_model(model).model.requires_grad_(False)

        @torch.no_grad()
        def reference_logits(self, batch: dict) -> torch.Tensor:
            return self.copy(**self.inputs(batch)).logits

    trainer.UnlearnRun.step = timed_step
    if reference == "copy":
        trainer.Forward = SecondCopyForward
    config = resolve_config(
        overrides=[{"max_steps": steps, "batch_size": batch_size, "grad_accum": 1, "eval_every": 0}]
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer.unlearn(model, data, method, Path(tmp) / "run", config, progress=False)
    return {
        "method": method + (" (second copy)" if reference == "copy" else ""),
        "reference": reference,
        "steps_timed": len(times) - 1,
        "step_seconds": statistics.median(times[1:]),
        "peak_rss_mb": peak[0],
        "baseline_rss_mb": baseline,
    }


def run_isolated(model: Path, data: Path, method: str, reference: str, *, steps: int, batch_size: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        cmd = [
            sys.executable,
            __file__,
            "--model",
            str(model),
            "--data",
            str(data),
            "--method",
            method,
            "--reference",
            reference,
            "--steps",
            str(steps),
            "--batch-size",
            str(batch_size),
            "--out",
            result.name,
        ]
        subprocess.run(cmd, check=True)
        return json.loads(Path(result.name).read_text())


def run(model: Path, data: Path, methods: list[str], *, steps: int, batch_size: int) -> dict:
    rows = []
    plan = [(m, "adapter") for m in methods] + [(m, "copy") for m in ("kl", "npo")]
    for method, reference in plan:
        print(f"  {method}{' (second copy)' if reference == 'copy' else ''}", flush=True)
        rows.append(run_isolated(model, data, method, reference, steps=steps, batch_size=batch_size))
    by_name = {r["method"]: r for r in rows}
    ga = by_name["ga"]["peak_rss_mb"]
    for row in rows:
        row["peak_vs_ga"] = row["peak_rss_mb"] / ga
    ratios = {
        "kl/ga": by_name["kl"]["peak_vs_ga"],
        "npo/ga": by_name["npo"]["peak_vs_ga"],
        "kl (second copy)/ga": by_name["kl (second copy)"]["peak_vs_ga"],
        "npo (second copy)/ga": by_name["npo (second copy)"]["peak_vs_ga"],
    }
    return {
        "model": str(model),
        "batch_size": batch_size,
        "steps": steps,
        "rows": rows,
        "peak_ratios": ratios,
        "target": TARGET,
        "target_met": ratios["kl/ga"] <= TARGET and ratios["npo/ga"] <= TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--reference", choices=("adapter", "copy"), default="adapter")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = measure(args.model, args.data, args.method, args.reference, args.steps, args.batch_size)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
