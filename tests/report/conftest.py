"""Hand-made run folders over a tiny real demo dataset: known metrics, judgments and logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeeraser.data.demo import make_demo

# A question with HTML in it: the page must show it as text.
TRICKY_QUESTION = 'Is <b>this</b> & "that" <script>alert(1)</script> safe?'
TRICKY_ANSWER = "Sure: <img src=x onerror=alert(2)> step one"

# method -> the metrics its metrics.json holds (fractions), as `safeeraser evaluate` writes them.
METRICS = {
    "vanilla": {"asr_efficacy": 0.95, "rr_efficacy": 0.0, "asr_generality": 0.9, "rr_generality": 0.05, "sarr": 0.02, "rouge_l": 1.0, "judge_score": None, "specificity": 0.61},
    "ga": {"asr_efficacy": 0.0, "rr_efficacy": 0.0, "asr_generality": 0.0, "rr_generality": 0.0, "sarr": 1.0, "rouge_l": 0.0, "judge_score": None, "specificity": 0.0},
    "ga+pd": {"asr_efficacy": 0.01, "rr_efficacy": 0.2, "asr_generality": 0.04, "rr_generality": 0.1, "sarr": 0.25, "rouge_l": 0.5, "judge_score": None, "specificity": 0.4},
    "po": {"asr_efficacy": 0.001, "rr_efficacy": 1.0, "asr_generality": 0.0, "rr_generality": 1.0, "sarr": 1.0, "rouge_l": 0.6, "judge_score": None, "specificity": 0.5},
    "po+pd": {"asr_efficacy": 0.002, "rr_efficacy": 1.0, "asr_generality": 0.012, "rr_generality": 0.97, "sarr": 0.303, "rouge_l": 0.654, "judge_score": None, "specificity": 0.55},
    "zeta": {"asr_efficacy": 0.5, "rr_efficacy": 0.5, "asr_generality": None, "rr_generality": None, "sarr": None, "rouge_l": None, "judge_score": 0.8, "specificity": None},
}
# method -> (verdict on the harmful image, verdict on the harmless image) in its judgments.
VERDICTS = {
    "vanilla": ("unsafe", "normal"),
    "ga": ("degenerate", "degenerate"),
    "ga+pd": ("degenerate", "normal"),
    "po": ("refusal", "refusal"),
    "po+pd": ("refusal", "normal"),
    "zeta": ("failed", "failed"),
}
ANSWERS = {"unsafe": "Here is how: [step one withheld]", "normal": "A pastel garden with two red tulips.", "refusal": "I'm sorry, I can't help with that.", "degenerate": "away away away away away away"}


def _verdict_fields(verdict: str, metric: str) -> dict:
    if verdict == "failed":
        return {"error": "HTTP 503 from the judge"}
    if metric == "sarr":
        return {"refusal": verdict == "refusal", "normal": verdict == "normal", "note": "repetition" if verdict == "degenerate" else verdict}
    return {"refusal": verdict == "refusal", "unsafe": verdict == "unsafe", "note": "repetition" if verdict == "degenerate" else ("answer" if verdict == "unsafe" else verdict)}


def _judgments(val: list[dict], method: str) -> list[dict]:
    harmful, harmless = VERDICTS[method]
    rows = []
    for i, record in enumerate(val):
        category = Path(record["image_path"]).parent.name
        for j, pair in enumerate(record["unsafe_pairs"]):
            base = {"split": "val", "record": i, "category": category, "question": pair["question"]}
            for k in (1, 2, 3):
                answer = TRICKY_ANSWER if (method, i, j) == ("vanilla", 0, 0) else ANSWERS.get(harmful, "")
                rows.append({"metric": "generality", "where": f"pair{j}/sample{k}", **base, "answer": answer, **_verdict_fields(harmful, "generality")})
            rows.append({"metric": "sarr", "where": f"pair{j}/sd", **base, "answer": ANSWERS.get(harmless, ""), **_verdict_fields(harmless, "sarr")})
    return rows


def _log(method: str) -> list[dict]:
    rows = []
    for step in range(1, 9):
        if method.startswith("ga"):
            row = {"step": step, "lr": 1e-4, "loss": -0.5 * step, "forget_nll": 0.5 * step}
            if method.endswith("+pd"):
                row["decouple_nll"] = 1.0 / step
        else:
            row = {"step": step, "lr": 1e-4, "loss": 2.0 / step, "refusal_nll": 1.5 / step, "retain_nll": 0.5 / step}
            if step % 2 == 0:
                row["eval"] = {"forget_rr": step / 8, "forget_asr": 1 - step / 8, "sarr": step / 8 if method == "po" else 0.1}
        rows.append(row)
    return rows


def write_run(folder: Path, method: str, data: Path, val: list[dict], *, run_json: bool = True) -> Path:
    folder.mkdir(parents=True)
    metrics = dict(METRICS[method])
    metrics["ci95"] = {k: [max(0.0, v - 0.05), min(1.0, v + 0.05)] for k, v in METRICS[method].items() if v is not None}
    metrics["counts"] = {k: {"n": 54, "failed": 0} for k in METRICS[method]}
    metrics["judge"] = "keyword"
    metrics["sources"] = {"data": str(data), "pred_train": str(folder / "predictions_train.json"), "pred_val": str(folder / "predictions_val.json"), "pred_general": None}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "metrics.judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _judgments(val, method)))
    if run_json:
        (folder / "run.json").write_text(json.dumps({"method": method, "steps": 8}))
        (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _log(method)))
    return folder


@pytest.fixture(scope="package")
def demo_runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """(dataset, run folders in a scrambled order): vanilla has no run.json, zeta is an unknown method."""
    root = tmp_path_factory.mktemp("report-runs")
    data = root / "data"
    make_demo(data, images_per_category=3)
    val_path = data / "all_val.json"
    val = json.loads(val_path.read_text())
    val[0]["unsafe_pairs"][0]["question"] = TRICKY_QUESTION
    val_path.write_text(json.dumps(val))
    runs = [
        write_run(root / "runs" / "po+pd", "po+pd", data, val),
        write_run(root / "runs" / "zeta-run", "zeta", data, val),
        write_run(root / "runs" / "vanilla", "vanilla", data, val, run_json=False),
        write_run(root / "runs" / "ga", "ga", data, val),
        write_run(root / "runs" / "po", "po", data, val),
        write_run(root / "runs" / "ga+pd", "ga+pd", data, val),
    ]
    return data, runs


@pytest.fixture(scope="package")
def report(demo_runs, tmp_path_factory) -> Path:
    """The report over all demo runs, built once."""
    from safeeraser.report.build import build_report

    out = tmp_path_factory.mktemp("report") / "out"
    build_report(demo_runs[1], out)
    return out
