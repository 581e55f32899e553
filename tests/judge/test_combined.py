"""Declared capabilities and judges combined per verdict, through ``evaluate`` on real files and a
real loopback Chat Completions server (the fake endpoint of ``test_openai_judge``)."""

from __future__ import annotations

import json

import pytest

from safeeraser.errors import UserError
from safeeraser.judge import JudgeItem, make_judges
from safeeraser.judge.base import VERDICTS, judge_for, produces
from safeeraser.judge.combined import CombinedJudge
from safeeraser.judge.keyword import KeywordJudge
from safeeraser.report.table import measured_alike, result_row
from tests.conftest import run_cli
from tests.judge.test_openai_judge import KEY, REFUSAL, UNSAFE, _vanilla_predictions, endpoint_flags, judge, server  # noqa: F401  (server: the fixture)

JUDGED_METRICS = ("asr_generality", "rr_generality", "sarr", "judge_score")


def _evaluate(demo_data, tmp_path, name, *extra):
    pred = _vanilla_predictions(demo_data, tmp_path / "pred_val.json")
    out = tmp_path / name / "metrics.json"
    code, _, err = run_cli("evaluate", "--data", demo_data, "--pred-val", pred, *extra, "--out", out)
    assert code == 0, err
    return json.loads(out.read_text()), [
        json.loads(line) for line in out.with_name("metrics.judgments.jsonl").read_text().splitlines()
    ]


def _tasks(endpoint) -> list[str]:
    return [r["body"]["messages"][-1]["content"].splitlines()[0] for r in endpoint.requests]


def test_each_judge_declares_its_verdicts_and_whether_it_sees_images(server):
    _, url = server()
    assert produces(KeywordJudge()) == ("unsafe", "refusal", "normal") and KeywordJudge.reads_images is False
    assert produces(judge(url)) == VERDICTS and judge(url).reads_images is False


def test_the_keyword_judge_gives_no_score_so_the_judge_score_is_null_with_its_reason(demo_data, tmp_path):
    metrics, rows = _evaluate(demo_data, tmp_path, "kw")
    assert metrics["judge_score"] is None and "judge_score" not in metrics["ci95"]
    assert metrics["not_measured"] == {"judge_score": "the keyword judge gives no 'score' verdict"}
    assert metrics["judge_by_verdict"]["score"] is None
    assert metrics["judge_by_verdict"]["unsafe"] == {**KeywordJudge().identity(), "reads_images": False}
    assert {r["metric"] for r in rows} == {"generality", "sarr", "rouge_l"}  # no consistency item was asked
    # every judged row says which judge gave its verdicts
    assert all(
        r["judge"] == metrics["judge_identity"] == KeywordJudge().identity() for r in rows if r["metric"] != "rouge_l"
    )
    # its limits are stated beside the numbers they qualify
    limits = metrics["judge_limits"]["keyword"]
    assert any("any attempt to answer a harmful prompt counts as unsafe" in line for line in limits)
    assert any("English refusal phrases only" in line for line in limits)


def test_a_verdict_no_judge_gives_is_null_not_zero_or_hundred(demo_data, tmp_path):
    metrics, rows = _evaluate(demo_data, tmp_path, "rr-only", "--judge", "refusal=keyword")
    # The vanilla answers never refuse: RR is a measured 0, ASR and SARR are not measured at all.
    assert metrics["rr_generality"] == 0.0 and metrics["counts"]["rr_generality"]["n"] > 0
    for key in ("asr_generality", "sarr", "judge_score"):
        assert metrics[key] is None and key in metrics["not_measured"], key
        assert metrics["counts"][key]["n"] == 0 and metrics["counts"][key]["failed"] == 0
    assert metrics["not_measured"]["sarr"] == "--judge refusal=keyword names no judge for the 'normal' verdict"
    assert all(
        v is None
        for k in metrics["by_category"]
        for v in (metrics["by_category"][k]["asr_generality"], metrics["by_category"][k]["sarr"])
    )
    assert metrics["judge"] == "refusal=keyword"
    assert [v for v, j in metrics["judge_by_verdict"].items() if j] == ["refusal"]
    assert {r["metric"] for r in rows} == {"generality", "rouge_l"}  # the harmless-image answers were not judged
    assert all("unsafe" not in r and r["refusal"] is False for r in rows if r["metric"] == "generality")


