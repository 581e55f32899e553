"""Determinism, stated and tested: the same inputs, seed and environment give the same bytes.

What is promised (on one machine, in one environment, i.e. equal ``environment.numeric_identity``):
- ``make_tiny`` with the same data, seed and steps writes a byte-identical model;
- ``unlearn`` with the same model, data, method and config writes byte-identical adapter files;
- ``generate_predictions`` with the same model, data and settings (sampling included) writes a
  byte-identical prediction file.
Not promised: the same bytes under another thread count, CPU, device or package versions
(floating-point sums may be reduced in another order). The thread-count case is measured below
and reported, not asserted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from safeeraser.environment import manifest, numeric_identity
from safeeraser.generate.predictions import GenerationSettings, generate_predictions
from safeeraser.models.tiny import MARKER, make_tiny
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn

pytestmark = pytest.mark.slow

TINY_STEPS = 15
UNLEARN_STEPS = 3
METHOD = "po+pd"


def files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def generate(model: Path, data: Path, out: Path, *, threads: int | None = None) -> bytes:
    """The val split with default settings (K answers sampled with temperature); the file's bytes."""
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        generate_predictions(str(model), data, "val", out, GenerationSettings(), progress=False)
    finally:
        torch.set_num_threads(before)
    return out.read_bytes()


@pytest.fixture(scope="module")
def predictions(tiny_model, demo_data, tmp_path_factory) -> bytes:
    """One generation of the val split at the default thread count (shared by the tests below)."""
    return generate(tiny_model, demo_data, tmp_path_factory.mktemp("determinism") / "pred_val.json")


def test_make_tiny_twice_gives_the_same_model(demo_data, tmp_path):
    for name in ("a", "b"):
        make_tiny(demo_data, tmp_path / name, steps=TINY_STEPS, seed=0, progress=False)
    a, b = (tmp_path / n / "model.safetensors" for n in "ab")
    assert a.read_bytes() == b.read_bytes()
    # the tokenizer, processor and config too; the summary differs only in its timing
    assert files(tmp_path / "a", skip=(MARKER,)) == files(tmp_path / "b", skip=(MARKER,))
    summaries = [json.loads((tmp_path / n / MARKER).read_text()) for n in "ab"]
    for s in summaries:
        s.pop("train_seconds")
    assert summaries[0] == summaries[1]


def test_unlearn_twice_gives_the_same_adapter(tiny_model, demo_data, tmp_path):
    for name in ("a", "b"):
        config = resolve_config(preset="demo", overrides=[{"max_steps": UNLEARN_STEPS}])
        result = unlearn(str(tiny_model), demo_data, METHOD, tmp_path / name, config, progress=False)
        assert result.steps == UNLEARN_STEPS
    a, b = (files(tmp_path / n / "adapter") for n in "ab")
    assert "adapter_model.safetensors" in a
    assert a == b
    # and every loss term of every step
    logs = [
        [
            {k: v for k, v in json.loads(line).items() if "second" not in k and k != "time"}
            for line in (tmp_path / n / "log.jsonl").read_text().splitlines()
        ]
        for n in "ab"
    ]
    assert logs[0] == logs[1]


def _answers(predictions: bytes) -> list[str]:
    """Every generated answer of a prediction file, in file order."""
    found = []
    for record in json.loads(predictions):
        for pair in record["unsafe_pairs"]:
            found += [pair[k] for k in sorted(pair) if k.startswith("model_response") and k != "model_response"]
            found.append(pair["sd_response"])
        found += [
            record[k]["Prediction"]
            for k in sorted(record)
            if k.startswith("UnharmPair") and isinstance(record[k], dict)
        ]
    return found


def test_generation_twice_gives_the_same_file(tiny_model, demo_data, predictions, tmp_path):
    again = generate(tiny_model, demo_data, tmp_path / "pred_val.json")
    assert again == predictions
    generation = json.loads((tmp_path / "pred_val.meta.json").read_text())["generation"]
    assert generation["sample_single"] is True and generation["num_samples"] == 3  # every answer was sampled


def test_generation_with_one_thread_is_reported(tiny_model, demo_data, predictions, tmp_path, record_property, capsys):
    """1 thread vs the default: may legitimately differ (reduction order), so it is measured, not asserted."""
    default_threads = torch.get_num_threads()
    one = generate(tiny_model, demo_data, tmp_path / "pred_val_1thread.json", threads=1)
    assert torch.get_num_threads() == default_threads  # restored
    same = one == predictions
    xs, ys = _answers(predictions), _answers(one)
    differing = sum(x != y for x, y in zip(xs, ys))
    record_property("threads_default", default_threads)
    record_property("one_thread_identical", same)
    record_property("one_thread_differing_answers", f"{differing}/{len(xs)}")
    with capsys.disabled():
        print(
            f"\n[determinism] generation, 1 thread vs {default_threads}: "
            f"{'byte-identical' if same else f'{differing} of {len(xs)} answers differ'}; "
            f"environment {json.dumps(numeric_identity(manifest()), sort_keys=True)}"
        )
