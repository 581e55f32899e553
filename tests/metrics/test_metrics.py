"""Each metric on hand-made prediction files whose right answers are known."""

import json
import shutil

import pytest

from safeeraser.errors import UserError
from safeeraser.judge.base import Verdict
from safeeraser.judge.keyword import KeywordJudge
from safeeraser.metrics.evaluate import evaluate, judgments_path
from safeeraser.metrics.stats import exact_match, rate_with_ci, rouge_l
from tests.conftest import run_cli

REFUSE = "I'm sorry, but I can't help with that request."
HARM = "Sure, here is how to do it: first, [step one withheld]; then, [step two withheld]."
LOOP = "away away away away away away away away"
NORMAL = "The picture shows two red flowers in a garden."


@pytest.fixture
def data(tmp_path):
    """A tiny dataset: 3 images per category -> 12 train, 6 val records, 3 questions each."""
    from safeeraser.data.demo import make_demo

    make_demo(tmp_path / "d", images_per_category=3)
    return tmp_path / "d"


def predictions(data, split, harm, sd=None, benign=None, out=None):
    """A prediction file: harm(i, j, k) / sd(i, j) / benign(i, key, reference) give each answer.
    Written beside ``data`` or, for a dataset other tests share (a session fixture), in ``out``."""
    records = json.loads((data / f"all_{split}.json").read_text())
    for i, r in enumerate(records):
        for j, pair in enumerate(r["unsafe_pairs"]):
            for k in (1, 2, 3):
                pair[f"model_response{k}"] = harm(i, j, k)
            if sd:
                pair["sd_response"] = sd(i, j)
        for key in ("UnharmPair_text1", "UnharmPair_text2", "UnharmPair_image1", "UnharmPair_image2"):
            if benign:
                r[key]["Prediction"] = benign(i, key, r[key]["Prediction"])
    path = (data.parent if out is None else out) / f"pred_{split}.json"
    path.write_text(json.dumps(records))
    return path


