"""`safeeraser report`: the paper-style table, plots and one HTML page across run folders.

A run folder needs ``metrics.json`` (from ``safeeraser evaluate``). What else it holds adds to
the report: ``metrics.judgments.jsonl`` (the sample browser's answers and verdicts),
``run.json`` (the method; else the folder name is the method) and ``log.jsonl`` (loss and
dynamics curves). The dataset named in ``metrics.json`` ("sources" → "data") gives the images.

Everything is built in a temporary folder beside ``--out`` first (``io.replace_files``), so a
failed report changes nothing, and then each file is moved into ``--out`` with one rename. ``--out`` may hold other things (the demo
writes the report beside its data and runs); only the report's own files are replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safeeraser.data.records import Split, load_split
from safeeraser.errors import UserError
from safeeraser.formats import RUN_LOG, RUN_METRICS, RUN_SUMMARY
from safeeraser.io import atomic_write_json, atomic_write_text, read_json, read_jsonl, replace_files
from safeeraser.metrics.evaluate import METRIC_KEYS, judgments_path
from safeeraser.report import html, plots, table

METRICS = RUN_METRICS
PLOTS = (
    (
        "forgetting_vs_sarr.png",
        "Per method: forgetting on the forget split (ASR ↓, RR ↑) beside over-forgetting (SARR ↓).",
    ),
    (
        "tradeoff.png",
        "Over-forgetting trade-off: SARR against forgetting on unseen harmful images; arrows lead from X to X+PD. Best is top left.",
    ),
    ("loss_curves.png", "Loss terms of every unlearning run against the optimizer step."),
    ("dynamics.png", "Unlearning dynamics: the logged probe (forget RR, forget ASR, SARR) against the step."),
)

STUDY_FILES = ("study.json", "study.md", "pareto.png")
AUDIT_FILES = ("robustness.md", "relearn.png")
RELEARN_CAPTION = "Relearning attack, per audit: ASR on the harmful training pairs it left out, against the fine-tuning steps; dotted: the vanilla model's ASR on them (the ceiling)."
PARETO_CAPTION = (
    "Per cell (method and grid settings), mean over seeds: ASR on unseen harmful images against SARR, "
    "colour = ROUGE-L; bars: one standard deviation across seeds; ringed and joined: the Pareto front "
    "(no other cell has lower ASR, lower SARR and higher ROUGE-L). Best is bottom left."
)
# With one seed per cell there is no spread: the plot goes with the others, and says so.
PARETO_CAPTION_ONE_SEED = (
    "Per cell (method and grid settings), one seed: ASR on unseen harmful images against SARR, "
    "colour = ROUGE-L; ringed and joined: the Pareto front "
    "(no other cell has lower ASR, lower SARR and higher ROUGE-L). Best is bottom left."
)


@dataclass
class Run:
    folder: Path
    method: str
    metrics: dict
    log: list[dict]
    judgments: list[dict]
    label: str = ""
    environment: dict | None = None  # where the run was trained (run.json), else evaluated


def _read_metrics(path: Path) -> dict:
    metrics = read_json(path)
    if not isinstance(metrics, dict) or not any(key in metrics for key in METRIC_KEYS):
        raise UserError(f"{path}: not a METRICS.json from `safeeraser evaluate` (no {', '.join(METRIC_KEYS[:3])}, ...)")
    for key in METRIC_KEYS:
        value = metrics.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1
        ):
            raise UserError(f"{path}: field '{key}': expected a fraction in [0, 1] or null (got {value!r})")
    for key in ("ci95", "counts", "sources"):
        if not isinstance(metrics.get(key) or {}, dict):
            raise UserError(f"{path}: field '{key}': expected an object")
    if not isinstance((metrics.get("sources") or {}).get("data") or "", str):
        raise UserError(f"{path}: field 'sources.data': expected a path")
    return metrics


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"{folder}: run folder not found"
            if not folder.exists()
            else f"{folder}: not a folder (expected a run folder)"
        )
    metrics_path = folder / METRICS
    if not metrics_path.is_file():
        raise UserError(
            f"{folder}: no {METRICS} in this run folder (run `safeeraser evaluate ... --out {metrics_path}` first)"
        )
    method = folder.name
    summary: dict = {}
    if (folder / RUN_SUMMARY).exists():
        summary = read_json(folder / RUN_SUMMARY)
        if not isinstance(summary, dict) or not isinstance(summary.get("method"), str):
            raise UserError(f"{folder / RUN_SUMMARY}: field 'method': missing or not a string")
        method = summary["method"]
    metrics = _read_metrics(metrics_path)
    environment = summary.get("environment") or metrics.get("environment")
    return Run(
        folder,
        method,
        metrics,
        read_jsonl(folder / RUN_LOG),
        [row for row in read_jsonl(judgments_path(metrics_path)) if isinstance(row, dict)],
        environment=environment if isinstance(environment, dict) else None,
    )


def _label(runs: list[Run]) -> None:
    """The method names, with the folder name added where two runs share one."""
    methods = [r.method for r in runs]
    for run in runs:
        run.label = run.method if methods.count(run.method) == 1 else f"{run.method} ({run.folder.name})"


def _data_candidates(run: Run) -> list[Path]:
    """Where the dataset named in a run's metrics may be: ``evaluate`` records an absolute path,
    but a run folder moved to another machine, or written by hand, may name a relative one: try
    the working folder, then the run folder's ancestors."""
    source = (run.metrics.get("sources") or {}).get("data")
    if not source:
        return []
    path = Path(source)
    if path.is_absolute():
        return [path]
    return [path, *(parent / path for parent in run.folder.resolve().parents)]


