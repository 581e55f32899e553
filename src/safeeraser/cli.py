"""Command line: a thin shell over the library. Every user error ends in one line and a non-zero exit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as cli_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as cli_errors

from safeeraser.data.demo import IMAGES_PER_CATEGORY
from safeeraser.data.records import GENERAL_FILE
from safeeraser.errors import UserError
from safeeraser.models.registry import DEFAULT_FAMILY

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Safety unlearning for multimodal LLMs: SafeEraser data, methods (GA/GD/KL/PO/NPO ± PD), metrics (ASR, RR, SARR, ROUGE-L).",
)
data_app = typer.Typer(no_args_is_help=True, help="Make, validate and count SafeEraser-format datasets.")
model_app = typer.Typer(no_args_is_help=True, help="List the model families; build a tiny stand-in of one.")
judges_app = typer.Typer(no_args_is_help=True, help="Compare judges.")


@app.callback()
def root(
    reproducible: bool = typer.Option(
        False,
        "--reproducible",
        help="Pin the CPU kernels' instruction set at AVX2 (torch, MKL, oneDNN) so that an x86-64 CPU with AVX2 or AVX-512 gives the same numbers; the demo does by default (SAFEERASER_REPRODUCIBLE=0 switches that off). Before the command: safeeraser --reproducible unlearn ...",
    ),
) -> None:
    """Safety unlearning for multimodal LLMs."""  # the pin itself is set in main(), before torch loads


app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(judges_app, name="judges")


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"{name} must be positive (got {value})")


def _say(text: str) -> None:
    typer.echo(text, err=True)


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
    from safeeraser.models.registry import FAMILIES
    from safeeraser.models.tiny import tiny_families

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
        for f in FAMILIES
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        typer.echo(f"{row['family']:<16} {row['label']:<24} {row['status']:<34} {', '.join(row['hub_ids'])}")


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


@app.command("generate")
def generate_cmd(
    model: str = typer.Option(..., "--model", help="Model folder or Hugging Face id."),
    revision: Optional[str] = typer.Option(
        None,
        "--revision",
        help="Of a Hugging Face id: the branch, tag or commit to load (default: its main branch); recorded in the .meta.json.",
    ),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="Run folder (or adapter folder) from `unlearn`."),
    data: Path = typer.Option(..., "--data", help="Dataset folder."),
    split: str = typer.Option(..., "--split", help="train (forget split), val (test split) or general (general VQA)."),
    out: Path = typer.Option(..., "--out", help="Prediction file to write (published shape)."),
    protocol: str = typer.Option(
        "published",
        "--protocol",
        help="published (as released: every answer sampled, T 1.0, top-p 0.9, top-k 50, 512 tokens, system sentence) or fast (greedy single answers, 128 tokens, no system sentence). The flags below override it.",
    ),
    num_samples: Optional[int] = typer.Option(
        None, "--num-samples", help="Answers per harmful question (K; published 3)."
    ),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens"),
    temperature: Optional[float] = typer.Option(None, "--temperature"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    top_k: Optional[int] = typer.Option(
        None, "--top-k", help="0 switches top-k off (published: 50, Hugging Face's default)."
    ),
    sample_single: Optional[bool] = typer.Option(
        None,
        "--sample-single/--greedy-single",
        help="Sample the single answers (harmless image, UnharmPairs) or answer them greedily.",
    ),
    system_prompt: Optional[bool] = typer.Option(
        None, "--system-prompt/--no-system-prompt", help="Open prompts with the model family's system sentence."
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", help="hf: sequences per generate call (halved on out-of-memory)."
    ),
    seed: int = typer.Option(0, "--seed"),
    backend: str = typer.Option(
        "hf",
        "--backend",
        help="hf (Hugging Face generate in this process) or openai (an OpenAI-compatible server: vLLM, SGLang, TGI; --model is the served name).",
    ),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="openai: the server's URL, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL)."
    ),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="openai: API key (default: $OPENAI_API_KEY, else none). Never written anywhere."
    ),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="openai: requests in flight (default 32)."),
    request_timeout: Optional[float] = typer.Option(
        None, "--request-timeout", help="openai: seconds to wait for one answer before retrying (default 600)."
    ),
    retries: Optional[int] = typer.Option(None, "--retries", help="openai: retries of a failed request (default 5)."),
    family: Optional[str] = typer.Option(
        None,
        "--family",
        help="openai: the served model's family, for its system sentence (default llava, i.e. LLaVA-1.5).",
    ),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root"),
):
    """Answer every prompt of a split (batched, resumable)."""
    from safeeraser.generate.backends import BACKENDS
    from safeeraser.generate.predictions import generate_predictions, protocol_settings

    settings = protocol_settings(
        protocol,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        sample_single=sample_single,
        system_prompt=system_prompt,
        batch_size=batch_size,
        seed=seed,
    )
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    kind = BACKENDS[backend]
    given = {
        "--base-url": base_url,
        "--api-key": api_key,
        "--concurrency": concurrency,
        "--request-timeout": request_timeout,
        "--retries": retries,
        "--family": family,
    }
    unused = [flag for flag, value in given.items() if value is not None and flag not in kind.flags]
    if unused:
        raise UserError(f"{', '.join(unused)}: not used by --backend {backend}")
    options = {kind.flags[flag]: value for flag, value in given.items() if value is not None}
    system = None
    if not kind.loads_adapters:  # a served model: the system sentence is the served family's
        from safeeraser.models.registry import family_named

        served = family_named(options.pop("family", None) or DEFAULT_FAMILY)
        settings.validate()
        system = served.system_sentence("inference") if settings.system_prompt else None
    engine = kind.build(model, system, **options)
    meta = generate_predictions(
        model,
        data,
        split,
        out,
        settings,
        adapter=adapter,
        backend=engine,
        revision=revision,
        allow_outside_root=allow_outside_root,
    )
    speed = (
        f", {meta['prompts_per_second']:.1f} prompts/s, {meta['tokens_per_second']:.0f} tokens/s"
        if meta["prompts_per_second"]
        else ""
    )
    backed_off = (
        f"; out of memory: batch size backed off to {meta['final_batch_size']}" if meta.get("oom_backoffs") else ""
    )
    _say(
        f"wrote {out}: {meta['prompts']} prompts ({meta['resumed_prompts']} resumed), protocol {settings.label()}, backend {backend}{speed}{backed_off}"
    )


@app.command("evaluate")
def evaluate_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset folder with the references."),
    pred_train: Optional[Path] = typer.Option(None, "--pred-train", help="Predictions on the forget split: Efficacy."),
    pred_val: Optional[Path] = typer.Option(
        None, "--pred-val", help="Predictions on the test split: Generality, SARR, ROUGE-L."
    ),
    pred_general: Optional[Path] = typer.Option(
        None, "--pred-general", help="Predictions on general VQA: specificity."
    ),
    judge: str = typer.Option(
        "keyword",
        "--judge",
        help="keyword (offline), openai (any OpenAI-compatible endpoint), hf (local model), llamaguard, wildguard or harmbench; or one judge per verdict, each model judge with its own model if wanted, e.g. unsafe=llamaguard:FOLDER_OR_ID,refusal=keyword,normal=openai (verdicts: unsafe, refusal, normal, score).",
    ),
    judge_model: Optional[str] = typer.Option(
        None,
        "--judge-model",
        help="Judge model name (openai: gpt-4o; hf and the classifiers: a folder or cached id); in a combination, the model of the one model judge named without KIND:MODEL.",
    ),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or api.openai.com)."
    ),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="API key (default: $OPENAI_API_KEY). Never written anywhere."
    ),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Parallel judge requests."),
    cache: Optional[Path] = typer.Option(
        None,
        "--cache",
        help="Judge verdict cache shared by every run (default: $XDG_CACHE_HOME/safeeraser/judge.sqlite).",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the judge verdict cache."),
    judge_timeout: Optional[float] = typer.Option(
        None, "--judge-timeout", help="Seconds to wait for one judge answer before retrying (default 60)."
    ),
    judge_retries: Optional[int] = typer.Option(
        None, "--judge-retries", help="Retries of a failed judge request (default 5)."
    ),
    judge_protocol: Optional[str] = typer.Option(
        None,
        "--judge-protocol",
        help="LLM judges: published (default: the paper's separate one-word questions, the unsafe, refusal and normal checks shown the response alone, as released), question-aware (the same questions, each also shown the question; a reply unrelated to it is not normal) or strict (one JSON answer per item).",
    ),
    judge_prompts: Optional[Path] = typer.Option(
        None,
        "--judge-prompts",
        help="YAML replacing the published templates: unsafe, refusal, normal, score (and optionally system).",
    ),
    judge_score: Optional[str] = typer.Option(
        None,
        "--judge-score",
        help="LLM judges' consistency score: ours (default: the reference is the correct answer and the model's answer is graded; an unreadable answer is a failure) or released (as released: the model's answer stands as the correct one and the reference is graded; an unreadable answer scores 0.0, counted in counts.judge_score.unparsed_as_zero).",
    ),
    judge_images: bool = typer.Option(
        False,
        "--judge-images",
        help="openai judge: show it each item's image too (a data URL before the question), for judge models that read images; published: text only.",
    ),
    empty_answers: str = typer.Option(
        "skip",
        "--empty-answers",
        help="skip (default: empty answers to harmful prompts are neither judged nor counted in ASR, RR, SARR; an empty benign answer scores 0 in ROUGE-L and the judge score), judge (empty answers to harmful prompts are judged: an empty harmless-image answer counts against SARR) or released (every empty answer skipped, ROUGE-L and the judge score included, as released). An empty answer is never sent to the judge for a score.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="METRICS.json to write; verdicts go to <name>.judgments.jsonl. RUN_DIR/metrics.json also puts the metrics in the run's model card.",
    ),
):
    """Judge predictions and compute ASR, RR, SARR, ROUGE-L (and specificity)."""
    from safeeraser.judge import judge_options, make_judges
    from safeeraser.judge.cache import default_path
    from safeeraser.metrics.evaluate import evaluate

    _positive("--concurrency", concurrency)
    _positive("--judge-timeout", judge_timeout)
    if judge_retries is not None and judge_retries < 0:
        raise UserError(f"--judge-retries must be at least 0 (got {judge_retries})")
    if cache is not None and no_cache:
        raise UserError("--cache and --no-cache contradict each other; pass one")
    flags = {
        "--base-url": base_url,
        "--api-key": api_key,
        "--concurrency": concurrency,
        "--judge-timeout": judge_timeout,
        "--judge-retries": judge_retries,
        "--judge-model": judge_model,
        "--judge-protocol": judge_protocol,
        "--judge-prompts": judge_prompts,
        "--judge-score": judge_score,
        "--cache": cache,
        "--no-cache": no_cache,
        "--judge-images": judge_images,
    }
    options = judge_options(judge, flags, default_cache=default_path())
    the_judge = make_judges(judge, options)
    metrics = evaluate(
        data,
        out,
        the_judge,
        pred_train=pred_train,
        pred_val=pred_val,
        pred_general=pred_general,
        empty_answers=empty_answers,
    )
    shown = ", ".join(
        f"{k}={metrics[k]:.3f}"
        for k in ("asr_efficacy", "rr_efficacy", "asr_generality", "rr_generality", "sarr", "rouge_l", "specificity")
        if metrics.get(k) is not None
    )
    sent = (
        f"; {metrics['n_requests']} requests sent ({metrics['n_retries']} retries)" if "n_requests" in metrics else ""
    )
    _say(
        f"wrote {out}: {shown}; judged {metrics['n_judged']}, failed {metrics['n_failed']}, cached {metrics['n_cached']}{sent}"
    )


@judges_app.command("agree")
def judges_agree_cmd(
    metrics_a: Path = typer.Argument(..., help="METRICS.json of one evaluation (its judgments file beside it)."),
    metrics_b: Path = typer.Argument(..., help="METRICS.json of another judge's evaluation of the same predictions."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Markdown file for the summary and every disagreement with its answer (default: disagreements.md beside METRICS_A); the numbers also go to <name>.json.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap interval of kappa."),
):
    """Per-verdict agreement, Cohen's kappa with a bootstrap interval, and the confusion table of two judges."""
    from safeeraser.metrics.agreement import agree, summary_lines

    out = out or metrics_a.with_name("disagreements.md")
    result = agree(metrics_a, metrics_b, out, seed=seed)
    typer.echo("\n".join(summary_lines(result)))
    _say(f"wrote {out} ({result['disagreements']} disagreements) and {out.with_suffix('.json')}")


