"""Bad input to `safeeraser report`: one-line errors that name the folder or file, nothing half-written."""

from __future__ import annotations

import json

import pytest

from safeeraser.errors import UserError
from safeeraser.report.build import build_report
from tests.conftest import run_cli


def _error(runs, out) -> str:
    with pytest.raises(UserError) as e:
        build_report(runs, out)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_no_run_folders(tmp_path):
    assert "no run folders" in _error([], tmp_path / "out")


def test_missing_folder_and_missing_metrics(tmp_path):
    assert _error([tmp_path / "nope"], tmp_path / "out") == f"{tmp_path / 'nope'}: run folder not found"
    (tmp_path / "empty").mkdir()
    message = _error([tmp_path / "empty"], tmp_path / "out")
    assert message.startswith(f"{tmp_path / 'empty'}: no metrics.json")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"sarr": 0.3,', "invalid JSON at line 1"),
        ("[1, 2]", "not a METRICS.json"),
        ('{"sarr": 30.3}', "field 'sarr': expected a fraction in [0, 1] or null (got 30.3)"),
        ('{"sarr": "high"}', "field 'sarr'"),
        ('{"sarr": 0.3, "sources": "demo"}', "field 'sources': expected an object"),
    ],
)
def test_unreadable_metrics_name_the_file(tmp_path, content, expected):
    run = tmp_path / "po"
    run.mkdir()
    (run / "metrics.json").write_text(content)
    message = _error([run], tmp_path / "out")
    assert message.startswith(f"{run / 'metrics.json'}: ") and expected in message


def test_bad_run_json_and_judgments_name_the_file(tmp_path):
    run = tmp_path / "po"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"sarr": 0.5}))
    (run / "run.json").write_text("{}")
    assert _error([run], tmp_path / "out").startswith(f"{run / 'run.json'}: field 'method'")
    (run / "run.json").write_text('{"method": "po"}')
    (run / "metrics.judgments.jsonl").write_text('{"metric": "sarr"}\n{oops\n')
    assert _error([run], tmp_path / "out").startswith(f"{run / 'metrics.judgments.jsonl'}: line 2: invalid JSON")


def test_a_failed_report_leaves_the_previous_one_alone(report, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(report, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "bad").mkdir()
    _error([tmp_path / "bad"], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_prints_one_line_and_exits_non_zero(tmp_path, demo_runs):
    (tmp_path / "bad").mkdir()
    code, _, err = run_cli("report", tmp_path / "bad", "--out", tmp_path / "out")
    assert code == 2
    assert (
        err.strip()
        == f"error: {tmp_path / 'bad'}: no metrics.json in this run folder (run `safeeraser evaluate ... --out {tmp_path / 'bad' / 'metrics.json'}` first)"
    )
    code, _, err = run_cli("report", *demo_runs[1], "--out", tmp_path / "report")
    assert code == 0, err
    assert "index.html" in err and (tmp_path / "report" / "index.html").exists()
