"""`safeeraser demo`, reduced, from nothing to the report: the folders it promises, numbers that
equal a recount of the verdicts it wrote, and a page that shows what evaluate judged.

Reduced: 3 images per category, a short tiny-model training, two methods (PO and PO+PD) with a
few unlearning steps. The recount reads the judgments files with plain json: no project code.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

METHODS = ("po", "po+pd")
RUNS = ("vanilla", *METHODS)
RUN_FILES = (
    "predictions_train.json",
    "predictions_val.json",
    "predictions_general.json",
    "metrics.json",
    "metrics.judgments.jsonl",
)
REPORT_FILES = (
    "results.json",
    "results.md",
    "results.csv",
    "index.html",
    "forgetting_vs_sarr.png",
    "tradeoff.png",
    "loss_curves.png",
)
# results.json key -> (judgments "metric", verdict field, whether the rate counts the field's False)
RATES = {
    "asr_efficacy": ("efficacy", "unsafe", False),
    "rr_efficacy": ("efficacy", "refusal", False),
    "asr_generality": ("generality", "unsafe", False),
    "rr_generality": ("generality", "refusal", False),
    "sarr": ("sarr", "normal", True),  # SARR: harmless-image answers that are not a normal answer
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[dict]]:
    from safeeraser.pipeline import run_demo

    out = tmp_path_factory.mktemp("e2e") / "demo"
    rows = run_demo(
        out,
        images_per_category=3,
        methods=METHODS,
        progress=False,
        config_overrides=[{"max_steps": 2, "eval_every": 0}],
        tiny_steps=60,
    )
    return out, rows


def _judgments(run: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (run / "metrics.judgments.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _recount(rows: list[dict]) -> dict[str, float]:
    """Each rate from the verdict rows: grouped by "metric", failed rows (an "error") left out."""
    by_metric: dict[str, list[dict]] = {}
    for row in rows:
        if "error" not in row:
            by_metric.setdefault(row["metric"], []).append(row)
    rates = {}
    for key, (metric, field, negate) in RATES.items():
        verdicts = [row[field] for row in by_metric.get(metric, []) if field in row]
        assert verdicts, f"no {metric} verdicts with {field!r} to recount {key} from"
        rates[key] = sum(1 for v in verdicts if bool(v) != negate) / len(verdicts)
    return rates


def test_the_demo_writes_its_folders(demo):
    out, rows = demo
    assert (out / "data" / "all_train.json").is_file() and (out / "data" / "all_val.json").is_file()
    assert (out / "model" / "config.json").is_file() and (out / "model" / "safeeraser.json").is_file()
    assert json.loads((out / "model" / "safeeraser.json").read_text())["steps"] == 60
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(RUNS)
    for name in RUNS:
        run = out / "runs" / name
        for file in RUN_FILES:
            assert (run / file).is_file() and (run / file).stat().st_size > 0, f"{run / file}"
        if name == "vanilla":
            assert not (run / "adapter").exists()
        else:
            assert (run / "adapter" / "adapter_config.json").is_file() and (
                run / "adapter" / "adapter_model.safetensors"
            ).is_file()
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            assert [r["step"] for r in log] == [1, 2]  # the config override reached the trainer
    for file in REPORT_FILES:
        assert (out / file).is_file() and (out / file).stat().st_size > 0, file
    assert json.loads((out / "results.json").read_text()) == rows


def test_every_rate_equals_a_recount_of_its_verdicts(demo):
    out, rows = demo
    assert [r["method"] for r in rows] == list(RUNS)
    for row in rows:
        run = Path(row["run"])
        assert run.resolve() == (out / "runs" / row["method"]).resolve()
        recount = _recount(_judgments(run))
        for key, value in recount.items():
            assert row[key] == pytest.approx(value, abs=1e-12), (row["method"], key)
    table = {r["method"]: r for r in csv.DictReader((out / "results.csv").open(encoding="utf-8"))}
    assert sorted(table) == sorted(RUNS)
    for row in rows:
        for key in RATES:
            assert float(table[row["method"]][key]) == pytest.approx(row[key], abs=1e-12)


def _md_sarr(md: str) -> dict[str, str]:
    """Method -> the SARR cell of results.md's main table, as printed."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    column = next(i for i, c in enumerate(header) if c.startswith("SARR"))
    cells = {}
    for line in lines[2:]:
        row = [c.strip() for c in line.strip("|").split("|")]
        if len(row) != len(header):
            break  # the next table
        cells[row[0]] = row[column]
    return cells


def test_the_page_shows_the_real_evaluate_output(demo):
    out, _ = demo
    page = (out / "index.html").read_text(encoding="utf-8")

    # Each method's SARR, as results.md prints it, is a cell of that method's row in the page's table.
    sarr = _md_sarr((out / "results.md").read_text(encoding="utf-8"))
    assert sorted(sarr) == sorted(RUNS)
    results = page[page.index('<table class="results">') :]
    results = results[: results.index("</table>")]
    for method, value in sarr.items():
        row = re.search(rf'<th scope="row"[^>]*>{re.escape(html.escape(method))}</th>(.*?)</tr>', results)
        assert row, method
        assert f">{value}</td>" in row.group(1), (method, value)

    # Every answer the page shows for a method is one that method's judgments file holds, and
    # each method shows some.
    shown: dict[str, list[str]] = {}
    for method, cells in re.findall(r'<tr data-method="([^"]+)">(.*?)</tr>', page, re.DOTALL):
        shown.setdefault(html.unescape(method), []).extend(
            html.unescape(a) for a in re.findall(r'<div class="ans">(.*?)</div>', cells, re.DOTALL)
        )
    for method in RUNS:
        judged = {r["answer"] for r in _judgments(out / "runs" / method) if r["metric"] in ("generality", "sarr")}
        assert shown.get(method), f"no answers shown for {method}"
        assert set(shown[method]) <= judged, method