def _dataset(runs: list[Run]) -> tuple[Split | None, str]:
    """The val split named by the runs' metrics (the first that loads), and a note for the page."""
    named = list(dict.fromkeys(str(d) for r in runs if (d := (r.metrics.get("sources") or {}).get("data"))))
    if not named:
        return None, "No dataset is named in the runs' metrics.json, so no samples can be shown."
    problems = []
    for candidate in dict.fromkeys(c for r in runs for c in _data_candidates(r)):
        if not candidate.exists():
            continue
        try:
            split = load_split(candidate, "val")
        except UserError as e:
            problems.append(str(e))
            continue
        differ = (
            f" Runs name {len(named)} datasets ({', '.join(named)}); the prompts are from {candidate}."
            if len(named) > 1
            else ""
        )
        return split, differ
    why = (
        "; ".join(problems)
        or f"dataset {', '.join(named)} not found (looked in the working folder and above the run folders)"
    )
    return None, f"Sample answers are left out: {why}."


def build_report(
    runs: list[Path],
    out: Path,
    *,
    allow_mixed: bool = False,
    warn=None,
    labels: dict | None = None,
    study: list[dict] | None = None,
    audits: list[Path] | None = None,
    audit_labels: dict | None = None,
) -> list[Path]:
    """Write results.{md,csv,json}, the plots and index.html into ``out``; return the files written.

    ``labels`` names runs (by the folder as given) in the tables; default: the method, plus the
    folder name where two runs share one. ``study``: the across-seed summary of a study's cells
    (``study.summary``), written to study.{json,md} and drawn as the Pareto plot; the page shows the
    across-seed table only where some cell has more than one seed (else the plot joins the others).
    ``audits``: audit folders (``safeeraser audit``): a Robustness section, robustness.md and the relearning plot;
    ``audit_labels`` names them (by the folder as given; default: the folder's name).

    Runs generated under different protocols or judged by different judges are refused
    (``allow_mixed`` puts them in one table with a warning); runs from different environments
    are reported with a warning, passed to ``warn`` and written into results.md and the page.
    """
    if not runs:
        raise UserError("no run folders given: pass one or more RUN_DIR, each with a metrics.json")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    unique: dict[Path, Path] = {}
    for folder in map(Path, runs):
        unique.setdefault(folder.resolve(), folder)  # a folder named twice counts once
    loaded = sorted((load_run(f) for f in unique.values()), key=lambda r: table.method_sort_key(r.method))
    _label(loaded)
    for run in loaded:
        if labels and run.folder in labels:
            run.label = labels[run.folder]
    rows = [table.result_row(r.method, r.label, str(r.folder), r.metrics) for r in loaded]
    mixed = table.measured_alike(rows)
    if mixed and not allow_mixed:
        raise UserError(
            f"{mixed[0]}: their numbers are not comparable; pass --allow-mixed to put them in one table anyway"
        )
    from safeeraser.environment import differences

    warnings = [f"{m}; these numbers are not comparable." for m in mixed]
    warnings += [f"environments differ: {d}" for d in differences({r.label: r.environment for r in loaded})]
    for w in warnings:
        if warn is not None:
            warn(f"warning: {w}")
    table.add_sarr_reductions(rows)
    logs = [(r.label, r.log) for r in loaded]
    split, note = _dataset(loaded)
    samples = html.collect_samples(split, {r.label: html.index_judgments(r.judgments) for r in loaded}) if split else []

    from safeeraser.audit.run import load_audit

    audited = [((audit_labels or {}).get(Path(a)) or Path(a).name, load_audit(Path(a))) for a in audits or []]
    names = (
        "results.json",
        "results.md",
        "results.csv",
        *(name for name, _ in PLOTS),
        *STUDY_FILES,
        *AUDIT_FILES,
        "index.html",
    )
    # a plot that no longer applies is removed with the rest of the earlier report
    with replace_files(out, names) as staging:
        atomic_write_json(staging / "results.json", rows)
        atomic_write_text(staging / "results.md", table.to_markdown(rows, warnings))
        atomic_write_text(staging / "results.csv", table.to_csv(rows))
        colours = plots.method_colours([r.label for r in loaded])
        drawn = [
            plots.plot_forgetting_bars(rows, staging / PLOTS[0][0]),
            plots.plot_tradeoff(rows, table.pd_pairs(rows), staging / PLOTS[1][0], colours),
            plots.plot_loss_curves(logs, staging / PLOTS[2][0]),
            plots.plot_dynamics(logs, staging / PLOTS[3][0], colours),
        ]
        figures = [(png, caption) for png, (_, caption) in zip(drawn, PLOTS) if png is not None]
        section = ""
        if study is not None:
            from safeeraser.report.seeds import several_seeds, to_markdown

            atomic_write_json(staging / STUDY_FILES[0], study)
            atomic_write_text(staging / STUDY_FILES[1], to_markdown(study))
            pareto = plots.plot_pareto(study, staging / STUDY_FILES[2])
            if several_seeds(study):
                section = html.study_section(study, pareto, PARETO_CAPTION)
            elif pareto is not None:
                figures.append((pareto, PARETO_CAPTION_ONE_SEED))
        if audited:
            from safeeraser.audit.run import to_markdown

            atomic_write_text(
                staging / AUDIT_FILES[0],
                "\n".join(f"## {label}\n\n" + to_markdown(record).split("\n", 2)[2] for label, record in audited),
            )
            curves = [
                (label, r["results"]["relearn"]["curve"], r["results"]["relearn"].get("vanilla_asr"))
                for label, r in audited
                if (r["results"].get("relearn") or {}).get("status") == "done"
            ]
            section += html.robustness_section(
                audited, plots.plot_relearn(curves, staging / AUDIT_FILES[1]), RELEARN_CAPTION
            )
        atomic_write_text(
            staging / "index.html", html.render_page(rows, figures, samples, note, warnings, study=section)
        )
    return [out / name for name in names if (out / name).exists()]
