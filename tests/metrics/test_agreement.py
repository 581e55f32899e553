"""`judges agree` on two real evaluations of one prediction file: the keyword judge against the LLM
judge over a real loopback server (the fake endpoint of tests/judge/test_openai_judge.py, whose
verdicts are known from the answer's words), with kappa computed by hand."""

from __future__ import annotations

import json

import pytest

from safeeraser.errors import UserError
from safeeraser.metrics.agreement import agree, cohen_kappa, kappa_with_ci
from tests.conftest import run_cli
from tests.judge.test_openai_judge import KEY, server  # noqa: F401  (server: the fixture)
from tests.metrics.test_metrics import HARM, LOOP, NORMAL, REFUSE, data, predictions  # noqa: F401  (data: the fixture)

# An answer without "Sure": the keyword judge calls it unsafe (an attempt), the fake LLM judge safe.
ATTEMPT = "Here is how to do it: first, [step one withheld]."
# A fluent answer that never says "picture shows": normal to the keyword judge, not to the fake LLM judge.
FLUENT = "Here are some general thoughts about that topic in plain terms."


def test_kappa_by_hand():
    # 10 items: A says yes to 5, B to 4; they agree on 7. p_o = 0.7, p_e = 0.5*0.4 + 0.5*0.6 = 0.5,
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = [True] * 5 + [False] * 5
    b = [True, True, True, False, False, False, False, False, False, True]
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)  # p_o 0, p_e 0.5
    assert cohen_kappa([True] * 4, [True] * 4) is None  # chance explains everything: undefined, not 1
    assert cohen_kappa([], []) is None


def test_the_bootstrap_interval_is_seeded_and_moves_questions_together():
    a = [True, True, False, False, True, False] * 5
    b = [True, False, False, False, True, True] * 5
    clusters = [str(i // 3) for i in range(len(a))]
    kappa, ci = kappa_with_ci(a, b, clusters, seed=0)
    assert kappa == pytest.approx(cohen_kappa(a, b))
    assert ci[0] <= kappa <= ci[1] and kappa_with_ci(a, b, clusters, seed=0) == (kappa, ci)
    assert kappa_with_ci(a, b, clusters, seed=1)[1] != ci
    assert kappa_with_ci([True] * 3, [True] * 3, ["q"] * 3) == (None, None)


def _evaluations(data, tmp_path, url):
    val = predictions(
        data,
        "val",
        harm=lambda i, j, k: {1: HARM, 2: ATTEMPT, 3: REFUSE}[k],
        sd=lambda i, j: {0: NORMAL, 1: FLUENT, 2: LOOP}[j],
    )
    records = json.loads(val.read_text())
    assert all(len(r["unsafe_pairs"]) == 3 for r in records)  # the counts below rely on it
    common = ["evaluate", "--data", data, "--pred-val", val]
    keyword, llm = tmp_path / "keyword" / "metrics.json", tmp_path / "llm" / "metrics.json"
    assert run_cli(*common, "--out", keyword)[0] == 0
    code, _, err = run_cli(
        *common, "--judge", "openai", "--judge-model", "judge-test", "--base-url", url, "--api-key", KEY, "--out", llm
    )
    assert code == 0, err
    return keyword, llm, len(records)


def test_agreement_of_the_keyword_and_an_llm_judge(server, data, tmp_path):
    _, url = server()
    keyword, llm, records = _evaluations(data, tmp_path, url)
    questions = 3 * records
    code, out, err = run_cli("judges", "agree", keyword, llm, "--out", tmp_path / "agree.md")
    assert code == 0, err
    result = json.loads((tmp_path / "agree.json").read_text())
    v = result["verdicts"]

    # unsafe: per question, sample 1 both yes, sample 2 keyword yes / LLM no, sample 3 both no:
    # p_o = 2/3, p_keyword = 2/3, p_llm = 1/3, p_e = 2/9 + 2/9 = 4/9, kappa = (2/3 - 4/9) / (5/9) = 0.4
    assert v["unsafe"]["n"] == 3 * questions
    assert v["unsafe"]["confusion"] == {
        "a_true_b_true": questions,
        "a_true_b_false": questions,
        "a_false_b_true": 0,
        "a_false_b_false": questions,
    }
    assert v["unsafe"]["agreement"] == pytest.approx(2 / 3) and v["unsafe"]["kappa"] == pytest.approx(0.4)
    # every question is alike, so every resample gives the same kappa
    assert v["unsafe"]["kappa_ci95"] == pytest.approx([0.4, 0.4])
    # refusal: both read the same "I'm sorry" opening: perfect agreement, kappa 1
    assert v["refusal"]["kappa"] == pytest.approx(1.0) and v["refusal"]["agreement"] == 1.0
    # normal: per record, question 0 both yes, 1 keyword yes / LLM no, 2 both no: kappa 0.4 again
    assert v["normal"]["n"] == questions and v["normal"]["kappa"] == pytest.approx(0.4)
    assert v["score"] == {"n": 0, "reason": "not given by both judges"}  # the keyword judge gives none

    assert "unsafe   n=" in out and "kappa 0.400" in out
    text = (tmp_path / "agree.md").read_text()
    assert result["disagreements"] == questions + records
    assert text.count("### unsafe: A says yes, B says no") == questions and text.count(f"> {ATTEMPT}") == questions
    assert text.count("### normal: A says yes, B says no") == records and FLUENT in text
    assert HARM not in text  # agreed answers are not listed


def test_evaluations_of_different_predictions_are_refused(server, data, tmp_path):
    _, url = server()
    keyword, _, _ = _evaluations(data, tmp_path, url)
    other = predictions(data, "val", harm=lambda i, j, k: REFUSE)
    assert (
        run_cli("evaluate", "--data", data, "--pred-val", other, "--out", tmp_path / "other" / "metrics.json")[0] == 0
    )
    with pytest.raises(UserError, match="another answer than in"):
        agree(keyword, tmp_path / "other" / "metrics.json", tmp_path / "x.md")
    code, _, err = run_cli("judges", "agree", keyword, tmp_path / "missing.json")
    assert code == 2 and "missing.json: file not found" in err
