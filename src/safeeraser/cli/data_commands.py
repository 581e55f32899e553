"""`safeeraser data ...` and `safeeraser model ...`: datasets, model families, tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from safeeraser.cli.common import _positive, _say, data_app, model_app
from safeeraser.data.demo import IMAGES_PER_CATEGORY
from safeeraser.data.records import GENERAL_FILE
from safeeraser.models.families import DEFAULT_FAMILY


@data_app.command("make-demo")
def data_make_demo(
    out: Path = typer.Option(
        ..., "--out", help=f"Folder to write all_train.json, all_val.json, {GENERAL_FILE} and images."
    ),
    images_per_category: int = typer.Option(
        IMAGES_PER_CATEGORY,
        "--images-per-category",
        help="Harmful images per category (6 categories); 500 gives the published 3,000.",
    ),
    seed: int = typer.Option(0, "--seed"),
):
    """Write the offline demo benchmark in the published format."""
    from safeeraser.data.demo import make_demo

    summary = make_demo(out, images_per_category=images_per_category, seed=seed)
    _say(
        f"wrote {out}: {summary['train_records']} train + {summary['val_records']} val records, {summary['general_questions']} general-VQA questions"
    )


@data_app.command("validate")
def data_validate(
    path: Path = typer.Argument(
        ..., help="Dataset folder (with all_train.json / all_val.json) or one JSON/JSONL file."
    ),
    allow_outside_root: bool = typer.Option(
        False, "--allow-outside-root", help="Allow image paths outside the dataset root."
    ),
):
    """Check every record, field and image; exit 0 when valid."""
    from safeeraser.data.checks import validate

    for s in validate(path, allow_outside_root=allow_outside_root):
        typer.echo(
            f"{s.file}: ok: {s.records} records, {s.unsafe_pairs} harmful questions, {s.unharm_pairs} benign pairs, {s.images + s.sd_images} images"
        )


@data_app.command("stats")
def data_stats(
    path: Path = typer.Argument(..., help="Dataset folder or one JSON/JSONL file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root"),
):
    """Count records, questions and images per split and category."""
    from safeeraser.data.checks import stats

    rows = [s.as_dict() for s in stats(path, allow_outside_root=allow_outside_root)]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        typer.echo(
            f"{row['file']}: {row['records']} records, {row['unsafe_pairs']} harmful questions, {row['unharm_pairs']} benign pairs, {row['images']} harmful + {row['sd_images']} harmless images"
        )
        for category, n in row["by_category"].items():
            typer.echo(f"  {category:<16} {n}")


@model_app.command("make-tiny")
def model_make_tiny(
    data: Path = typer.Option(..., "--data", help="Dataset folder (e.g. from `data make-demo`)."),
    out: Path = typer.Option(..., "--out", help="Folder to save the model and processor in."),
    size: str = typer.Option(
        "tiny", "--size", help="tiny (about 1M parameters) or small (about 100M, for measurements)."
    ),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Vanilla training steps (default depends on --size)."),
    family: str = typer.Option(
        DEFAULT_FAMILY, "--family", help="Model family (a transformers model_type; see `safeeraser model families`)."
    ),
):
    """Build a tiny model of the family's real architecture and train it into vanilla behaviour."""
    from safeeraser.models.tiny import make_tiny

    _positive("--steps", steps)
    summary = make_tiny(data, out, size=size, seed=seed, steps=steps, family=family)
    _say(
        f"wrote {out}: {summary['parameters']:,} parameters, {summary['steps']} steps, final loss {summary['final_loss']:.4f}"
    )


@model_app.command("families")
def model_families(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """The registered model families: name (the transformers model_type), class, hub ids, status."""
    from safeeraser.models.families import FAMILIES, tiny_families

    tiny = tiny_families()
    rows = [
        {
            "family": f.name,
            "label": f.label,
            "model_class": f.model_class,
            "hub_ids": list(f.hub_ids),
            "status": f.status,
            "encodable": f.encodable,
            "tiny": f.name in tiny,
            "needs_torchvision": f.needs_torchvision,
        }
        for f in FAMILIES.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        typer.echo(f"{row['family']:<16} {row['label']:<24} {row['status']:<34} {', '.join(row['hub_ids'])}")
