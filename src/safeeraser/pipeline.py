"""`safeeraser demo`: the whole study in one command, offline, on 2 CPU cores.

data -> tiny vanilla model -> every method (and vanilla) -> generate -> judge -> metrics -> report.
The demo is a study (``study.run``) of one seed, from the packaged ``configs/studies/demo.yaml``:
each stage is skipped when its output already exists, so an interrupted demo resumes where it
stopped; ``--fresh`` starts over.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from safeeraser.data.demo import IMAGES_PER_CATEGORY, check_images_per_category
from safeeraser.data.demo import MARKER as DEMO_MARKER
from safeeraser.errors import UserError
from safeeraser.generate.predictions import protocol_settings
from safeeraser.io import atomic_write_json, read_json
from safeeraser.models.families import DEFAULT_FAMILY, tiny_families
from safeeraser.models.tiny import MARKER
from safeeraser.study.run import run_study
from safeeraser.study.spec import Study, packaged_study, parse_study
from safeeraser.unlearn.config import _merge
from safeeraser.unlearn.methods import METHOD_NAMES, VANILLA, canonical_name

# The published protocol with one change: answers are cut at 48 new tokens (published: 512), as
# the demo study (configs/studies/demo.yaml) sets it; see there why.
DEMO_MAX_NEW_TOKENS = 48
DEMO_GENERATION = protocol_settings("published", max_new_tokens=DEMO_MAX_NEW_TOKENS, batch_size=48)


DEMO_SUMMARY = "demo.json"  # the demo's own settings: the model family, seed, images per category, methods


def demo_family_label(family: str) -> str:
    """The family's name as the demo says it; a family without a tiny copy is refused in one line."""
    if family not in tiny_families():
        raise UserError(
            f"--family {family}: no tiny copy of this family, so no demo on it (families with one: {', '.join(tiny_families())})"
        )
    if family == DEFAULT_FAMILY:
        return "LLaVA"
    from safeeraser.models.families import family_named

    return family_named(family).label


def refuse_other_family(model: Path, family: str) -> None:
    """A demo folder resumes only with the family its tiny model was built as."""
    if (model / MARKER).exists():
        built = read_json(model / MARKER).get("family", DEFAULT_FAMILY)
        if built != family:
            raise UserError(
                f"{model}: holds a tiny {built} model, not {family}: use another --out, or --fresh to start over"
            )


def demo_study(
    *,
    images_per_category: int = IMAGES_PER_CATEGORY,
    seed: int = 0,
    methods: tuple[str, ...] | None = None,
    config_overrides: list[dict] | None = None,
    tiny_steps: int | None = None,
    family: str = DEFAULT_FAMILY,
) -> Study:
    """The demo as a study: the packaged ``configs/studies/demo.yaml`` at ``seed`` (of the data, the
    tiny model and the unlearning runs), with the chosen methods after the vanilla model."""
    spec = packaged_study("demo")
    spec["data"]["demo"].update(images_per_category=images_per_category, seed=seed)
    spec["model"]["tiny"].update(seed=seed, steps=tiny_steps, family=family)
    spec["methods"] = [VANILLA] + [canonical_name(m) for m in (methods if methods is not None else METHOD_NAMES)]
    spec["seeds"] = [seed]
    settings: dict = {}
    for override in config_overrides or []:
        settings = _merge(settings, override)
    spec["settings"] = settings
    return parse_study(spec, "the demo study (configs/studies/demo.yaml)", Path.cwd())


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
    family: str = DEFAULT_FAMILY,
) -> list[dict]:
    """Run the demo into ``out`` on a tiny model of ``family``; returns the rows of results.json."""
    out = Path(out)
    demo_family_label(family)
    check_images_per_category(images_per_category)  # the flag's own message, before the study's
    study = demo_study(
        images_per_category=images_per_category,
        seed=seed,
        methods=methods,
        config_overrides=config_overrides,
        tiny_steps=tiny_steps,
        family=family,
    )
    if fresh and out.exists():
        if not (out / "results.json").exists() and not (out / "data" / DEMO_MARKER).exists():
            raise UserError(f"{out}: --fresh would delete a folder that is not a demo folder")
        shutil.rmtree(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    refuse_other_family(out / "model", family)
    out.mkdir(parents=True, exist_ok=True)
    names = study.file.methods
    atomic_write_json(
        out / DEMO_SUMMARY,
        {
            "family": family,
            "seed": seed,
            "images_per_category": images_per_category,
            "methods": [n if n == VANILLA else canonical_name(n) for n in names],
        },
    )
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(
            f"generation protocol: {DEMO_GENERATION.label()} (the demo caps answers, since a collapsed model never stops)"
        )
    run_study(study, out, progress=progress)
    return read_json(out / "results.json")
