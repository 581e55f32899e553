"""`safeeraser demo`: the whole study in one command, offline, on 2 CPU cores.

data -> tiny vanilla model -> every method (and vanilla) -> generate -> judge -> metrics -> report.
Each stage is skipped when its output already exists, so an interrupted demo resumes where it
stopped; ``--fresh`` starts over.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from safeeraser.data.demo import IMAGES_PER_CATEGORY, make_demo
from safeeraser.data.demo import MARKER as DEMO_MARKER
from safeeraser.environment import manifest
from safeeraser.errors import UserError
from safeeraser.formats import RUN_SUMMARY
from safeeraser.generate.predictions import generate_predictions, protocol_settings
from safeeraser.io import atomic_write_json, read_json
from safeeraser.judge.keyword import KeywordJudge
from safeeraser.metrics.evaluate import evaluate
from safeeraser.models.tiny import MARKER, make_tiny
from safeeraser.report.build import build_report
from safeeraser.report.plots import plot_run
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.methods import METHOD_NAMES, VANILLA, canonical_name
from safeeraser.unlearn.trainer import unlearn

# The published protocol with one change: answers are cut at 48 new tokens (published: 512). A
# collapsed model never emits its end-of-sequence token, and 512 tokens of it would take most of
# the demo's time; every demo answer that ends normally is far shorter.
DEMO_MAX_NEW_TOKENS = 48
DEMO_GENERATION = protocol_settings("published", max_new_tokens=DEMO_MAX_NEW_TOKENS, batch_size=48)


DEMO_SUMMARY = "demo.json"  # the demo's own settings: the model family, seed, images per category, methods


def tiny_families() -> tuple[str, ...]:
    """The families with a tiny copy, so a demo: LLaVA-1.5 and every family with a builder."""
    from safeeraser.models.tiny_families import BUILDERS

    return ("llava", *BUILDERS)


def demo_family_label(family: str) -> str:
    """The family's name as the demo says it; a family without a tiny copy is refused in one line."""
    if family not in tiny_families():
        raise UserError(f"--family {family}: no tiny copy of this family, so no demo on it (families with one: {', '.join(tiny_families())})")
    if family == "llava":
        return "LLaVA"
    from safeeraser.models.registry import family_named

    return family_named(family).label


def refuse_other_family(model: Path, family: str) -> None:
    """A demo folder resumes only with the family its tiny model was built as."""
    if (model / MARKER).exists():
        built = read_json(model / MARKER).get("family", "llava")
        if built != family:
            raise UserError(f"{model}: holds a tiny {built} model, not {family}: use another --out, or --fresh to start over")


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(message)


def run_demo(
    out: Path,
    *,
    images_per_category: int = IMAGES_PER_CATEGORY,
    seed: int = 0,
    methods: tuple[str, ...] | None = None,
    fresh: bool = False,
    progress: bool = True,
    config_overrides: list[dict] | None = None,
    tiny_steps: int | None = None,
    family: str = "llava",
) -> list[dict]:
    """Run the demo into ``out`` on a tiny model of ``family``; returns the rows of results.json."""
    out = Path(out)
    label = demo_family_label(family)
    names = [VANILLA] + [canonical_name(m) for m in (methods if methods is not None else METHOD_NAMES)]
    if fresh and out.exists():
        if not (out / "results.json").exists() and not (out / "data" / DEMO_MARKER).exists():
            raise UserError(f"{out}: --fresh would delete a folder that is not a demo folder")
        shutil.rmtree(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    data, model, runs = out / "data", out / "model", out / "runs"
    quiet = not progress
    began = time.perf_counter()

    refuse_other_family(model, family)
    if not (data / DEMO_MARKER).exists():
        _log(f"[1/4] demo benchmark -> {data}", quiet)
        make_demo(data, images_per_category=images_per_category, seed=seed)
    if not (model / MARKER).exists():
        _log(f"[2/4] tiny vanilla {label} -> {model}", quiet)
        make_tiny(data, model, seed=seed, steps=tiny_steps, progress=progress, family=family)
    atomic_write_json(out / DEMO_SUMMARY, {"family": family, "seed": seed, "images_per_category": images_per_category, "methods": names})

    config = resolve_config(preset="demo", overrides=[{"seed": seed}, *(config_overrides or [])])
    _log(f"generation protocol: {DEMO_GENERATION.label()} (the demo caps answers, since a collapsed model never stops)", quiet)
    for k, name in enumerate(names, start=1):
        run = runs / name
        _log(f"[3/4] {name} ({k}/{len(names)})", quiet)
        if name == VANILLA:
            run.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run / RUN_SUMMARY, {"method": VANILLA, "model": str(model), "environment": manifest()})
            adapter = None
        else:
            unlearn(str(model), data, name, run, config, resume=True, progress=progress, on_finish=plot_run)
            adapter = run
        for split in ("train", "val", "general"):
            pred = run / f"predictions_{split}.json"
            if not pred.exists():
                generate_predictions(str(model), data, split, pred, DEMO_GENERATION, adapter=adapter, progress=progress)
        evaluate(
            data, run / "metrics.json", KeywordJudge(),
            pred_train=run / "predictions_train.json", pred_val=run / "predictions_val.json",
            pred_general=run / "predictions_general.json", progress=False,
        )

    _log(f"[4/4] report -> {out}", quiet)
    build_report([runs / n for n in names], out, warn=lambda w: _log(w, quiet))
    rows = read_json(out / "results.json")
    _log(f"demo finished in {time.perf_counter() - began:.0f}s; open {out / 'index.html'}", quiet)
    return rows