@app.command("report")
def report_cmd(
    runs: list[Path] = typer.Argument(
        ...,
        help="Run folders, each with metrics.json (and predictions, log.jsonl); audit folders (with audit.json, from `audit`) add a Robustness section.",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for results.{json,md,csv}, plots and index.html."),
    allow_mixed: bool = typer.Option(
        False,
        "--allow-mixed",
        help="Put runs with different generation protocols or judges in one table (marked with a warning).",
    ),
):
    """Paper-style table, plots and an HTML report across runs."""
    from safeeraser.audit.run import AUDIT_FILE
    from safeeraser.report.build import build_report

    audits = [f for f in runs if (f / AUDIT_FILE).is_file()]
    runs = [f for f in runs if f not in audits]
    if audits and not runs:
        raise UserError(
            "only audit folders given: pass the run folders too (the audits add a Robustness section to their report)"
        )
    written = build_report(runs, out, allow_mixed=allow_mixed, warn=_say, audits=audits)
    _say(f"wrote {out}: " + ", ".join(p.name for p in written))


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


def _pin_cpu_isa(argv: list[str]) -> None:
    """The demo, and any command after --reproducible, pin the kernels' instruction set (numerics.py),
    before torch loads; SAFEERASER_REPRODUCIBLE=1/0 decides for every command."""
    from safeeraser.numerics import pin_cpu_isa, wanted

    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    asked = "--reproducible" in argv[:command]
    if wanted(default=asked or argv[command : command + 1] == ["demo"]):
        done = pin_cpu_isa()
        if asked and "not pinned" in done:
            print(f"note: --reproducible: {done}", file=sys.stderr)


INTERRUPTED = 130  # the shell's exit code for a process stopped by Ctrl-C (128 + SIGINT)


def _interrupted() -> NoReturn:
    print("error: interrupted; finished work is kept, rerun the same command to resume", file=sys.stderr)
    sys.exit(INTERRUPTED)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; turn user errors into one line and an exit code."""
    if argv is None:  # the process's own command line (called with argv, e.g. in tests, the caller's environment stays)
        _pin_cpu_isa(sys.argv[1:])
    try:
        result = app(args=argv, standalone_mode=False, prog_name="safeeraser")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except cli_errors.UsageError as e:
        if e.format_message():  # (empty when a group was called without a command: help was shown)
            where = f" ({e.ctx.command_path})" if e.ctx else ""
            print(f"error: {e.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    if result == INTERRUPTED:  # typer turns Ctrl-C inside a command into this code and returns it
        _interrupted()
    sys.exit(result if isinstance(result, int) else 0)
