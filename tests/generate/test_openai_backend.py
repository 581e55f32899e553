"""`generate --backend openai` against a real Chat Completions server on loopback.

The server (the judge tests' loopback server with a generation handler) answers each request
with ``n`` texts that depend only on what the request carries: the question, the image's bytes,
the seed and the sample's index. So a resumed run can only match an uninterrupted one if every
prompt went out with its own image and seed; and evaluate reading the file shows it has the
published shape.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safeeraser.data.records import load_split
from safeeraser.errors import UserError
from safeeraser.generate.backends import OpenAIBackend
from safeeraser.generate.predictions import GenerationSettings, generate_predictions, split_tasks
from safeeraser.models.families.llava import VICUNA_SYSTEM
from tests.conftest import run_cli
from tests.judge.test_openai_judge import _handler, server  # noqa: F401  (server is a fixture)
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

SETTINGS = GenerationSettings(num_samples=3, max_new_tokens=20, seed=5)


def sample_text(body: dict, index: int) -> str:
    user = body["messages"][-1]["content"]
    url = next(part["image_url"]["url"] for part in user if part["type"] == "image_url")
    question = next(part["text"] for part in user if part["type"] == "text")
    image = hashlib.sha256(url.encode()).hexdigest()[:6]
    # "picture shows" reads as a normal answer to the keyword judge; the rest makes it unique
    return f" The picture shows {image} to {question[:24]!r}, sample {index} of seed {body.get('seed')}. "


def generation_handler(endpoint):
    """The loopback server's handler with answers for generation: ``n`` choices, usage counted."""
    base = _handler(endpoint)

    class Handler(base):
        def serve(self, body, fault):
            if fault and fault[0] in ("status", "garbage"):
                return super().serve(body, fault)
            if getattr(endpoint, "refuse_after", None) is not None and len(endpoint.requests) > endpoint.refuse_after:
                self.send(
                    400,
                    json.dumps({"error": {"message": "image too large", "type": "test"}}).encode(),
                    "application/json",
                )
                return
            n = 1 if getattr(endpoint, "ignore_n", False) else body.get("n", 1)
            texts = [sample_text(body, i) for i in range(n)]
            completion = {
                "id": "chatcmpl-gen",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                    for i, t in reversed(list(enumerate(texts)))
                ],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": sum(len(t.split()) for t in texts),
                    "total_tokens": 0,
                },
            }
            self.send(200, json.dumps(completion).encode(), "application/json")

    return Handler


def backend(url: str, **options) -> OpenAIBackend:
    return OpenAIBackend(
        "unlearned",
        **({"base_url": url, "system": VICUNA_SYSTEM, "concurrency": 4, "backoff": 0.01, "timeout": 10.0} | options),
    )


def test_prediction_file_evaluates_and_every_request_carries_the_protocol(server, small_demo, tmp_path):
    endpoint, url = server(handler=generation_handler)
    out = tmp_path / "pred_val.json"
    code, _, err = run_cli(
        "generate",
        "--backend",
        "openai",
        "--model",
        "unlearned",
        "--base-url",
        url,
        "--data",
        small_demo,
        "--split",
        "val",
        "--out",
        out,
        "--num-samples",
        "3",
        "--max-new-tokens",
        "20",
        "--seed",
        "5",
        "--concurrency",
        "4",
    )
    assert code == 0, err
    assert "backend openai" in err
    tasks = split_tasks(load_split(small_demo, "val"))
    assert len(endpoint.requests) == len(tasks)  # one request per prompt, K samples each

    images = {t.prompt.image for t in tasks}
    for request in endpoint.requests:
        body = request["body"]
        assert request["path"] == "/v1/chat/completions" and body["model"] == "unlearned"
        assert body["messages"][0] == {"role": "system", "content": VICUNA_SYSTEM}
        (image_part, text_part) = body["messages"][1]["content"]
        header, data = image_part["image_url"]["url"].split(",", 1)
        assert header == "data:image/png;base64"
        assert any(base64.b64decode(data) == p.read_bytes() for p in images)
        assert text_part["type"] == "text"
        assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (1.0, 0.9, 50, 20)
        assert body["n"] in (1, 3) and isinstance(body["seed"], int)
    assert sorted(r["body"]["n"] for r in endpoint.requests).count(3) == sum(t.multi for t in tasks)
    assert len({r["body"]["seed"] for r in endpoint.requests}) == len(tasks)  # every prompt its own seed

    meta = json.loads(out.with_name("pred_val.meta.json").read_text())
    assert meta["backend"] == {"kind": "openai", "system": VICUNA_SYSTEM}
    assert meta["n_requests"] == len(tasks) and meta["n_retries"] == 0
    assert meta["generated_tokens"] > 0

    code, _, err = run_cli("evaluate", "--data", small_demo, "--pred-val", out, "--out", tmp_path / "metrics.json")
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_judged"] > 0 and metrics["asr_generality"] is not None


