"""`safeeraser judges agree`: how far two judges' verdicts on the same answers are apart.

Two evaluations of the same predictions (each a METRICS.json with its judgments file) are joined
answer by answer. Per yes/no verdict (unsafe, refusal, normal): the raw agreement, Cohen's kappa
(agreement beyond what the two judges' base rates give by chance) with a 95% percentile-bootstrap
interval, and the 2x2 confusion table; for the 0-1 consistency score, the mean absolute
difference. The bootstrap resamples questions, not answers: the K sampled answers to one
question move together, as in every interval here (``metrics.stats``). Every disagreement is
written, with its question and answer, to a Markdown file a person can read through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safeeraser.errors import UserError
from safeeraser.formats import question_of
from safeeraser.io import (
    atomic_write_json,
    atomic_write_text,
    check_output_file,
    parse_json_lines,
    read_json,
    read_text,
)
from safeeraser.metrics.evaluate import METRIC_KEYS, judgments_path
from safeeraser.metrics.stats import BOOTSTRAP_RESAMPLES

BINARY = ("unsafe", "refusal", "normal")
JUDGED = ("efficacy", "generality", "sarr", "consistency")  # judgment rows that carry verdicts


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two raters' yes/no labels; None where it is undefined (no labels, or both
    raters give one and the same label throughout, so that chance explains all agreement)."""
    if not a:
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    observed = float((x == y).mean())
    pa, pb = float(x.mean()), float(y.mean())
    expected = pa * pb + (1 - pa) * (1 - pb)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def kappa_with_ci(
    a: list[bool], b: list[bool], clusters: list[str], *, seed: int = 0
) -> tuple[float | None, list[float] | None]:
    """Kappa and a 95% percentile interval from resampling clusters (resamples where kappa is undefined are dropped)."""
    kappa = cohen_kappa(a, b)
    if kappa is None:
        return None, None
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clusters):
        groups.setdefault(c, []).append(i)
    members = list(groups.values())
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    rng = np.random.default_rng(seed)
    boot = []
    for picks in rng.integers(0, len(members), size=(BOOTSTRAP_RESAMPLES, len(members))):
        idx = [i for p in picks for i in members[p]]
        k = cohen_kappa(list(x[idx]), list(y[idx]))
        if k is not None:
            boot.append(k)
    if not boot:
        return kappa, None
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return kappa, [float(lo), float(hi)]


def _key(row: dict) -> tuple:
    return (row.get("metric"), row.get("split"), row.get("record"), row.get("where"))


def _load(metrics_path: Path) -> tuple[dict, dict[tuple, dict]]:
    metrics_path = Path(metrics_path)
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict):
        raise UserError(f"{metrics_path}: expected a METRICS.json object written by `safeeraser evaluate`")
    rows_path = judgments_path(metrics_path)
    if not rows_path.is_file():
        raise UserError(
            f"{metrics_path}: no judgments file beside it ({rows_path.name}); was it written by `safeeraser evaluate`?"
        )
    rows = {
        _key(r): r
        for r in parse_json_lines(read_text(rows_path), rows_path)
        if isinstance(r, dict) and r.get("metric") in JUDGED
    }
    return metrics, rows


def _judge_label(metrics: dict) -> str:
    identity = metrics.get("judge_identity") or {}
    if identity.get("kind") == "combined":
        return metrics.get("judge") or "combined"
    parts = [identity.get("kind") or metrics.get("judge") or "unknown", identity.get("model"), identity.get("protocol")]
    return "/".join(str(p) for p in parts if p)