def test_combined_judges_ask_each_only_its_verdicts_and_record_each(server, demo_data, tmp_path):
    endpoint, url = server()
    metrics, rows = _evaluate(
        demo_data,
        tmp_path,
        "combined",
        "--judge",
        "normal=openai, unsafe=openai,refusal=keyword",
        *endpoint_flags(url),
    )
    tasks = _tasks(endpoint)
    assert tasks and not [t for t in tasks if t in ("Task: refusal check", "Task: consistency score")]
    assert {t.split(" (")[0] for t in tasks} == {"Task: unsafe-content check", "Task: normal-answer check"}
    assert (metrics["asr_generality"], metrics["rr_generality"], metrics["sarr"]) == (1.0, 0.0, 0.0)
    assert metrics["judge_score"] is None and "judge_score" in metrics["not_measured"]
    assert metrics["judge"] == "unsafe=openai,refusal=keyword,normal=openai"
    by = metrics["judge_by_verdict"]
    assert by["unsafe"]["kind"] == by["normal"]["kind"] == "openai" and by["unsafe"]["model"] == "judge-test"
    assert by["refusal"]["kind"] == "keyword" and by["score"] is None
    assert metrics["judge_identity"] == {
        "kind": "combined",
        "by_verdict": {
            v: {k: x for k, x in by[v].items() if k != "reads_images"} for v in ("unsafe", "refusal", "normal")
        },
    }
    assert set(metrics["judge_limits"]) == {"openai", "keyword"}
    # every judged answer carries both judges' fields
    harm = [r for r in rows if r["metric"] == "generality"]
    assert harm and all(r["unsafe"] is True and r["refusal"] is False for r in harm)
    # each row names the judge behind each of its verdicts: two on a harm row, one on a harmless-image row
    keyword_id, openai_id = by["refusal"], {k: x for k, x in by["unsafe"].items() if k != "reads_images"}
    assert all(
        r["judge"]
        == {
            "kind": "combined",
            "by_verdict": {
                "unsafe": openai_id,
                "refusal": {k: x for k, x in keyword_id.items() if k != "reads_images"},
            },
        }
        for r in harm
    )
    sarr = [r for r in rows if r["metric"] == "sarr"]
    assert sarr and all(
        r["judge"] == openai_id and r["judge"]["model"] == "judge-test" and r["judge"]["decoding"]["temperature"] == 0
        for r in sarr
    )

    # A report refuses to put it beside the keyword judge's numbers.
    keyword, _ = _evaluate(demo_data, tmp_path, "kw")
    problems = measured_alike([result_row("x", "a", "a", metrics), result_row("x", "b", "b", keyword)])
    assert any(p.startswith("judges differ") for p in problems)


def test_a_combination_keeps_what_each_judge_answered(server):
    endpoint, url = server()
    endpoint.faults = [("status", 400, {})]  # the LLM's one question fails; the keyword's verdict stands
    combined = make_judges(
        "unsafe=openai,refusal=keyword",
        {"openai": {"model": "judge-test", "base_url": url, "api_key": KEY, "max_retries": 0}},
    )
    assert isinstance(combined, CombinedJudge)
    (verdict,) = combined.judge([JudgeItem("harm", "How?", REFUSAL, "Weapon")])
    assert verdict.ok and verdict.refusal is True and verdict.unsafe is None and "HTTP 400" in verdict.errors["unsafe"]
    (verdict,) = combined.judge([JudgeItem("harm", "How?", UNSAFE, "Weapon")])
    assert (verdict.unsafe, verdict.refusal, verdict.errors) == (True, False, {})
    assert judge_for(combined, "unsafe").name == "openai" and judge_for(combined, "normal") is None


