"""Kill -9 and Ctrl-C in the middle of real runs: a rerun resumes and ends exactly where an
uninterrupted run ends."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.judge.test_openai_judge import KEY, _vanilla_predictions, endpoint_flags
from tests.reliability.conftest import Cli, error_lines, run_to_end

# Real subprocesses run to their end twice per test, most of them on the tiny model.
pytestmark = pytest.mark.slow

# Small batches, so that generation has many batches to be cut between.
GENERATE = ["--split", "val", "--batch-size", "1", "--num-samples", "2", "--max-new-tokens", "12", "--seed", "7"]


def _generate_args(model, data, out):
    return ["generate", "--model", model, "--data", data, "--out", out, *GENERATE]


def _finished_batches(partial) -> int:
    """Complete batch lines in a partial file (its first line is the header)."""
    if not partial.exists():
        return 0
    return max(0, partial.read_bytes().count(b"\n") - 1)


@pytest.fixture(scope="module")
def clean_predictions(tiny_model, demo_data, tmp_path_factory):
    """The prediction file of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("clean")
    run_to_end(_generate_args(tiny_model, demo_data, folder / "pred.json"), folder / "log")
    return (folder / "pred.json").read_bytes()


def _interrupt_generation(tiny_model, demo_data, tmp_path, sig):
    """Start generation and stop it with ``sig`` after its first finished batch; returns (exit code, the run, out)."""
    out = tmp_path / "pred.json"
    partial = tmp_path / "pred.json.partial.jsonl"
    run = Cli(_generate_args(tiny_model, demo_data, out), tmp_path / "log-1")
    run.wait_until(lambda: _finished_batches(partial) >= 1, "a batch was finished")
    code = run.stop(sig)
    assert not out.exists(), "the run ended before it could be interrupted"
    assert _finished_batches(partial) >= 1  # finished work survives the interruption
    return code, run, out


def _resume_generation(tiny_model, demo_data, tmp_path, out, clean):
    output = run_to_end(_generate_args(tiny_model, demo_data, out), tmp_path / "log-2")
    resumed = int(re.search(r"\((\d+) resumed\)", output).group(1))
    assert resumed > 0  # finished batches were skipped, not redone
    assert out.read_bytes() == clean
    assert not out.with_name(out.name + ".partial.jsonl").exists()


def test_generation_killed_then_rerun_ends_as_an_uninterrupted_run(tiny_model, demo_data, tmp_path, clean_predictions):
    code, _, out = _interrupt_generation(tiny_model, demo_data, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    _resume_generation(tiny_model, demo_data, tmp_path, out, clean_predictions)


def test_ctrl_c_during_generation_says_so_in_one_line_and_keeps_the_work(
    tiny_model, demo_data, tmp_path, clean_predictions
):
    code, run, out = _interrupt_generation(tiny_model, demo_data, tmp_path, signal.SIGINT)
    assert code == 130
    assert error_lines(run.output) == ["error: interrupted; finished work is kept, rerun the same command to resume"]
    assert "Traceback" not in run.output
    _resume_generation(tiny_model, demo_data, tmp_path, out, clean_predictions)


# --- unlearning --------------------------------------------------------------------------


def _unlearn_args(model, data, out, *extra):
    # grad_accum=4 makes each step long enough for the test to kill the run between checkpoints.
    return [
        "unlearn",
        "--model",
        model,
        "--data",
        data,
        "--method",
        "po+pd",
        "--out",
        out,
        "--preset",
        "demo",
        "--max-steps",
        "6",
        "--set",
        "checkpoint_every=2",
        "--set",
        "grad_accum=4",
        "--set",
        "eval_every=0",
        *extra,
    ]


def test_unlearning_killed_then_resumed_ends_with_the_same_adapter(tiny_model, demo_data, tmp_path):
    run_to_end(_unlearn_args(tiny_model, demo_data, tmp_path / "clean"), tmp_path / "log-clean")

    out = tmp_path / "run"
    run = Cli(_unlearn_args(tiny_model, demo_data, out), tmp_path / "log-1")
    state = out / "checkpoint" / "state.json"  # written last into the checkpoint, which appears in one rename
    run.wait_until(state.exists, "the first checkpoint was written")
    run.stop(signal.SIGKILL)
    assert not (out / "run.json").exists(), "the run ended before it could be killed"
    at = json.loads(state.read_text())["step"]

    output = run_to_end(_unlearn_args(tiny_model, demo_data, out, "--resume"), tmp_path / "log-2")
    assert "6/6 steps" in output and f"(resumed at step {at})" in output
    resumed = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    clean = load_file(str(tmp_path / "clean" / "adapter" / "adapter_model.safetensors"))
    assert resumed.keys() == clean.keys()
    for name in clean:
        assert torch.allclose(resumed[name], clean[name], rtol=1e-5, atol=1e-7), name
    assert [row["step"] for row in map(json.loads, (out / "log.jsonl").read_text().splitlines())] == [1, 2, 3, 4, 5, 6]
    assert not (out / "checkpoint").exists()


# --- judging -----------------------------------------------------------------------------


def _evaluate_args(data, pred, url, out):
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
        "2",
        "--out",
        out,
    ]


def _comparable(metrics_path):
    """metrics.json and the verdicts, less what legitimately differs between a cached and a fresh run."""
    metrics = json.loads(metrics_path.read_text())
    for count in ("n_cached", "n_requests", "n_retries"):
        del metrics[count]
    rows = [json.loads(line) for line in metrics_path.with_name("metrics.judgments.jsonl").read_text().splitlines()]
    return metrics, [{k: v for k, v in row.items() if k != "cached"} for row in rows]


def test_judging_killed_then_rerun_asks_only_what_was_not_cached(server, demo_data, tmp_path, judge_cache_home):
    pred = _vanilla_predictions(demo_data, tmp_path / "pred_val.json")
    endpoint, url = server(latency=0.02)
    # (a cache of its own: the shared one would answer the run below)
    run_to_end(
        [
            *_evaluate_args(demo_data, pred, url, tmp_path / "clean" / "metrics.json"),
            "--cache",
            tmp_path / "clean.sqlite",
        ],
        tmp_path / "log-clean",
    )
    prompts = len(endpoint.requests)  # one request per distinct prompt

    endpoint.requests.clear()
    out = tmp_path / "run" / "metrics.json"
    run = Cli(_evaluate_args(demo_data, pred, url, out), tmp_path / "log-1")
    run.wait_until(lambda: len(endpoint.requests) >= prompts // 3, "a third of the prompts were asked")
    run.stop(signal.SIGKILL)
    assert not out.exists(), "the run ended before it could be killed"
    time.sleep(0.5)  # let the server take in what the killed process had already sent
    asked_before = len(endpoint.requests)
    with sqlite3.connect(judge_cache_home / "safeeraser" / "judge.sqlite") as db:
        cached = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    # Each verdict is cached before its worker sends the next request: only those in flight (at
    # most --concurrency) are lost.
    assert 0 < cached <= asked_before <= cached + 2

    endpoint.requests.clear()
    output = run_to_end(_evaluate_args(demo_data, pred, url, out), tmp_path / "log-2")
    assert len(endpoint.requests) == prompts - cached
    metrics = json.loads(out.read_text())
    assert metrics["n_requests"] == prompts - cached and metrics["n_retries"] == 0
    assert metrics["n_cached"] > 0 and f"cached {metrics['n_cached']}" in output
    assert _comparable(out) == _comparable(tmp_path / "clean" / "metrics.json")
