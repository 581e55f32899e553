"""`safeeraser evaluate --judge openai` against an endpoint that fails a fixed share of requests.

A quarter of the prompts fail their first try (HTTP 429 with Retry-After, HTTP 500, an answer
that comes after the timeout, or a body that is not JSON); which ones is fixed by a hash of the
prompt, so the share does not depend on the order in which concurrent requests arrive. Prompts
about responses marked OUTAGE always get HTTP 503: those items never succeed.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from tests.conftest import run_cli
from tests.judge.test_openai_judge import KEY, REFUSAL, _handler, _vanilla_predictions, endpoint_flags

FAULTS = (("status", 429, {"Retry-After": "1.5"}), ("status", 500, {}), ("sleep", 4.0), ("garbage",))
OUTAGE = "[judge outage]"


def _digest(body: dict) -> bytes:
    return hashlib.sha256(body["messages"][1]["content"].encode()).digest()


def planned_fault(body: dict) -> tuple | None:
    """The fault a prompt's first try gets (None for three prompts in four)."""
    digest = _digest(body)
    return FAULTS[digest[1] % len(FAULTS)] if digest[0] % 4 == 0 else None


def outage_handler(endpoint):
    tries: Counter = Counter()

    class Handler(_handler(endpoint)):
        def serve(self, body, fault):
            with endpoint.lock:
                first = tries[_digest(body)] == 0
                tries[_digest(body)] += 1
            if OUTAGE in body["messages"][1]["content"]:
                fault = ("status", 503, {"Retry-After": "0.05"})
            elif first:
                fault = planned_fault(body)
            super().serve(body, fault)

    return Handler


def _predictions(data, out):
    """Val predictions with refusals mixed in (so that no rate is 0 or 1) and a few OUTAGE items."""
    _vanilla_predictions(data, out)
    records = json.loads(out.read_text())
    for i, record in enumerate(records):
        for j, pair in enumerate(record["unsafe_pairs"]):
            if (i + j) % 2:
                pair["model_response2"] = REFUSAL
            if (i + j) % 3 == 0:
                pair["sd_response"] = REFUSAL
    records[0]["unsafe_pairs"][0]["model_response1"] = f"{REFUSAL} {OUTAGE}"  # would count as a refusal
    records[1]["unsafe_pairs"][1]["model_response3"] += f" {OUTAGE}"  # would count as unsafe
    records[2]["unsafe_pairs"][0]["sd_response"] += f" {OUTAGE}"  # would count as normal
    records[3]["UnharmPair_text1"]["Prediction"] += f" {OUTAGE}"  # would get a score
    out.write_text(json.dumps(records))
    return out


def _evaluate(data, pred, url, out, *extra):
    code, _, err = run_cli(
        "evaluate",
        "--data",
        data,
        "--pred-val",
        pred,
        "--judge",
        "openai",
        *endpoint_flags(url),
        "--concurrency",
        "16",
        "--out",
        out,
        *extra,
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.with_name("metrics.judgments.jsonl").read_text().splitlines()]
    return json.loads(out.read_text()), [r for r in rows if r["metric"] != "rouge_l"], err


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


@pytest.mark.slow  # two full evaluations, one through timeouts and Retry-After waits
def test_judging_completes_through_an_outage_and_never_counts_a_failure(server, demo_data, tmp_path):
    pred = _predictions(demo_data, tmp_path / "pred_val.json")
    _, url = server()
    clean, clean_rows, _ = _evaluate(demo_data, pred, url, tmp_path / "clean" / "metrics.json")
    assert clean["n_failed"] == 0

    endpoint, url = server(handler=outage_handler)
    metrics, rows, err = _evaluate(
        demo_data, pred, url, tmp_path / "outage" / "metrics.json", "--judge-timeout", "1", "--judge-retries", "4"
    )

    # Every kind of fault happened, and every prompt that met one was asked again.
    bodies: dict[bytes, list[dict]] = {}
    for request in endpoint.requests:
        bodies.setdefault(_digest(request["body"]), []).append(request)
    faulted = [
        asked
        for asked in bodies.values()
        if planned_fault(asked[0]["body"]) and OUTAGE not in asked[0]["body"]["messages"][1]["content"]
    ]
    assert {planned_fault(asked[0]["body"])[0:2] for asked in faulted} == {f[0:2] for f in FAULTS}
    assert all(len(asked) >= 2 for asked in faulted)
    rate_limited = [asked for asked in faulted if planned_fault(asked[0]["body"]) == FAULTS[0]]
    assert rate_limited and all(
        asked[1]["time"] - asked[0]["time"] >= 1.45 for asked in rate_limited
    )  # Retry-After: 1.5

    # The failed items are exactly the OUTAGE ones, reported and kept out of every rate.
    failed = [r for r in rows if "error" in r]
    assert len(failed) == 4 and all(OUTAGE in r["answer"] for r in failed)
    assert not [r for r in failed if {"unsafe", "refusal", "normal", "score"} & r.keys()]
    assert (metrics["n_failed"], metrics["n_judged"], metrics["n_cached"]) == (4, clean["n_judged"] - 4, 0)
    assert f"judged {metrics['n_judged']}, failed 4, cached 0" in err
    # every request is counted (a dropped connection may never reach the server's log), and each
    # beyond a prompt's first is a retry
    prompts = len({json.dumps(r["body"]["messages"], sort_keys=True) for r in endpoint.requests})
    assert metrics["n_requests"] >= len(endpoint.requests) and f"{metrics['n_requests']} requests sent" in err
    assert metrics["n_retries"] == metrics["n_requests"] - prompts > 0
    assert [r for r in rows if "error" not in r] == [r for r in clean_rows if OUTAGE not in r["answer"]]
    for metric, failures in (("asr_generality", 2), ("rr_generality", 2), ("sarr", 1), ("judge_score", 1)):
        counts = metrics["counts"][metric]
        assert (counts["n"], counts["failed"], counts.get("empty", 0)) == (
            clean["counts"][metric]["n"] - failures,
            failures,
            0,
        )
    kept = [r for r in clean_rows if OUTAGE not in r["answer"]]
    expected = {
        "asr_generality": _mean(r["unsafe"] for r in kept if r["metric"] == "generality"),
        "rr_generality": _mean(r["refusal"] for r in kept if r["metric"] == "generality"),
        "sarr": _mean(not r["normal"] for r in kept if r["metric"] == "sarr"),
        "judge_score": _mean(r["score"] for r in kept if r["metric"] == "consistency"),
    }
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert 0 < expected["rr_generality"] < 1 and 0 < expected["sarr"] < 1
    assert metrics["rouge_l"] == clean["rouge_l"]
