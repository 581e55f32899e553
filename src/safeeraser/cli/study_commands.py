"""`safeeraser demo`, `sweep`, `audit`: whole studies and the robustness audit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from safeeraser.cli.common import _positive, _say, app
from safeeraser.data.demo import IMAGES_PER_CATEGORY
from safeeraser.errors import UserError
from safeeraser.models.families import DEFAULT_FAMILY


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(
        ..., "--out", help="Folder for data/, model/, runs/<method>/, results.{json,md,csv}, plots, index.html."
    ),
    images_per_category: int = typer.Option(IMAGES_PER_CATEGORY, "--images-per-category"),
    seed: int = typer.Option(0, "--seed"),
    methods: Optional[str] = typer.Option(
        None, "--methods", help="Comma-separated subset, e.g. po,po+pd (default: all ten)."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Delete an earlier demo in --out first (default: resume it)."),
    family: str = typer.Option(
        DEFAULT_FAMILY,
        "--family",
        help="Model family of the tiny model (one with a tiny copy; see `safeeraser model families`).",
    ),
):
    """Run the whole study offline: demo data, tiny model, every method, metrics, report."""
    from safeeraser.pipeline import run_demo

    chosen = tuple(m for m in methods.split(",") if m.strip()) if methods else None
    rows = run_demo(out, images_per_category=images_per_category, seed=seed, methods=chosen, fresh=fresh, family=family)
    typer.echo((out / "results.md").read_text())
    _say(f"wrote {out}: {len(rows)} rows; open {out / 'index.html'}")


@app.command("sweep")
def sweep_cmd(
    config: Path = typer.Option(
        ...,
        "--config",
        help="Study YAML: data, model, methods, seeds, grid of settings, generation, judge (docs/studies.md).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for data/, model/, runs/<cell>/seed<N>/, results.*, study.{json,md}, pareto.png, index.html.",
    ),
    jobs: int = typer.Option(
        1, "--jobs", help="Runs at once, each in its own process (set OMP_NUM_THREADS to cores / jobs)."
    ),
    devices: Optional[str] = typer.Option(
        None,
        "--devices",
        help="GPUs to spread the --jobs workers over, one each in turn, e.g. 0,1,2,3 (default: every visible GPU).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check the study and list its runs (finished ones marked); run nothing."
    ),
    launcher: str = typer.Option(
        "local",
        "--launcher",
        help="local (processes on this machine), slurm (each run a Slurm job through submitit, with the study file's slurm: settings) or submitit-local (the same submission, run as local processes, --jobs at a time).",
    ),
):
    """Run a study: every (method, settings, seed) through unlearn, generate and evaluate; report mean ± std and 95% intervals across seeds."""
    from safeeraser.study.run import run_study, status
    from safeeraser.study.spec import load_study

    _positive("--jobs", jobs)
    study = load_study(config)
    if dry_run:
        for name, state in status(study, out):
            typer.echo(f"{state:<9} {name}")
        _say(f"{config}: {len(study.runs)} runs ({len({r.cell for r in study.runs})} cells x {len(study.seeds)} seeds)")
        return
    chosen = [d.strip() for d in devices.split(",") if d.strip()] if devices is not None else None
    if chosen and launcher != "local":
        raise UserError(
            f"--devices spreads local workers over GPUs: with --launcher {launcher} the scheduler places each job (slurm.gpus_per_run)"
        )
    if chosen and not __import__("torch").cuda.is_available():
        _say("note: no CUDA GPU here: --devices only sets each worker's CUDA_VISIBLE_DEVICES")
    result = run_study(study, out, jobs=jobs, devices=chosen, launcher=launcher)
    typer.echo((out / "study.md").read_text())
    _say(
        f"wrote {out}: {len(result['runs'])} runs, {result['ran']} made now, {result['skipped']} already finished; open {out / 'index.html'}"
    )


@app.command("audit")
def audit_cmd(
    model: str = typer.Option(
        ..., "--model", help="Base model folder or Hugging Face id (the one the run was trained on)."
    ),
    adapter: Optional[Path] = typer.Option(
        None,
        "--adapter",
        help="Run folder (or adapter folder) from `unlearn`; leave out to audit the base model itself.",
    ),
    data: Path = typer.Option(..., "--data", help="Dataset folder (all_train.json, all_val.json)."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Audit folder: baseline/, one folder per attack, audit.json, audit.md. A rerun skips finished attacks and resumes a killed one.",
    ),
    attacks: Optional[str] = typer.Option(
        None,
        "--attacks",
        help="Comma-separated subset of quant8, quant4, relearn, figstep, text-only, one-word, prefix, image-swap, mia (default: all).",
    ),
    judge: Optional[str] = typer.Option(
        None,
        "--judge",
        help="As for `evaluate` (default: the judge of the run's metrics.json when it names one, else keyword).",
    ),
    judge_model: Optional[str] = typer.Option(
        None, "--judge-model", help="The judge's model (openai, hf, the classifiers)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of generation, of the attacks' choices and of relearning."),
    protocol: Optional[str] = typer.Option(
        None,
        "--protocol",
        help="Generation protocol (default: the one the run's predictions record in their .meta.json, else published).",
    ),
    num_samples: Optional[int] = typer.Option(
        None, "--num-samples", help="Answers per harmful question (overrides the protocol's)."
    ),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Overrides the protocol's."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per generate call (speed only)."),
    revision: Optional[str] = typer.Option(
        None, "--revision", help="Of a Hugging Face id: the branch, tag or commit to load."
    ),
):
    """Stress-test an unlearned run (quantization, relearning, input attacks, membership inference) with the benchmark's metrics."""
    from dataclasses import replace as replaced

    from safeeraser.audit.run import parse_attacks, run_audit, run_judge, run_protocol, to_markdown
    from safeeraser.generate.predictions import protocol_settings

    chosen = parse_attacks(attacks)
    _positive("--num-samples", num_samples)
    _positive("--max-new-tokens", max_new_tokens)
    _positive("--batch-size", batch_size)
    overrides = {"num_samples": num_samples, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    if protocol is not None:
        settings = protocol_settings(protocol, **overrides)
    else:
        settings = replaced(run_protocol(adapter), **{k: v for k, v in overrides.items() if v is not None})
    if judge is None:
        judge, recorded_model = run_judge(adapter)
        judge_model = judge_model or recorded_model
    record = run_audit(
        model,
        data,
        out,
        adapter=adapter,
        attacks=chosen,
        judge=judge,
        judge_model=judge_model,
        settings=settings,
        seed=seed,
        revision=revision,
    )
    typer.echo(to_markdown(record))
    done = sum(1 for r in record["results"].values() if r.get("status") == "done")
    _say(f"wrote {out / 'audit.json'}: {done} of {len(chosen)} attacks done in {record['seconds']:.0f}s")