def shape(value):
    """The keys and value types of a record, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


@pytest.mark.slow
def test_same_record_shape_as_hf(server, small_demo, untrained_tiny, tmp_path):
    """Both backends fill the same fields: an untrained tiny LLaVA (no training steps) for hf."""
    _, url = server(handler=generation_handler)
    model = untrained_tiny
    quick = GenerationSettings(num_samples=2, max_new_tokens=3, seed=1)
    hf = generate_predictions(str(model), small_demo, "val", tmp_path / "hf.json", quick, progress=False)
    oa = generate_predictions(
        "unlearned", small_demo, "val", tmp_path / "oa.json", quick, backend=backend(url), progress=False
    )
    assert shape(json.loads((tmp_path / "hf.json").read_text())) == shape(
        json.loads((tmp_path / "oa.json").read_text())
    )
    assert hf["generation"] == oa["generation"] and hf["prompts"] == oa["prompts"]
    assert (hf["backend"]["kind"], oa["backend"]["kind"]) == ("hf", "openai")


@pytest.mark.slow
def test_kill_9_mid_generation_resumes_to_identical_output(server, small_demo, tmp_path):
    endpoint, url = server(latency=0.05, handler=generation_handler)
    reference = tmp_path / "reference.json"
    generate_predictions("unlearned", small_demo, "val", reference, SETTINGS, backend=backend(url), progress=False)
    total = len(endpoint.requests)

    out = tmp_path / "pred_val.json"
    partial = out.with_name(out.name + ".partial.jsonl")
    args = [
        "generate",
        "--backend",
        "openai",
        "--model",
        "unlearned",
        "--base-url",
        url,
        "--data",
        str(small_demo),
        "--split",
        "val",
        "--out",
        str(out),
        "--num-samples",
        "3",
        "--max-new-tokens",
        "20",
        "--seed",
        "5",
        "--concurrency",
        "2",
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "safeeraser", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600  # a loaded machine can take minutes just to import torch
    while time.monotonic() < deadline and child.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 8:
            break
        time.sleep(0.02)
    assert child.poll() is None, child.stderr.read().decode()
    assert partial.exists(), "generate wrote no resume file within the deadline"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert not out.exists()
    kept = partial.read_text().count("\n") - 1
    assert 0 < kept < total

    before = len(endpoint.requests)
    meta = generate_predictions("unlearned", small_demo, "val", out, SETTINGS, backend=backend(url), progress=False)
    assert out.read_bytes() == reference.read_bytes()
    assert meta["resumed_prompts"] >= kept
    assert len(endpoint.requests) - before == total - meta["resumed_prompts"]
    assert not partial.exists()


def test_retries_transient_failures_and_gives_the_same_answers(server, small_demo, tmp_path):
    endpoint, url = server(handler=generation_handler)
    generate_predictions(
        "unlearned",
        small_demo,
        "val",
        tmp_path / "a.json",
        SETTINGS,
        backend=backend(url, concurrency=1),
        progress=False,
    )
    endpoint.faults += [("status", 503, {}), ("garbage",), ("status", 429, {"Retry-After": "0"})]
    meta = generate_predictions(
        "unlearned",
        small_demo,
        "val",
        tmp_path / "b.json",
        SETTINGS,
        backend=backend(url, concurrency=1),
        progress=False,
    )
    assert meta["n_retries"] == 3
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_a_resume_file_is_never_continued_by_the_other_backend(server, small_demo, tmp_path):
    endpoint, url = server(handler=generation_handler)
    endpoint.refuse_after = 6
    out = tmp_path / "pred_val.json"
    with pytest.raises(UserError, match="HTTP 400 .*image too large"):
        generate_predictions(
            "unlearned", small_demo, "val", out, SETTINGS, backend=backend(url, concurrency=1), progress=False
        )
    partial = out.with_name(out.name + ".partial.jsonl")
    assert partial.read_text().count("\n") == 1 + 6  # the header and the answers that came
    code, _, err = run_cli(
        "generate",
        "--model",
        "/nonexistent/model",
        "--data",
        small_demo,
        "--split",
        "val",
        "--out",
        out,
        "--num-samples",
        "3",
        "--max-new-tokens",
        "20",
        "--seed",
        "5",
    )
    assert code == 2 and "begun with --backend openai; one file never mixes backends" in err
    endpoint.refuse_after = None
    generate_predictions("unlearned", small_demo, "val", out, SETTINGS, backend=backend(url), progress=False)
    assert not partial.exists()


def test_a_server_that_ignores_n_is_an_error(server, small_demo, tmp_path):
    endpoint, url = server(handler=generation_handler)
    endpoint.ignore_n = True
    with pytest.raises(UserError, match="asked for n=3 answers, got 1"):
        generate_predictions(
            "unlearned", small_demo, "val", tmp_path / "p.json", SETTINGS, backend=backend(url), progress=False
        )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--backend", "vllm"], "unknown --backend 'vllm'"),
        (["--base-url", "http://127.0.0.1:1/v1"], "--base-url: not used by --backend hf"),
        (
            ["--backend", "openai", "--base-url", "http://127.0.0.1:1/v1", "--adapter", "runs/po"],
            "--adapter is not used by --backend openai",
        ),
        (["--backend", "openai", "--base-url", "localhost:8000"], "is not an http(s) URL"),
        (
            ["--backend", "openai", "--base-url", "http://127.0.0.1:1/v1", "--family", "llava-9"],
            "unknown model family 'llava-9'",
        ),
        (
            ["--backend", "openai", "--base-url", "http://127.0.0.1:1/v1", "--concurrency", "0"],
            "--concurrency must be at least 1",
        ),
    ],
)
def test_backend_flag_errors(small_demo, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code, _, err = run_cli(
        "generate", "--model", "m", "--data", small_demo, "--split", "val", "--out", tmp_path / "p.json", *args
    )
    assert code == 2 and message in err and "Traceback" not in err, err


def test_an_unreachable_server_stops_after_the_retries(small_demo, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="no answer from .* after 2 tries: connection failed"):
        generate_predictions(
            "m",
            small_demo,
            "val",
            tmp_path / "p.json",
            SETTINGS,
            backend=backend(f"http://127.0.0.1:{port}/v1", max_retries=1),
            progress=False,
        )
    assert not (tmp_path / "p.json.partial.jsonl").exists()


def test_general_split_and_greedy_single_answers(server, small_demo, tmp_path):
    """General VQA through the server; the fast protocol asks single answers greedily (temperature 0, no top-k)."""
    endpoint, url = server(handler=generation_handler)
    out = tmp_path / "pred_general.json"
    code, _, err = run_cli(
        "generate",
        "--backend",
        "openai",
        "--model",
        "unlearned",
        "--base-url",
        url,
        "--data",
        small_demo,
        "--split",
        "general",
        "--out",
        out,
        "--protocol",
        "fast",
    )
    assert code == 0, err
    rows = json.loads(out.read_text())
    items = json.loads((small_demo / "general_vqa.json").read_text())
    assert len(rows) == len(items) == len(endpoint.requests)
    assert all(
        r["prediction"].startswith("The picture shows") and r["question"] == i["question"] for r, i in zip(rows, items)
    )
    for request in endpoint.requests:
        body = request["body"]
        assert (body["n"], body["temperature"], body["max_tokens"]) == (1, 0.0, 128)
        assert "top_k" not in body and "top_p" not in body
        assert body["messages"][0]["role"] == "user"  # the fast protocol has no system sentence
    code, _, err = run_cli("evaluate", "--data", small_demo, "--pred-general", out, "--out", tmp_path / "metrics.json")
    assert code == 0, err