def test_one_judge_for_all_its_verdicts_is_that_judge():
    assert isinstance(make_judges("unsafe=keyword,refusal=keyword,normal=keyword"), KeywordJudge)
    assert isinstance(make_judges("keyword"), KeywordJudge)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("score=keyword", "the keyword judge gives no 'score' verdict"),
        ("harm=keyword", "unknown verdict 'harm'"),
        ("unsafe=gpt4", "unknown judge 'gpt4'"),
        ("unsafe=keyword,unsafe=keyword", "verdict 'unsafe' is given twice"),
        ("unsafe=keyword,refusal", "'refusal' is not VERDICT=JUDGE"),
    ],
)
def test_a_bad_combination_is_one_line(demo_data, tmp_path, spec, message):
    code, _, err = run_cli(
        "evaluate",
        "--data",
        demo_data,
        "--pred-val",
        tmp_path / "none.json",
        "--judge",
        spec,
        "--out",
        tmp_path / "m.json",
    )
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "m.json").exists()


def test_options_of_a_judge_not_in_the_combination_are_refused(demo_data, tmp_path):
    code, _, err = run_cli(
        "evaluate",
        "--data",
        demo_data,
        "--pred-val",
        tmp_path / "none.json",
        "--judge",
        "unsafe=keyword",
        "--cache",
        tmp_path / "c.sqlite",
        "--out",
        tmp_path / "m.json",
    )
    assert code == 2 and "--cache: not used by --judge unsafe=keyword" in err
    code, _, err = run_cli(
        "evaluate",
        "--data",
        demo_data,
        "--pred-val",
        tmp_path / "none.json",
        "--judge",
        "unsafe=openai,normal=hf",
        "--out",
        tmp_path / "m.json",
    )
    assert code == 2 and "--judge-model would name the model of hf and openai: give each its own" in err


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ("unsafe=llamaguard:A,refusal=wildguard", [], "--judge wildguard needs --judge-model"),
        ("unsafe=llamaguard:A,refusal=keyword:B", [], "the keyword judge takes no model ('keyword:B')"),
        ("unsafe=llamaguard:,refusal=keyword", [], "'llamaguard:' names no model after the colon"),
        ("unsafe=llamaguard:A,refusal=wildguard:B", ["--judge-model", "C"], "--judge-model: not used by --judge"),
        (
            "unsafe=llamaguard:A,normal=openai",
            ["--judge-protocol", "strict", "--api-key", "k", "--base-url", "http://127.0.0.1:1/v1"],
            "model not found: A",
        ),
    ],
)
def test_each_model_judge_may_name_its_own_model(demo_data, tmp_path, spec, extra, message):
    code, _, err = run_cli(
        "evaluate",
        "--data",
        demo_data,
        "--pred-val",
        tmp_path / "none.json",
        "--judge",
        spec,
        *extra,
        "--out",
        tmp_path / "m.json",
    )
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_per_verdict_models_reach_their_judges():
    combined = make_judges(
        "unsafe=openai:model-a,normal=openai:model-b,refusal=keyword",
        {"openai": {"model": "ignored", "base_url": "http://127.0.0.1:1/v1", "api_key": KEY}},
    )
    assert judge_for(combined, "unsafe").model == "model-a" and judge_for(combined, "normal").model == "model-b"
    assert judge_for(combined, "unsafe").verdicts == ("unsafe",) and judge_for(combined, "normal").verdicts == (
        "normal",
    )
    assert combined.name == "unsafe=openai:model-a,refusal=keyword,normal=openai:model-b"
    assert (
        make_judges("openai:ft:gpt-4o:org", {"openai": {"api_key": KEY}}).model == "ft:gpt-4o:org"
    )  # a model name may hold colons


def test_a_judge_named_for_a_verdict_it_does_not_give_is_refused():
    with pytest.raises(UserError, match="gives no 'score' verdict"):
        CombinedJudge({"score": KeywordJudge()})


def test_a_report_names_each_verdicts_judge_when_it_refuses_a_mix(server, demo_data, tmp_path):
    _, url = server()
    combined, _ = _evaluate(
        demo_data,
        tmp_path,
        "combined",
        "--judge",
        "unsafe=openai,refusal=keyword",
        *endpoint_flags(url),
    )
    keyword, _ = _evaluate(demo_data, tmp_path, "kw")
    (problem,) = measured_alike([result_row("x", "a", "a", combined), result_row("x", "b", "b", keyword)])
    assert (
        f"unsafe=openai/judge-test/published/{combined['judge_by_verdict']['unsafe']['prompt_hash']},refusal=keyword/keyword-rules/"
        in problem
    )
