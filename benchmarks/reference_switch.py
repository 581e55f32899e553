"""Cost of switching the adapter off for the KL / NPO reference: PEFT's ``disable_adapter`` vs ours.

    python benchmarks/reference_switch.py --model MODEL_DIR --data DATA_DIR [--steps 40]

Measured in one process: the switch alone (enter + exit, mean of 200), then a ``kl+pd`` run of
``--steps`` optimizer steps with each switch (median step time after a warm-up step). The model
is the tiny demo model unless given; ``benchmarks/.cache`` holds one after ``python
benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def switch_ms(forward, peft_model, n: int = 200) -> tuple[float, float]:
    with forward._reference():
        pass  # collects the layers
    began = time.perf_counter()
    for _ in range(n):
        with forward._reference():
            pass
    ours = (time.perf_counter() - began) / n * 1000
    began = time.perf_counter()
    for _ in range(n):
        with peft_model.disable_adapter():
            pass
    return ours, (time.perf_counter() - began) / n * 1000


def step_seconds(model: str, data: str, steps: int, peft_switch: bool) -> float:
    from safeeraser.unlearn import trainer
    from safeeraser.unlearn.config import resolve_config
    from safeeraser.unlearn.methods import base

    times: list[float] = []
    real_step, real_reference = trainer.UnlearnRun.step, base.Forward._reference

    def timed(*args, **kwargs):
        began = time.perf_counter()
        out = real_step(*args, **kwargs)
        times.append(time.perf_counter() - began)
        return out

    trainer.UnlearnRun.step = timed
    if peft_switch:
        base.Forward._reference = lambda self: self.peft_model.disable_adapter()
    try:
        config = resolve_config(overrides=[{"max_steps": steps, "eval_every": 0}], preset="demo")
        with tempfile.TemporaryDirectory() as tmp:
            trainer.unlearn(model, Path(data), "kl+pd", Path(tmp) / "run", config, progress=False)
    finally:
        trainer.UnlearnRun.step, base.Forward._reference = real_step, real_reference
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    from safeeraser.models.loading import load_model
    from safeeraser.unlearn.config import resolve_config
    from safeeraser.unlearn.methods.base import Forward
    from safeeraser.unlearn.trainer import _lora

    loaded = load_model(args.model)
    peft_model = _lora(loaded.model, loaded.family, resolve_config(preset="demo"))
    ours, peft = switch_ms(Forward(peft_model), peft_model)
    print(f"switch (enter + exit): ours {ours:.3f} ms, PEFT disable_adapter {peft:.3f} ms, ratio {peft / ours:.1f}x")
    ours_step = step_seconds(args.model, args.data, args.steps, peft_switch=False)
    peft_step = step_seconds(args.model, args.data, args.steps, peft_switch=True)
    print(
        f"kl+pd step (median of {args.steps - 1}): ours {ours_step * 1000:.1f} ms, with PEFT's switch {peft_step * 1000:.1f} ms, ratio {peft_step / ours_step:.2f}x"
    )


if __name__ == "__main__":
    main()
