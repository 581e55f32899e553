"""The shared verdict cache: one sqlite file in the user cache directory, shared by output folders,
reruns and concurrent processes, against a real loopback Chat Completions server that counts
requests. (``judge_cache_home``, from tests/conftest.py, is each test's own XDG_CACHE_HOME.)"""

from __future__ import annotations

import json
import sqlite3

import pytest

from safeeraser.judge.cache import default_path
from tests.conftest import run_cli
from tests.judge.test_openai_judge import REFUSAL, _vanilla_predictions, endpoint_flags, server  # noqa: F401  (server: the fixture)
from tests.reliability.conftest import Cli

METRIC_VALUES = ("asr_generality", "rr_generality", "sarr", "judge_score", "rouge_l")


def _args(data, pred, url, out, *extra):
    return [
        "evaluate",
        "--data",
        data,
        "--pred-val",
        pred,
        "--judge",
        "openai",
        *endpoint_flags(url),
        "--concurrency",
        "4",
        *extra,
        "--out",
        out,
    ]


def _run(*args) -> dict:
    code, _, err = run_cli(*args)
    assert code == 0, err
    return json.loads(args[-1].read_text())


def _rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]


def test_the_default_cache_is_in_the_user_cache_directory(judge_cache_home, monkeypatch):
    assert default_path() == judge_cache_home / "safeeraser" / "judge.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert str(default_path()) == "/home/someone/.cache/safeeraser/judge.sqlite"


def test_a_second_evaluate_into_a_new_folder_sends_no_request(server, demo_data, tmp_path, judge_cache_home):
    endpoint, url = server()
    pred = _vanilla_predictions(demo_data, tmp_path / "pred_val.json")
    first = _run(*_args(demo_data, pred, url, tmp_path / "a" / "metrics.json"))
    sent = len(endpoint.requests)
    assert sent > 0 and first["n_requests"] == sent and first["n_cached"] == 0

    second = _run(*_args(demo_data, pred, url, tmp_path / "b" / "metrics.json"))
    assert len(endpoint.requests) == sent  # the server saw nothing new
    assert second["n_requests"] == 0 and second["n_cached"] == second["n_judged"] == first["n_judged"]
    assert {k: second[k] for k in METRIC_VALUES} == {k: first[k] for k in METRIC_VALUES}

    cache = judge_cache_home / "safeeraser" / "judge.sqlite"
    assert _rows(cache) == sent  # one row per distinct question
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # --no-cache asks everything again and writes no cache anywhere.
    third = _run(*_args(demo_data, pred, url, tmp_path / "c" / "metrics.json", "--no-cache"))
    assert len(endpoint.requests) == 2 * sent and third["n_cached"] == 0 and _rows(cache) == sent
    assert not [p for p in tmp_path.rglob("*.sqlite")]


def test_another_judge_model_or_endpoint_is_not_answered_from_the_cache(server, demo_data, tmp_path):
    endpoint, url = server()
    other_endpoint, other_url = server()
    pred = _vanilla_predictions(demo_data, tmp_path / "pred_val.json")
    _run(*_args(demo_data, pred, url, tmp_path / "a" / "metrics.json"))
    sent = len(endpoint.requests)
    # the same model name on another server may be another model
    _run(*_args(demo_data, pred, other_url, tmp_path / "b" / "metrics.json"))
    assert len(other_endpoint.requests) == sent
    renamed = _args(demo_data, pred, url, tmp_path / "c" / "metrics.json")
    renamed[renamed.index("judge-test")] = "judge-other"
    _run(*renamed)
    assert len(endpoint.requests) == 2 * sent


def test_conflicting_cache_options_are_refused(demo_data, tmp_path):
    code, _, err = run_cli(
        *_args(
            demo_data,
            tmp_path / "p.json",
            "http://127.0.0.1:9/v1",
            tmp_path / "m.json",
            "--cache",
            tmp_path / "c.sqlite",
            "--no-cache",
        )
    )
    assert code == 2 and "--cache and --no-cache contradict each other" in err


@pytest.mark.slow  # two evaluate processes at once, then two reruns (about 20 s)
def test_two_concurrent_evaluates_on_one_cache_lose_nothing(server, demo_data, tmp_path, judge_cache_home):
    endpoint, url = server(latency=0.01)
    pred_a = _vanilla_predictions(demo_data, tmp_path / "pred_a.json")
    # B shares half its answers with A and has half its own: both write overlapping and new rows
    records = json.loads(pred_a.read_text())
    for i, record in enumerate(records):
        for j, pair in enumerate(record["unsafe_pairs"]):
            if (i + j) % 2:
                pair.update({f"model_response{k}": f"{REFUSAL} ({i}.{j}.{k})" for k in (1, 2, 3)})
    pred_b = tmp_path / "pred_b.json"
    pred_b.write_text(json.dumps(records))

    runs = [
        Cli(_args(demo_data, p, url, tmp_path / name / "metrics.json"), tmp_path / f"log-{name}")
        for name, p in (("a", pred_a), ("b", pred_b))
    ]
    for run in runs:
        assert run.finish() == 0, run.output[-3000:]
    asked = {json.dumps(r["body"]["messages"]) for r in endpoint.requests}
    cache = judge_cache_home / "safeeraser" / "judge.sqlite"
    assert _rows(cache) == len(asked)  # every distinct question either process asked was kept
    metrics = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in "ab"}
    assert all(m["n_failed"] == 0 and m["n_requests"] > 0 for m in metrics.values())

    endpoint.requests.clear()
    for name, p in (("a", pred_a), ("b", pred_b)):
        again = _run(*_args(demo_data, p, url, tmp_path / f"{name}2" / "metrics.json"))
        assert again["n_requests"] == 0 and {k: again[k] for k in METRIC_VALUES} == {
            k: metrics[name][k] for k in METRIC_VALUES
        }
    assert endpoint.requests == []
