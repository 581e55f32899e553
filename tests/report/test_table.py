"""results.json / .md / .csv: the numbers are the ones in the runs' metrics.json, in the paper's order."""

from __future__ import annotations

import csv
import json

import pytest

from safeeraser.metrics.evaluate import METRIC_KEYS
from safeeraser.report.build import build_report
from safeeraser.report.table import pct, relative_reduction

from .conftest import METRICS, write_run

ORDER = ["vanilla", "ga", "ga+pd", "po", "po+pd", "zeta"]


def test_results_json_holds_the_metrics_in_method_order(report):
    rows = json.loads((report / "results.json").read_text())
    assert [r["method"] for r in rows] == ORDER
    for row in rows:
        for key in METRIC_KEYS:
            assert row[key] == METRICS[row["method"]][key]
        assert row["label"] == row["method"]
        assert row["judge"] == "keyword"
        assert row["counts"]["sarr"] == {"n": 54, "failed": 0}
    by = {r["method"]: r for r in rows}
    assert by["po+pd"]["ci95"]["sarr"] == pytest.approx([0.253, 0.353])
    assert by["po+pd"]["sarr_reduction"] == pytest.approx(0.697)
    assert by["ga+pd"]["sarr_reduction"] == pytest.approx(0.75)
    assert by["po"]["sarr_reduction"] is None
    assert by["vanilla"]["run"].endswith("vanilla")


def test_markdown_prints_percent_with_one_decimal(report):
    md = (report / "results.md").read_text()
    assert "| po+pd | 0.2 | 100.0 | 1.2 | 97.0 | 65.4 | — | 55.0 | 30.3 |" in md
    assert "| zeta | 50.0 | 50.0 | — | — | — | 80.0 | — | — |" in md
    assert md.index("| vanilla |") < md.index("| ga |") < md.index("| po+pd |") < md.index("| zeta |")
    assert "↓ lower is better" in md and "**SARR** ↓" in md and "**ROUGE-L** ↑" in md
    assert "Judge: keyword" in md
    assert "| po | 100.0 | 30.3 | 69.7% |" in md
    assert "| ga | 100.0 | 25.0 | 75.0% |" in md
    assert "Mean relative SARR reduction: 72.4%" in md


def test_csv_parses_back_to_the_fractions(report):
    rows = list(csv.DictReader((report / "results.csv").open(encoding="utf-8")))
    assert [r["method"] for r in rows] == ORDER
    by = {r["method"]: r for r in rows}
    assert float(by["po+pd"]["sarr"]) == 0.303
    assert float(by["po+pd"]["sarr_reduction"]) == pytest.approx(0.697)
    assert by["vanilla"]["judge_score"] == ""
    assert float(by["po+pd"]["sarr_ci_low"]) == pytest.approx(0.253)
    assert by["po+pd"]["sarr_n"] == "54"


def test_relative_reduction_and_percent_format():
    assert relative_reduction(1.0, 0.303) == pytest.approx(0.697)
    assert relative_reduction(0.5, 0.6) == pytest.approx(-0.2)  # PD made it worse: shown, not hidden
    assert relative_reduction(0.0, 0.1) is None
    assert relative_reduction(None, 0.1) is None
    assert pct(0.303) == "30.3" and pct(1) == "100.0" and pct(0.001) == "0.1" and pct(None) == "—"


def test_runs_sharing_a_method_are_told_apart_by_folder(demo_runs, tmp_path):
    data, _ = demo_runs
    a = write_run(tmp_path / "seed0", "po", data)
    b = write_run(tmp_path / "seed1", "po", data)
    c = write_run(tmp_path / "pd", "po+pd", data)
    build_report([b, c, a, a], tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["label"] for r in rows] == ["po (seed1)", "po (seed0)", "po+pd"]
    assert all(r["sarr_reduction"] is None for r in rows)  # no unambiguous X for po+pd


def test_an_undefined_reduction_says_why(demo_runs, tmp_path):
    data, _ = demo_runs
    x = write_run(tmp_path / "po", "po", data)
    (x / "metrics.json").write_text(json.dumps(json.loads((x / "metrics.json").read_text()) | {"sarr": 0.0}))
    runs = [
        x,
        write_run(tmp_path / "po+pd", "po+pd", data),
        write_run(tmp_path / "ga", "ga", data),
        write_run(tmp_path / "ga+pd", "ga+pd", data),
    ]
    build_report(runs, tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| po | 0.0 | 30.3 | undefined: X's SARR is 0 |" in md
    assert "| ga | 100.0 | 25.0 | 75.0% |" in md
    assert (
        "Mean relative SARR reduction: 75.0% (the paper reports 79.5% on LLaVA-1.5; pairs whose X has a SARR of 0 are left out)."
        in md
    )
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<td>0.0</td><td>30.3</td><td>undefined: X&#x27;s SARR is 0</td>" in page and "—%" not in page
    assert "<b>75.0%</b>" in page

    build_report(runs[:2], tmp_path / "out")  # no pair left to average
    assert (
        "Mean relative SARR reduction: undefined: every X's SARR is 0 ("
        in (tmp_path / "out" / "results.md").read_text()
    )
    assert "<b>undefined: every X&#x27;s SARR is 0</b>" in (tmp_path / "out" / "index.html").read_text()
