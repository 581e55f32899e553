"""`safeeraser generate`, `evaluate`, `judges agree`, `report`: answers, verdicts, metrics, tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from safeeraser.cli.common import _positive, _say, app, judges_app
from safeeraser.errors import UserError
from safeeraser.generate import GENERATION_BATCH_SIZE
from safeeraser.models.families import DEFAULT_FAMILY


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
        GENERATION_BATCH_SIZE, "--batch-size", help="hf: sequences per generate call (halved on out-of-memory)."
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
        from safeeraser.models.families import family_named

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
