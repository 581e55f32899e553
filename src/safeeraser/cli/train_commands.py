"""`safeeraser unlearn`, `merge`, `push`: a run's training and what it leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from safeeraser.cli.common import _positive, _say, app
from safeeraser.errors import UserError


@app.command("unlearn")
def unlearn_cmd(
    model: str = typer.Option(..., "--model", help="Model folder or Hugging Face id (e.g. llava-hf/llava-1.5-7b-hf)."),
    revision: Optional[str] = typer.Option(
        None,
        "--revision",
        help="Of a Hugging Face id: the branch, tag or commit to load (default: its main branch); recorded in run.json.",
    ),
    data: Path = typer.Option(..., "--data", help="Dataset folder (all_train.json is the forget split)."),
    method: str = typer.Option(
        ...,
        "--method",
        help="ga, gd, kl, po, npo, simnpo, dpo, idkdpo, rmu, undial, wga, mmunlearner, each optionally +pd, and any of them +sineproject (sineproject = po+pd+sineproject; aliases: gapd, gdpd, klpd, popd, idk, idkpd).",
    ),
    out: Path = typer.Option(..., "--out", help="Run folder: adapter, config, log, plot, checkpoints."),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        help="YAML overriding the defaults (the released values: src/safeeraser/configs/default.yaml).",
    ),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        help="A packaged config applied before --config: 'demo' suits the tiny model; 'paper' is the released run as its code executed it (docs/fidelity.md).",
    ),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (optim.lr)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    pd_weight: Optional[float] = typer.Option(None, "--pd-weight", help="Lambda of the Prompt-Decouple term."),
    settings: list[str] = typer.Option(
        [], "--set", help="Any setting as KEY=VALUE, e.g. --set lora.r=16 (repeatable)."
    ),
    select: Optional[str] = typer.Option(
        None,
        "--select",
        help="Keep the probed step this rule picks, e.g. 'min sarr subject to forget_asr<=0.05' (needs eval_every).",
    ),
    early_stop: Optional[int] = typer.Option(
        None, "--early-stop", help="With --select: stop after this many probes without a better step."
    ),
    refusals: Optional[Path] = typer.Option(
        None, "--refusals", help='PO refusal targets: a JSON file {"idk": [...]} (the released prompt.json shape).'
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    merge: bool = typer.Option(False, "--merge", help="Also save the merged full model to RUN_DIR/merged."),
    report_to: list[str] = typer.Option(
        [],
        "--report-to",
        help="Experiment tracker(s), through accelerate: tensorboard, wandb, mlflow or trackio (repeatable or comma-separated; report_to). They log every step's loss terms, lr and probe values under RUN_DIR/trackers/.",
    ),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root"),
):
    """Unlearn the forget split with a LoRA adapter."""
    from safeeraser.report.plots import plot_run
    from safeeraser.unlearn.config import parse_override, resolve_config
    from safeeraser.unlearn.trainer import unlearn

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one")
    _positive("--max-steps", max_steps)
    _positive("--lr", lr)
    overrides = [parse_override(s) for s in settings]
    flags = {"max_steps": max_steps, "seed": seed, "select": select, "early_stop": early_stop}
    flags = {k: v for k, v in flags.items() if v is not None}
    if lr is not None:
        flags["optim"] = {"lr": lr}
    if pd_weight is not None:
        flags["method"] = {"pd_weight": pd_weight}
    if report_to:
        flags["report_to"] = [name.strip() for given in report_to for name in given.split(",") if name.strip()]
    if refusals is not None:
        from safeeraser.data.views import read_refusals

        read_refusals(refusals)  # a bad file is said now, before any model is loaded
        flags["refusals"] = str(refusals.resolve())
    cfg = resolve_config(config, overrides + [flags], preset=preset)
    from safeeraser.unlearn.launch import requested_cpu_processes, run_ranks

    ranks = requested_cpu_processes()
    if ranks > 1:
        from safeeraser.unlearn.methods import get_method

        # `accelerate launch --cpu --num_processes N` started only us: start the N ranks, after
        # saying a wrong method name once rather than in every rank
        get_method(method, cfg.method)
        _say(f"starting {ranks} processes on CPU (gloo)")
        raise typer.Exit(run_ranks(ranks))
    result = unlearn(
        model,
        data,
        method,
        out,
        cfg,
        resume=resume,
        overwrite=overwrite,
        merge=merge,
        allow_outside_root=allow_outside_root,
        on_finish=plot_run,
        revision=revision,
        preset=preset,
    )
    if not result.main_process:
        return
    if result.already_complete:
        _say(f"{out}: run already complete ({result.steps} steps); nothing to do")
    else:
        resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
        _say(
            f"wrote {out}: {result.method}, {result.steps}/{result.total_steps} steps in {result.seconds:.1f}s{resumed}"
            + (f" (stopped early: {result.stopped})" if result.stopped else "")
        )


@app.command("merge")
def merge_cmd(
    run: Path = typer.Option(..., "--run", help="Run folder from `unlearn` (or an adapter folder, with --model)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the merged model (default: RUN_DIR/merged)."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Base model folder or Hugging Face id (default: the one in RUN_DIR/run.json)."
    ),
    revision: Optional[str] = typer.Option(
        None, "--revision", help="Of a Hugging Face id: the branch, tag or commit (default: the run's)."
    ),
    dtype: str = typer.Option("auto", "--dtype", help="auto (the checkpoint's), bfloat16, float16 or float32."),
    device: str = typer.Option("cpu", "--device", help="Where to merge: cpu, or cuda for speed when the model fits."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
):
    """Merge a run's adapter (LoRA and trained projector) into its base model: a plain checkpoint to serve without PEFT."""
    from safeeraser.models.merge import merge_run

    if device.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {device!r}: expected cpu or cuda")
    if device.startswith("cuda") and not __import__("torch").cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU here; use --device cpu")
    written = merge_run(run, out, model=model, revision=revision, dtype=dtype, device=device, overwrite=overwrite)
    _say(f"wrote {written}: the base model with {run}'s adapter merged in")


@app.command("push")
def push_cmd(
    run: Path = typer.Option(..., "--run", help="Run folder from `unlearn`."),
    repo_id: str = typer.Option(
        ..., "--repo-id", help="Hugging Face model repository, OWNER/NAME (created if missing)."
    ),
    private: bool = typer.Option(
        False, "--private", help="Create the repository private (an existing one keeps its visibility)."
    ),
    merged: bool = typer.Option(
        False, "--merged", help="Push RUN_DIR/merged (from --merge or `safeeraser merge`) instead of the adapter."
    ),
):
    """Upload a run's adapter (or merged model) with its model card to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)."""
    from safeeraser.models.push import push_run

    url = push_run(run, repo_id, private=private, merged=merged)
    _say(f"pushed {run / ('merged' if merged else 'adapter')} to {repo_id}: {url}")
