"""Runs measured differently (generation protocol, judge) or in other environments, in one report."""

from __future__ import annotations

import json
import shutil

import pytest

from safeeraser.errors import UserError
from safeeraser.report.build import build_report
from tests.conftest import run_cli


@pytest.fixture
def two_runs(demo_runs, tmp_path):
    """Copies of two report runs, free to edit."""
    _, runs = demo_runs
    by_name = {r.name: r for r in runs}
    out = []
    for name in ("po", "po+pd"):
        shutil.copytree(by_name[name], tmp_path / name)
        out.append(tmp_path / name)
    return out


def _edit(run, **fields):
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(fields)
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_alike_runs_make_one_table_and_record_how_they_were_measured(two_runs, tmp_path):
    build_report(two_runs, tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["protocol"] for r in rows} == {"unrecorded"}  # hand-made prediction files carry no metadata
    assert all(r["judge_identity"]["kind"] == "keyword" for r in rows)
    assert all(r["environment"]["packages"]["torch"] for r in rows)
    assert "Generation protocol: unrecorded." in (tmp_path / "out" / "results.md").read_text()


def test_different_protocols_are_refused_unless_allowed(two_runs, tmp_path):
    _edit(two_runs[0], protocol="published")
    _edit(two_runs[1], protocol="fast")
    with pytest.raises(
        UserError, match=r"generation protocols differ: fast \(po\+pd\); published \(po\).*--allow-mixed"
    ):
        build_report(two_runs, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli("report", *two_runs, "--out", tmp_path / "out", "--allow-mixed")
    assert code == 0, err
    assert "warning: generation protocols differ" in err
    assert "Warning:** generation protocols differ" in (tmp_path / "out" / "results.md").read_text()
    assert "generation protocols differ" in (tmp_path / "out" / "index.html").read_text()


def test_different_judges_are_refused(two_runs, tmp_path):
    _edit(
        two_runs[1], judge_identity={"kind": "openai", "model": "gpt-4o", "protocol": "published", "prompt_hash": "abc"}
    )
    code, _, err = run_cli("report", *two_runs, "--out", tmp_path / "out")
    assert code == 2 and "judges differ" in err and "openai/gpt-4o/published/abc (po+pd)" in err
    assert not (tmp_path / "out").exists()


def test_judges_that_differ_only_in_decoding_are_refused_and_shown_when_allowed(two_runs, tmp_path):
    same = {"kind": "openai", "model": "gpt-4o", "protocol": "published", "prompt_hash": "abc"}
    _edit(two_runs[0], judge="openai", judge_identity=same | {"decoding": {"temperature": 0, "max_tokens": 16}})
    _edit(two_runs[1], judge="openai", judge_identity=same | {"decoding": {"temperature": 0, "max_tokens": 512}})
    code, _, err = run_cli("report", *two_runs, "--out", tmp_path / "out")
    assert code == 2 and "judges differ" in err and "differ in decoding" in err and "--allow-mixed" in err
    code, _, err = run_cli("report", *two_runs, "--out", tmp_path / "out", "--allow-mixed")
    assert code == 0, err
    md = (tmp_path / "out" / "results.md").read_text()
    assert (
        "po: openai, model gpt-4o, protocol published, prompt template abc, decoding max_tokens=16 temperature=0" in md
    )
    assert (
        "po+pd: openai, model gpt-4o, protocol published, prompt template abc, decoding max_tokens=512 temperature=0"
        in md
    )


def test_the_report_shows_the_judge_identity(two_runs, tmp_path):
    build_report(two_runs, tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    identity = json.loads((two_runs[0] / "metrics.json").read_text())["judge_identity"]
    assert f"Identity: keyword, protocol keyword-rules, prompt template {identity['prompt_hash']}." in md
    assert f"prompt template {identity['prompt_hash']}" in (tmp_path / "out" / "index.html").read_text()


def test_different_environments_are_reported(two_runs, tmp_path):
    metrics = json.loads((two_runs[1] / "metrics.json").read_text())
    env = metrics["environment"]
    env["packages"]["transformers"] = "0.0.1"
    _edit(two_runs[1], environment=env)
    warned = []
    build_report(two_runs, tmp_path / "out", warn=warned.append)
    assert any("environments differ" in w and "0.0.1" in w for w in warned)
    assert "0.0.1" in (tmp_path / "out" / "results.md").read_text()


def test_the_identity_says_a_released_consistency_score():
    from safeeraser.report.table import identity_text

    base = {"kind": "openai", "model": "gpt-4o", "protocol": "published", "prompt_hash": "abc"}
    assert "consistency score" not in identity_text(base)
    assert identity_text(base | {"judge_score": "released"}).endswith(
        ", consistency score as released (roles swapped, unreadable = 0.0)"
    )
