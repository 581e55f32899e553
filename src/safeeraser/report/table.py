"""The paper-style results table: one row per run, as Markdown, CSV and JSON.

Rows are plain dicts (the objects of ``results.json``): ``method``, ``label`` (the method, plus
the folder name where two runs share a method), ``run``, ``judge``, the
metric keys of METRICS.json as fractions in [0, 1] or null, ``sarr_reduction`` (on an X+pd row:
how much PD cut SARR relative to X), ``ci95`` and ``counts``. Markdown shows percentages with
one decimal, as the paper does; CSV and JSON keep the fractions.
"""

from __future__ import annotations

import csv
import io
import json

from safeeraser.judge import JUDGES, VERDICTS
from safeeraser.metrics.registry import columns, metric_keys
from safeeraser.unlearn.methods import ALL_METHOD_NAMES, PD_SUFFIX, VANILLA

# The paper's method order, then the added methods as the registry declares them; anything else follows in name order.
METHOD_ORDER = (VANILLA, *ALL_METHOD_NAMES)


# The table's columns: every registered metric (``metrics.registry``), plugins' included.
COLUMNS = tuple(columns())


def method_sort_key(method: str) -> tuple:
    if method in METHOD_ORDER:
        return (0, METHOD_ORDER.index(method), "")
    return (1, 0, method)


def result_row(method: str, label: str, run: str, metrics: dict) -> dict:
    """The results.json object of one run, from its METRICS.json.

    Besides the metrics it says how they were measured: the generation protocol, the judge's
    identity and the environment fields that decide floating-point results (no commit or
    timing, so that two identical environments write identical rows).
    """
    from safeeraser.environment import numeric_identity

    row = {"method": method, "label": label, "run": run, "judge": metrics.get("judge")}
    row.update({key: metrics.get(key) for key in metric_keys()})
    row["rouge_l_f"] = metrics.get("rouge_l_f")
    row["sarr_reduction"] = None
    row["ci95"] = metrics.get("ci95") or {}
    row["counts"] = metrics.get("counts") or {}
    row["protocol"] = metrics.get("protocol") or "unrecorded"
    row["judge_identity"] = metrics.get("judge_identity") or {"kind": metrics.get("judge")}
    row["environment"] = (
        numeric_identity(metrics["environment"]) if isinstance(metrics.get("environment"), dict) else None
    )
    return row


def measured_alike(rows: list[dict]) -> list[str]:
    """What makes the rows' numbers incomparable: different generation protocols or judges."""
    problems = []
    protocols = sorted({r["protocol"] for r in rows})
    if len(protocols) > 1:
        problems.append(
            "generation protocols differ: "
            + "; ".join(f"{p} ({', '.join(r['label'] for r in rows if r['protocol'] == p)})" for p in protocols)
        )
    judges = {}
    for r in rows:
        judges.setdefault(json.dumps(r["judge_identity"], sort_keys=True), []).append(r["label"])
    if len(judges) > 1:
        problems.append(
            "judges differ: "
            + "; ".join(f"{_judge_name(json.loads(k))} ({', '.join(v)})" for k, v in judges.items())
            + f" [{_first_difference([json.loads(k) for k in judges])}]"
        )
    return problems


def _judge_name(identity: dict) -> str:
    if identity.get("kind") == "combined":  # one judge per verdict (``judge.combined``)
        by = identity.get("by_verdict") or {}
        return ",".join(f"{verdict}={_judge_name(by[verdict])}" for verdict in VERDICTS if verdict in by)
    parts = [
        identity.get("kind") or "unknown",
        identity.get("model"),
        identity.get("protocol"),
        identity.get("prompt_hash"),
    ]
    return "/".join(str(p) for p in parts if p)