def agree(metrics_a: str | Path, metrics_b: str | Path, out: str | Path, *, seed: int = 0) -> dict:
    """Compare two evaluations; write OUT (Markdown: summary and every disagreement) and OUT.json."""
    out = Path(out)
    check_output_file(out)
    ma, rows_a = _load(Path(metrics_a))
    mb, rows_b = _load(Path(metrics_b))
    shared = sorted(set(rows_a) & set(rows_b), key=lambda k: tuple(str(x) for x in k))
    if not shared:
        raise UserError(
            f"{metrics_a} and {metrics_b} judged no answer in common: evaluations of different predictions?"
        )
    for key in shared:
        if rows_a[key].get("answer") != rows_b[key].get("answer"):
            metric, split, record, where = key
            raise UserError(
                f"{metrics_b}: {split} record {record} {where}: another answer than in {metrics_a}: evaluations of different predictions"
            )
    verdicts: dict[str, dict] = {}
    disagreements: list[tuple[str, dict, dict]] = []
    for verdict in BINARY:
        both = [
            k for k in shared if isinstance(rows_a[k].get(verdict), bool) and isinstance(rows_b[k].get(verdict), bool)
        ]
        a = [rows_a[k][verdict] for k in both]
        b = [rows_b[k][verdict] for k in both]
        if not both:
            verdicts[verdict] = {"n": 0, "reason": "not given by both judges"}
            continue
        clusters = [f"{k[0]}/{k[1]}/{k[2]}/{question_of(k[3])}" for k in both]
        kappa, ci = kappa_with_ci(a, b, clusters, seed=seed)
        confusion = {
            f"a_{x}_b_{y}".lower(): sum(1 for p, q in zip(a, b) if p is x and q is y)
            for x in (True, False)
            for y in (True, False)
        }
        verdicts[verdict] = {
            "n": len(both),
            "agreement": sum(p == q for p, q in zip(a, b)) / len(both),
            "kappa": kappa,
            "kappa_ci95": ci,
            "rate_a": sum(a) / len(a),
            "rate_b": sum(b) / len(b),
            "confusion": confusion,
        }
        disagreements += [(verdict, rows_a[k], rows_b[k]) for k in both if rows_a[k][verdict] != rows_b[k][verdict]]
    scored = [
        k
        for k in shared
        if isinstance(rows_a[k].get("score"), (int, float)) and isinstance(rows_b[k].get("score"), (int, float))
    ]
    if scored:
        verdicts["score"] = {
            "n": len(scored),
            "mean_abs_difference": sum(abs(rows_a[k]["score"] - rows_b[k]["score"]) for k in scored) / len(scored),
        }
    else:
        verdicts["score"] = {"n": 0, "reason": "not given by both judges"}
    result = {
        "a": {
            "metrics": str(Path(metrics_a).resolve()),
            "judge": _judge_label(ma),
            "judge_identity": ma.get("judge_identity"),
        },
        "b": {
            "metrics": str(Path(metrics_b).resolve()),
            "judge": _judge_label(mb),
            "judge_identity": mb.get("judge_identity"),
        },
        "answers_in_common": len(shared),
        "only_in_a": len(set(rows_a) - set(rows_b)),
        "only_in_b": len(set(rows_b) - set(rows_a)),
        "seed": seed,
        "verdicts": verdicts,
        "metrics": {
            k: {"a": ma.get(k), "b": mb.get(k)} for k in METRIC_KEYS if ma.get(k) is not None or mb.get(k) is not None
        },
        "disagreements": len(disagreements),
    }
    atomic_write_text(out, _markdown(result, disagreements))
    atomic_write_json(out.with_suffix(".json"), result)
    return result


def summary_lines(result: dict) -> list[str]:
    """The comparison in a few lines, as the command prints it."""
    lines = [
        f"A: {result['a']['judge']} ({result['a']['metrics']})",
        f"B: {result['b']['judge']} ({result['b']['metrics']})",
        f"{result['answers_in_common']} answers judged by both",
    ]
    for verdict, v in result["verdicts"].items():
        if not v["n"]:
            lines.append(f"{verdict:<8} not compared: {v['reason']}")
        elif verdict == "score":
            lines.append(f"{verdict:<8} n={v['n']}  mean |A-B| {v['mean_abs_difference']:.3f}")
        else:
            kappa = "undefined (one label throughout)" if v["kappa"] is None else f"{v['kappa']:.3f}"
            ci = f" [{v['kappa_ci95'][0]:.3f}, {v['kappa_ci95'][1]:.3f}]" if v["kappa_ci95"] else ""
            c = v["confusion"]
            lines.append(
                f"{verdict:<8} n={v['n']}  agreement {100 * v['agreement']:.1f}%  kappa {kappa}{ci}  "
                f"(A yes/B yes {c['a_true_b_true']}, A yes/B no {c['a_true_b_false']}, A no/B yes {c['a_false_b_true']}, A no/B no {c['a_false_b_false']})"
            )
    return lines


def _markdown(result: dict, disagreements: list[tuple[str, dict, dict]]) -> str:
    lines = ["# Judge agreement", "", *[f"    {line}" for line in summary_lines(result)], ""]
    lines += [
        "Kappa's 95% interval: percentile bootstrap over questions "
        f"({BOOTSTRAP_RESAMPLES} resamples, seed {result['seed']}).",
        "",
    ]
    lines += ["| metric | A | B |", "|---|---|---|"]
    for key, pair in result["metrics"].items():
        lines.append(f"| {key} | {_num(pair['a'])} | {_num(pair['b'])} |")
    lines += ["", f"## Disagreements ({len(disagreements)})", ""]
    for verdict, a, b in disagreements:
        lines += [
            f"### {verdict}: A says {_yes(a[verdict])}, B says {_yes(b[verdict])} ({a['metric']}, {a['split']} record {a['record']}, {a['where']}, {a.get('category', '')})",
            "",
            f"Question: {a.get('question', '')}",
            "",
            "Answer:",
            "",
            *[f"> {line}" for line in (a.get("answer") or "(empty)").splitlines() or ["(empty)"]],
            "",
        ]
        notes = [f"A's note: {a['note']}" for _ in [0] if a.get("note")] + [
            f"B's note: {b['note']}" for _ in [0] if b.get("note")
        ]
        if notes:
            lines += ["; ".join(notes), ""]
    return "\n".join(lines) + "\n"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"
