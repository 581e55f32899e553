"""Scaling: generation of the val split and one unlearning epoch at 1x, 2x and 4x the data.

The same tiny model and settings at every size, so only the amount of data changes; a linear
pipeline takes 2x and 4x the time (fixed costs such as loading the model make it a bit less).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

from safeeraser.data.records import load_split
from safeeraser.generate.predictions import generate_predictions, split_tasks
from safeeraser.models.loading import load_model
from safeeraser.pipeline import DEMO_GENERATION
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn

TOLERANCE = 1.25  # "linear": at most this multiple of the ideal ratio
METHOD = "po"


def warm_up(model: Path) -> None:
    """The first use in a process pays lazy imports (transformers, peft, accelerate): keep them out of the 1x figures."""
    import accelerate  # noqa: F401
    import peft  # noqa: F401

    load_model(str(model))


def run(model: Path, datasets: dict[int, Path], *, max_new_tokens: int) -> dict:
    settings = replace(DEMO_GENERATION, max_new_tokens=max_new_tokens)
    config = resolve_config(preset="demo", overrides=[{"epochs": 1, "max_steps": None, "eval_every": 0}])
    warm_up(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, data in datasets.items():
            print(f"  {size} images per category", flush=True)
            began = time.perf_counter()
            generate_predictions(str(model), data, "val", Path(tmp) / f"pred_{size}.json", settings, progress=False)
            generation = time.perf_counter() - began
            began = time.perf_counter()
            result = unlearn(str(model), data, METHOD, Path(tmp) / f"run_{size}", config, progress=False)
            epoch = time.perf_counter() - began
            rows.append(
                {
                    "images_per_category": size,
                    "val_prompts": len(split_tasks(load_split(data, "val"))),
                    "generation_seconds": generation,
                    "epoch_steps": result.steps,
                    "epoch_seconds": epoch,
                }
            )
    first = rows[0]
    for row in rows:
        row["scale"] = row["images_per_category"] / first["images_per_category"]
        row["generation_ratio"] = row["generation_seconds"] / first["generation_seconds"]
        row["epoch_ratio"] = row["epoch_seconds"] / first["epoch_seconds"]
    linear = all(
        r["generation_ratio"] <= TOLERANCE * r["scale"] and r["epoch_ratio"] <= TOLERANCE * r["scale"] for r in rows
    )
    return {
        "method": METHOD,
        "generation": {
            "batch_size": settings.batch_size,
            "num_samples": settings.num_samples,
            "max_new_tokens": max_new_tokens,
        },
        "unlearning": {"preset": "demo", "epochs": 1, "batch_size": config.batch_size},
        "rows": rows,
        "tolerance": TOLERANCE,
        "linear": linear,
    }
