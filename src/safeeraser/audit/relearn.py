"""The relearning attack: a few fine-tuning steps on a small slice of harmful pairs, then measure the rest.

Relearning trains the unlearned model (base + the run's adapter) with the ``relearn`` objective
(plain NLL of the harmful answers) on a disjoint slice of the forget split, through the trainer
``unlearn`` uses, and keeps the adapter after each budget of steps (10, 50, 100). ASR measured on
the forget pairs *outside* the slice, against the vanilla model's as the ceiling, says how much of
what was forgotten came back after how many steps.

Choices (docs/audit.md, "Relearning"):

- **Slice**: one category's training pairs, the ``seed``-th (cyclically) in sorted order among
  those with at least two pairs and not holding every pair (seed 0: the first in sorted order);
  or a ``fraction`` of the pairs drawn with ``seed``; or a named ``category``.
- **Start**: the run's adapter is continued (its LoRA and projector copy trainable), not merged
  into the base under a fresh LoRA: a released adapter is what an attacker gets, the result is again
  an adapter over the same base (``generate --adapter`` reads it unchanged, no merged copy of the
  model is written), and training acts on the very weights unlearning changed — the strongest
  attack of the two. Without an adapter (the vanilla model) a fresh LoRA starts, as in ``unlearn``.
- **Settings**: the run's own (its config.yaml: learning rate, batch, prompt format, dtype; the
  released lr 1e-4 unless the run changed it) with a constant learning rate and no warm-up, so
  that the snapshot after N steps of the one run is exactly what a run of N steps would give
  (batches depend only on the seed and the step), and the seed given here.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

from safeeraser.data.records import GENERAL_FILE, SPLIT_FILES, load_general, load_split, read_json_records, split_file
from safeeraser.data.views import forget_examples
from safeeraser.errors import UserError
from safeeraser.io import atomic_dir, atomic_write_json, read_json

RELEARN_STEPS = (10, 50, 100)
RELEARN = "relearn"  # the objective's name (unlearn/methods/relearn.py)
TRAINED_DATA = "relearn_data"  # OUT/relearn_data: a dataset folder whose train split is the slice trained on
MEASURED_DATA = "measured_data"  # OUT/measured_data: the train split without the slice; val unchanged
RUN = "run"  # OUT/run: the trainer's run folder (log.jsonl, snapshots/step-N, adapter)
SUMMARY = "relearn.json"  # OUT/relearn.json: the slice, the settings, the budgets and their adapters


def relearn_slice(
    data: Path, *, seed: int = 0, category: str | None = None, fraction: float | None = None
) -> tuple[list[str], list[str]]:
    """(keys of the harmful training pairs relearning trains on, keys it leaves for measurement).

    Default: one category's pairs, the ``seed``-th in sorted order (cyclically) of the categories
    with at least two pairs that do not hold every pair. ``category``: that category's pairs.
    ``fraction``: that share of all pairs (at least one, at most all but one), drawn with ``seed``.
    Keys are ``formats.example_key``s of the train split's harmful pairs, in file order.
    """
    pairs = forget_examples(load_split(data, "train"))
    if len(pairs) < 2:
        raise UserError(
            f"{data}: relearning needs at least 2 harmful training pairs (one to train on, one to measure); the train split has {len(pairs)}"
        )
    if category is not None and fraction is not None:
        raise UserError("relearning slice: give a category or a fraction, not both")
    if fraction is not None:
        if not 0 < fraction < 1:
            raise UserError(f"relearning fraction must be in (0, 1) (got {fraction})")
        count = min(len(pairs) - 1, max(1, round(fraction * len(pairs))))
        chosen = set(random.Random(seed).sample(range(len(pairs)), count))
        picked = [p.key for i, p in enumerate(pairs) if i in chosen]
    else:
        counts: dict[str, int] = {}
        for p in pairs:
            counts[p.category] = counts.get(p.category, 0) + 1
        if category is None:
            eligible = [c for c in sorted(counts) if 2 <= counts[c] < len(pairs)]
            if not eligible:
                raise UserError(
                    f"{data}: no category has 2 or more harmful training pairs and leaves others to measure; relearn on a fraction instead"
                )
            category = eligible[seed % len(eligible)]
        elif category not in counts:
            raise UserError(
                f"relearning category {category!r}: the train split has none (categories: {', '.join(sorted(counts))})"
            )
        elif counts[category] == len(pairs):
            raise UserError(
                f"relearning category {category!r} holds every training pair: none would be left to measure"
            )
        picked = [p.key for p in pairs if p.category == category]
    trained = set(picked)
    return picked, [p.key for p in pairs if p.key not in trained]


def relearn(
    model: str,
    data: Path,
    out: Path,
    *,
    adapter: Path | None = None,
    steps=RELEARN_STEPS,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    category: str | None = None,
    fraction: float | None = None,
    config: Path | None = None,
    revision: str | None = None,
) -> dict[int, Path]:
    """Fine-tune ``model`` + ``adapter`` with plain NLL on ``relearn_slice``'s first list only, one
    run through the trainer, saving the adapter after each budget in ``steps``; returns {steps:
    adapter folder over ``model``}. Writes OUT/relearn_data (the slice as a dataset), OUT/measured_data
    (train split without the slice, val unchanged), OUT/run (the trainer's run folder) and
    OUT/relearn.json. ``config``: the settings to start from (default: the run's config.yaml, else
    the released defaults). ``resume``: a finished relearning is reused, an interrupted one continues
    from its checkpoint; False starts over."""
    from safeeraser.unlearn.config import resolve_config, run_config
    from safeeraser.unlearn.trainer import snapshot_folder, unlearn

    budgets = _budgets(steps)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    trained, measured = relearn_slice(data, seed=seed, category=category, fraction=fraction)
    settings, source = run_config(adapter, config)
    settings = resolve_config(
        overrides=[
            settings.model_dump(),
            {
                "seed": seed,
                "max_steps": budgets[-1],
                "optim": {"schedule": "constant", "warmup_ratio": 0.0},
                "checkpoint_every": budgets[0],  # a killed relearning continues from its last budget
                "eval_every": 0,
                "select": None,
                "early_stop": 0,
                "log_every": 1,
                "log_examples": True,  # each log row names the examples its step drew: the audit trail of what was trained on
                "report_to": [],
            },
        ],
        origins=[str(source or "released defaults"), "relearning"],
    )
    run = out / RUN
    snapshots = {s: snapshot_folder(run, s) for s in budgets}
    summary_path = out / SUMMARY
    finished = resume and summary_path.is_file() and all(f.is_dir() for f in snapshots.values())
    if finished and _summary_matches(summary_path, trained, budgets, settings.model_dump(), model, adapter):
        return snapshots
    write_subset(data, out / TRAINED_DATA, set(trained), splits=("train",))
    write_subset(data, out / MEASURED_DATA, set(measured), splits=("train", "val"))
    began = time.perf_counter()
    done = (run / "run.json").is_file() and not (run / "checkpoint").exists()
    result = unlearn(
        model,
        out / TRAINED_DATA,
        RELEARN,
        run,
        settings,
        resume=resume and not done,
        overwrite=not resume or done,
        progress=progress,
        adapter=adapter,
        snapshots=budgets,
        revision=revision,
    )
    missing = [s for s, f in snapshots.items() if not f.is_dir()]
    if missing:
        raise UserError(
            f"relearning stopped before step {missing[0]} ({result.stopped or 'no snapshot written'}); see {run / 'log.jsonl'}"
        )
    atomic_write_json(
        summary_path,
        {
            "model": str(model),
            "adapter": str(adapter) if adapter is not None else None,
            "settings_from": str(source) if source else "released defaults",
            "slice": _slice_rule(seed, category, fraction, data, trained),
            "trained": trained,
            "measured": measured,
            "lr": settings.optim.lr,
            "schedule": "constant, no warm-up",
            "seed": seed,
            "steps": list(budgets),
            "snapshots": {str(s): str(f) for s, f in snapshots.items()},
            "trained_data": str(out / TRAINED_DATA),
            "measured_data": str(out / MEASURED_DATA),
            "seconds": round(time.perf_counter() - began, 2),
            "settings": settings.model_dump(),
        },
    )
    return snapshots


def _budgets(steps) -> tuple[int, ...]:
    try:
        budgets = tuple(sorted({int(s) for s in steps}))
    except (TypeError, ValueError):
        raise UserError(f"relearning steps must be whole numbers (got {steps!r})") from None
    if not budgets or budgets[0] <= 0:
        raise UserError(f"relearning steps must be positive (got {steps!r})")
    return budgets


def _slice_rule(seed: int, category: str | None, fraction: float | None, data: Path, trained: list[str]) -> dict:
    if fraction is not None:
        return {"rule": "fraction", "fraction": fraction, "seed": seed, "pairs": len(trained)}
    if category is None:
        first = next(p for p in forget_examples(load_split(data, "train")) if p.key == trained[0])
        return {
            "rule": "category (the seed-th eligible in sorted order)",
            "category": first.category,
            "seed": seed,
            "pairs": len(trained),
        }
    return {"rule": "category (named)", "category": category, "pairs": len(trained)}


def _summary_matches(
    path: Path, trained: list[str], budgets: tuple[int, ...], settings: dict, model: str, adapter: Path | None
) -> bool:
    """Whether a finished relearning's summary is of this slice, these budgets, settings and model."""
    try:
        before = read_json(path)
    except UserError:
        return False
    now = {
        "trained": trained,
        "steps": list(budgets),
        "settings": json.loads(json.dumps(settings)),
        "model": str(model),
        "adapter": str(adapter) if adapter is not None else None,
    }
    return all(before.get(k) == v for k, v in now.items())


def write_subset(data: Path, folder: Path, keep: set[str], *, splits: tuple[str, ...]) -> None:
    """A dataset folder at ``folder`` (replaced whole) in DATA's format: the train split's records
    with only the harmful pairs whose key is in ``keep`` (records left without any dropped), the
    other ``splits`` and the general-VQA file copied as they are, and every image they name linked
    (or copied) to the same relative path, so that the folder resolves on its own."""
    data = Path(data)
    with atomic_dir(folder) as tmp:
        for split in splits:
            source = split_file(data, split)
            parsed = load_split(data, split)
            raw = read_json_records(source)
            kept = []
            for i, (record, row) in enumerate(zip(parsed.records, raw)):
                if split == "train":
                    pairs = [p for j, p in enumerate(row["unsafe_pairs"]) if forget_key(parsed, i, j) in keep]
                    if not pairs:
                        continue
                    row = {**row, "unsafe_pairs": pairs}
                kept.append(row)
                for field, path in (("image_path", parsed.image(i)), ("SDImage_path", parsed.sd_image(i))):
                    _link(
                        path,
                        tmp,
                        record.image_path if field == "image_path" else record.sd_image_path,
                        parsed.where(i, field),
                    )
            atomic_write_json(tmp / f"{SPLIT_FILES[split]}.json", kept)
        general = data / GENERAL_FILE if data.is_dir() else None
        if general is not None and general.is_file():
            resolver, items = load_general(data)
            for i, item in enumerate(items):
                _link(
                    resolver.resolve(item.image_path, f"{GENERAL_FILE}: record {i}: field 'image_path'"),
                    tmp,
                    item.image_path,
                    f"{GENERAL_FILE}: record {i}",
                )
            shutil.copyfile(general, tmp / GENERAL_FILE)


def forget_key(split, record: int, pair: int) -> str:
    """The key ``forget_examples`` gives harmful pair ``pair`` of record ``record``."""
    from safeeraser.formats import example_key, pair_where

    return example_key(split.name, record, pair_where(pair))


def _link(source: Path, folder: Path, relative: str, where: str) -> None:
    """``source`` at ``folder / relative``: a hard link where the file system allows, else a copy."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise UserError(
            f"{where}: image path {relative!r} is not inside the dataset folder; relearning copies the dataset and needs relative image paths"
        )
    target = folder / rel
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
