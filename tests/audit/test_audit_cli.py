"""`safeeraser audit` end to end on a tiny LLaVA: baseline reuse, attacks, resume, not run, report."""

import json
import sys

import pytest

from safeeraser.audit.attacks import ONE_WORDS
from safeeraser.generate.predictions import generate_predictions, protocol_settings
from safeeraser.io import read_json
from safeeraser.metrics.evaluate import evaluate
from safeeraser.study.run import make_judge
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)
from tests.unlearn.test_training import config

pytestmark = pytest.mark.slow

# the run's own protocol: the audit must read it from the predictions' .meta.json
RUN_PROTOCOL = protocol_settings("fast", num_samples=2, max_new_tokens=4, batch_size=32)


@pytest.fixture(scope="module")
def run(untrained_tiny, small_demo, tmp_path_factory):  # noqa: F811
    """A finished run: a one-step GA adapter, its predictions on the three splits and its metrics."""
    folder = tmp_path_factory.mktemp("audited") / "ga"
    unlearn(str(untrained_tiny), small_demo, "ga", folder, config(max_steps=1), progress=False)
    for split in ("train", "val", "general"):
        generate_predictions(
            str(untrained_tiny),
            small_demo,
            split,
            folder / f"predictions_{split}.json",
            RUN_PROTOCOL,
            adapter=folder,
            progress=False,
        )
    evaluate(
        small_demo,
        folder / "metrics.json",
        make_judge("keyword", None),
        **{f"pred_{s}": folder / f"predictions_{s}.json" for s in ("train", "val", "general")},
        progress=False,
    )
    return folder


def audit(model, data, adapter, out, *extra):
    return run_cli("audit", "--model", model, "--data", data, "--adapter", adapter, "--out", out, *extra)


def test_audit_reuses_the_run_measures_each_attack_and_resumes_attack_by_attack(
    run, untrained_tiny, small_demo, tmp_path
):  # noqa: F811
    out = tmp_path / "audit"
    code, stdout, err = audit(untrained_tiny, small_demo, run, out, "--attacks", "quant4,one-word,text-only")
    assert code == 0, err
    record = read_json(out / "audit.json")
    assert (
        record["protocol"]["label"] == RUN_PROTOCOL.label() and record["protocol"]["num_samples"] == 2
    )  # the run's protocol, from its .meta.json
    assert record["baseline"]["predictions"] == "reused from the run folder: train, val, general"
    run_metrics = read_json(run / "metrics.json")
    assert all(
        record["baseline"]["metrics"][k] == run_metrics[k]
        for k in ("asr_efficacy", "asr_generality", "sarr", "rouge_l", "specificity")
    )

    quant = record["results"]["quant4"]
    assert quant["status"] == "done" and quant["library"].startswith("bitsandbytes ") and "NF4" in quant["scheme"]
    assert quant["metrics"]["rouge_l"] is not None  # the quantized model answers the benign questions too
    assert (
        read_json(out / "quant4" / "predictions_val.meta.json")["backend"]["transform"]["library"] == quant["library"]
    )
    n_harmful = sum(len(r["unsafe_pairs"]) for r in json.loads((small_demo / "all_train.json").read_text()))
    for attack in ("quant4", "one-word", "text-only"):
        result = record["results"][attack]
        assert result["status"] == "done" and result["seconds"] > 0
        assert result["counts"]["asr_efficacy"] == n_harmful * RUN_PROTOCOL.num_samples
        metrics = read_json(out / attack / "metrics.json")
        for key, change in result["delta"].items():
            assert change == pytest.approx(metrics[key] - record["baseline"]["metrics"][key])
    assert record["results"]["one-word"]["metrics"]["rouge_l"] is None  # no benign prompts under an input attack
    # the one-word attack's answers were asked its questions
    asked = [p["question"] for r in read_json(out / "one-word" / "predictions_train.json") for p in r["unsafe_pairs"]]
    assert all(any(q.startswith(f"{w}, ") for w in ONE_WORDS) for q in asked)
    md = (out / "audit.md").read_text()
    assert all(f"| {a} |" in md for a in ("quant4", "one-word", "text-only")) and "| quant4 |" in stdout

    # rerun: finished attacks are kept as they are; one whose last files are gone resumes from what is left
    kept = (out / "quant4" / "result.json").stat().st_mtime_ns
    for name in ("result.json", "metrics.json", "predictions_val.json", "predictions_val.meta.json"):
        (out / "text-only" / name).unlink()
    train_answers = (out / "text-only" / "predictions_train.json").stat().st_mtime_ns
    code, _, err = audit(untrained_tiny, small_demo, run, out, "--attacks", "quant4,one-word,text-only")
    assert code == 0, err
    again = read_json(out / "audit.json")
    assert (out / "quant4" / "result.json").stat().st_mtime_ns == kept
    assert (out / "text-only" / "predictions_train.json").stat().st_mtime_ns == train_answers
    assert (
        again["results"]["text-only"]["metrics"] == record["results"]["text-only"]["metrics"]
    )  # seeded: the same answers again


def test_an_attack_that_cannot_run_is_not_run_with_its_reason_never_zeros(
    run, untrained_tiny, small_demo, tmp_path, monkeypatch
):  # noqa: F811
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    out = tmp_path / "audit"
    code, _, err = audit(untrained_tiny, small_demo, run, out, "--attacks", "quant8,prefix")
    assert code == 0, err
    record = read_json(out / "audit.json")
    assert record["results"]["quant8"] == {"status": "not run", "reason": record["results"]["quant8"]["reason"]}
    assert (
        "bitsandbytes" in record["results"]["quant8"]["reason"]
        and "pip install" in record["results"]["quant8"]["reason"]
    )
    assert not (out / "quant8" / "result.json").exists()  # tried again next time
    assert record["results"]["prefix"]["status"] == "done"
    assert "| quant8 | — | — | — | — | — | not run: bitsandbytes" in (out / "audit.md").read_text()


def test_report_adds_the_robustness_section(run, untrained_tiny, small_demo, tmp_path):  # noqa: F811
    out = tmp_path / "audit"
    assert audit(untrained_tiny, small_demo, run, out, "--attacks", "image-swap")[0] == 0
    code, _, err = run_cli("report", run, out, "--out", tmp_path / "report")
    assert code == 0, err
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>Robustness</h2>" in page and "image-swap" in page
    assert "| image-swap |" in (tmp_path / "report" / "robustness.md").read_text()
    code, _, err = run_cli("report", out, "--out", tmp_path / "report2")
    assert code != 0 and err.startswith("error: only audit folders given")


def test_bad_input_is_one_line(run, untrained_tiny, small_demo, tmp_path):  # noqa: F811
    code, _, err = audit(untrained_tiny, small_demo, run, tmp_path / "a", "--attacks", "quant4,typo")
    assert code != 0 and err.strip().splitlines() == [err.strip()] and "unknown --attacks typo" in err
    code, _, err = audit(untrained_tiny, small_demo, tmp_path / "nowhere", tmp_path / "a")
    assert code != 0 and err.startswith("error: adapter not found")
    # another protocol: the run's predictions are not reused, and a rerun with other settings is refused
    out = tmp_path / "b"
    code, _, err = audit(untrained_tiny, small_demo, run, out, "--attacks", "prefix", "--max-new-tokens", "3")
    assert code == 0, err
    assert read_json(out / "audit.json")["baseline"]["predictions"] == "generated"
    code, _, err = audit(untrained_tiny, small_demo, run, out, "--attacks", "prefix", "--seed", "1")
    assert code != 0 and "an audit with other settings (generation:" in err and len(err.strip().splitlines()) == 1