def _first_difference(identities: list[dict]) -> str:
    """The identity fields in which the judges differ, named (e.g. ``unsafe.model``)."""

    def flat(identity: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in identity.items():
            if key == "by_verdict" and isinstance(value, dict):
                for verdict, inner in value.items():
                    out |= flat(inner if isinstance(inner, dict) else {"": inner}, f"{prefix}{verdict}.")
            else:
                out[prefix + key] = json.dumps(value, sort_keys=True)
        return out

    flats = [flat(i) for i in identities]
    keys = sorted({k for f in flats for k in f})
    differ = [k for k in keys if len({f.get(k) for f in flats}) > 1]
    return "differ in " + ", ".join(differ)


def relative_reduction(before: float | None, after: float | None) -> float | None:
    """(before - after) / before; undefined when either is missing or there was nothing to cut."""
    if before is None or after is None or before == 0:
        return None
    return (before - after) / before


def pd_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(X, X+pd) for every X whose X+pd partner is also in the table."""
    by_label = {r["label"]: r for r in rows}
    return [
        (by_label[r["label"][: -len(PD_SUFFIX)]], r)
        for r in rows
        if r["label"].endswith(PD_SUFFIX) and r["label"][: -len(PD_SUFFIX)] in by_label
    ]


def add_sarr_reductions(rows: list[dict]) -> None:
    for base, pd in pd_pairs(rows):
        pd["sarr_reduction"] = relative_reduction(base["sarr"], pd["sarr"])


def mean_reduction(rows: list[dict]) -> float | None:
    cuts = [pd["sarr_reduction"] for _, pd in pd_pairs(rows) if pd["sarr_reduction"] is not None]
    return sum(cuts) / len(cuts) if cuts else None


# The relative reduction (X - X+PD) / X where X's SARR is 0: there was nothing to cut.
UNDEFINED_REDUCTION = "undefined: X's SARR is 0"
MEAN_NOTE = "the paper reports 79.5% on LLaVA-1.5; pairs whose X has a SARR of 0 are left out"


def reduction_text(base: dict, pd: dict) -> str:
    """PD's relative cut of SARR as the PD table prints it; why there is none where X's SARR is 0."""
    if pd["sarr_reduction"] is not None:
        return f"{pct(pd['sarr_reduction'])}%"
    if base["sarr"] == 0 and pd["sarr"] is not None:
        return UNDEFINED_REDUCTION
    return "—"  # a SARR not measured


def mean_reduction_text(rows: list[dict]) -> str:
    mean = mean_reduction(rows)
    if mean is not None:
        return f"{pct(mean)}%"
    pairs = pd_pairs(rows)
    if pairs and all(reduction_text(base, pd) == UNDEFINED_REDUCTION for base, pd in pairs):
        return "undefined: every X's SARR is 0"
    return "—"


def pct(value: float | None) -> str:
    """A fraction as the paper prints it: a percentage with one decimal; ``—`` for null."""
    return "—" if value is None else f"{100 * value:.1f}"


def identity_text(identity: dict) -> str:
    """A judge identity in words: kind, model, protocol, prompt-template hash, decoding (per verdict for a combination)."""
    if identity.get("kind") == "combined":
        by = identity.get("by_verdict") or {}
        return "; ".join(f"{verdict}: {identity_text(by[verdict])}" for verdict in VERDICTS if verdict in by)
    parts = [identity.get("kind") or "unknown"]
    if identity.get("model"):
        parts.append(f"model {identity['model']}")
    if identity.get("protocol"):
        parts.append(f"protocol {identity['protocol']}")
    if identity.get("prompt_hash"):
        parts.append(f"prompt template {identity['prompt_hash']}")
    decoding = identity.get("decoding")
    if isinstance(decoding, dict) and decoding:
        parts.append("decoding " + " ".join(f"{k}={v}" for k, v in sorted(decoding.items())))
    if identity.get("reads_images"):
        parts.append("reads the image")
    if identity.get("judge_score") == "released":
        parts.append("consistency score as released (roles swapped, unreadable = 0.0)")
    return ", ".join(parts)


def judges_line(rows: list[dict]) -> str:
    """Which judge measured the rows, with its identity; each run's where they differ."""
    identities = {json.dumps(r["judge_identity"], sort_keys=True) for r in rows}
    if len(identities) == 1:
        name = rows[0]["judge"] or "unknown"
        meaning = JUDGES[name].meaning if name in JUDGES else None
        return (
            f"Judge: {name}"
            + (f", {meaning}" if meaning else "")
            + f". Identity: {identity_text(rows[0]['judge_identity'])}."
        )
    each = "; ".join(f"{r['label']}: {identity_text(r['judge_identity'])}" for r in rows)
    return f"Judges differ between runs, so their rates are not comparable ({each})."


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")  # a folder name may hold a pipe


def to_markdown(rows: list[dict], warnings: list[str] | None = None) -> str:
    lines = ["# SafeEraser results", ""]
    if warnings:
        lines += [f"> **Warning:** {w}" for w in warnings] + [""]
    lines.append("| Method | " + " | ".join(f"{c.header} {c.better}" for c in COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(COLUMNS))
    for r in rows:
        lines.append(f"| {_md_cell(r['label'])} | " + " | ".join(pct(r[c.key]) for c in COLUMNS) + " |")
    lines += ["", "Percent; ↓ lower is better, ↑ higher is better; — not measured.", ""]
    lines += [f"- **{c.header}** {c.better}: {c.meaning}." for c in COLUMNS]
    lines += ["", judges_line(rows), f"Generation protocol: {', '.join(sorted({r['protocol'] for r in rows}))}.", ""]
    pairs = pd_pairs(rows)
    if pairs:
        lines += [
            "## Prompt Decouple: SARR of X vs X+PD",
            "",
            "| X | SARR X | SARR X+PD | relative reduction |",
            "|---|---:|---:|---:|",
        ]
        for base, pd in pairs:
            lines.append(
                f"| {_md_cell(base['label'])} | {pct(base['sarr'])} | {pct(pd['sarr'])} | {reduction_text(base, pd)} |"
            )
        lines += ["", f"Mean relative SARR reduction: {mean_reduction_text(rows)} ({MEAN_NOTE}).", ""]
    return "\n".join(lines)


def _ci(row: dict, key: str, end: int) -> float | None:
    ci = row["ci95"].get(key)
    return ci[end] if ci else None


def to_csv(rows: list[dict]) -> str:
    """Fractions, with each metric's 95% interval and count beside it."""
    keys = metric_keys()
    header = ["method", "label", "run", "judge", *keys, "sarr_reduction"]
    header += [f"{k}_{part}" for k in keys for part in ("ci_low", "ci_high", "n")]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        cells = [r["method"], r["label"], r["run"], r["judge"], *(r[k] for k in keys), r["sarr_reduction"]]
        for k in keys:
            cells += [_ci(r, k, 0), _ci(r, k, 1), (r["counts"].get(k) or {}).get("n")]
        writer.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()