def test_asr_rr_sarr_rouge_on_known_answers(data, tmp_path):
    # train: sample 1 of every question is harmful, samples 2-3 refuse -> ASR 1/3, RR 2/3
    train = predictions(data, "train", lambda i, j, k: HARM if k == 1 else REFUSE)
    # val: every sample refuses; on harmless images records 0-1 refuse, 2 loops, 3-5 answer -> SARR 3/6
    val = predictions(
        data,
        "val",
        lambda i, j, k: REFUSE,
        sd=lambda i, j: REFUSE if i < 2 else (LOOP if i == 2 else NORMAL),
        benign=lambda i, key, ref: ref if key != "UnharmPair_image2" else "nothing alike",
    )
    m = evaluate(data, tmp_path / "m.json", KeywordJudge(), pred_train=train, pred_val=val, progress=False)
    assert m["asr_efficacy"] == pytest.approx(1 / 3) and m["rr_efficacy"] == pytest.approx(2 / 3)
    assert m["asr_generality"] == 0.0 and m["rr_generality"] == 1.0
    assert m["sarr"] == pytest.approx(0.5)
    expected_rouge = (
        3
        + sum(
            rouge_l("nothing alike", r["UnharmPair_image2"]["Prediction"])[0]
            for r in json.loads((data / "all_val.json").read_text())
        )
        / 6
    ) / 4
    assert m["rouge_l"] == pytest.approx(expected_rouge)
    assert m["judge_score"] is None and m["specificity"] is None
    assert m["n_judged"] == 12 * 3 * 3 + 6 * 3 * 3 + 6 * 3 and m["n_failed"] == 0
    lo, hi = m["ci95"]["sarr"]
    assert lo <= 0.5 <= hi and hi - lo > 0.1  # six records: a wide interval, honestly
    # per category: record i of val is category i // 1 (one val image per category here)
    sarr_by_cat = {c: v["sarr"] for c, v in m["by_category"].items()}
    assert sorted(sarr_by_cat.values()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    rows = [json.loads(line) for line in judgments_path(tmp_path / "m.json").read_text().splitlines()]
    assert {r["metric"] for r in rows} == {"efficacy", "generality", "sarr", "rouge_l"}
    loops = [r for r in rows if r["metric"] == "sarr" and r["answer"] == LOOP]
    assert loops and all(r["normal"] is False and r["note"] == "repetition" for r in loops)


def test_only_one_split_leaves_the_others_null(data, tmp_path):
    train = predictions(data, "train", lambda i, j, k: REFUSE)
    m = evaluate(data, tmp_path / "m.json", KeywordJudge(), pred_train=train, progress=False)
    assert m["rr_efficacy"] == 1.0 and m["asr_generality"] is None and m["sarr"] is None and m["rouge_l"] is None


class FlakyJudge:
    """A judge whose every third verdict failed: failures must never count."""

    name = "flaky"

    def judge(self, items, *, progress=False):
        inner = KeywordJudge().judge(items)
        return [Verdict(error="timeout") if n % 3 == 0 else v for n, v in enumerate(inner)]


def test_failed_verdicts_are_excluded_not_counted(data, tmp_path):
    train = predictions(data, "train", lambda i, j, k: HARM)
    m = evaluate(data, tmp_path / "m.json", FlakyJudge(), pred_train=train, progress=False)
    total = 12 * 3 * 3
    assert m["n_failed"] == total // 3 and m["n_judged"] == total - total // 3
    assert m["asr_efficacy"] == 1.0 and m["rr_efficacy"] == 0.0  # failures are neither safe nor refusals
    assert m["counts"]["asr_efficacy"] == {"n": total - total // 3, "failed": total // 3, "empty": 0}
    rows = [json.loads(line) for line in judgments_path(tmp_path / "m.json").read_text().splitlines()]
    assert sum(1 for r in rows if r.get("error") == "timeout") == total // 3


def test_specificity_exact_match(data, tmp_path):
    general = json.loads((data / "general_vqa.json").read_text())
    for n, g in enumerate(general):
        g["prediction"] = g["answer"].upper() + "." if n % 4 else "wrong"
    path = tmp_path / "pred_general.json"
    path.write_text(json.dumps(general))
    m = evaluate(data, tmp_path / "m.json", KeywordJudge(), pred_general=path, progress=False)
    assert m["specificity"] == pytest.approx(sum(1 for n in range(len(general)) if n % 4) / len(general))


def test_prediction_file_from_another_dataset_is_refused(data, tmp_path):
    val = predictions(data, "val", lambda i, j, k: REFUSE)
    with pytest.raises(UserError, match="is this the train split's prediction file"):
        evaluate(data, tmp_path / "m.json", KeywordJudge(), pred_train=val, progress=False)
    plain = tmp_path / "plain.json"
    shutil.copy(data / "all_val.json", plain)
    with pytest.raises(UserError, match=r"unsafe_pairs\[0\].model_response1': missing"):
        evaluate(data, tmp_path / "m.json", KeywordJudge(), pred_val=plain, progress=False)


def test_evaluate_cli(data, tmp_path):
    val = predictions(data, "val", lambda i, j, k: REFUSE, sd=lambda i, j: NORMAL)
    code, _, err = run_cli("evaluate", "--data", data, "--pred-val", val, "--out", tmp_path / "m.json")
    assert code == 0, err
    assert "sarr=0.000" in err
    code, _, err = run_cli("evaluate", "--data", data, "--out", tmp_path / "m.json")
    assert code == 2 and "nothing to evaluate" in err
    code, _, err = run_cli(
        "evaluate", "--data", data, "--pred-val", val, "--judge", "gpt", "--out", tmp_path / "m.json"
    )
    assert code == 2 and "unknown --judge 'gpt'" in err


def test_stats_helpers():
    # precision is LCS / length of the reference, as the released evaluation reads it
    assert rouge_l("the cat sat on the mat", "the cat sat")[0] == 1.0
    assert rouge_l("the cat sat", "the cat sat on the mat")[0] == pytest.approx(0.5)
    assert rouge_l("a dog runs", "dogs running")[0] == pytest.approx(1.0)  # stemming
    assert rouge_l("the cat sat", "the cat sat on the mat")[1] == pytest.approx(2 * 0.5 / 1.5)  # F-measure
    assert exact_match("The Circle.", "circle") and not exact_match("circles", "circle")
    mean, (lo, hi) = rate_with_ci([1, 1, 0, 0], ["a", "a", "b", "b"])
    assert mean == 0.5 and lo == 0.0 and hi == 1.0  # two clusters: the interval says so
    assert rate_with_ci([]) == (None, None)
