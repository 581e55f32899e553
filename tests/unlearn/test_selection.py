"""Checkpoint selection: rules read, the kept step recounted from log.jsonl, early stop."""

import json

import pytest
import torch

from safeeraser.errors import UserError
from safeeraser.unlearn.selection import parse_rule, select, stale_probes
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.unlearn.test_training import config


def row(step, sarr, asr, nll=1.0):
    return {
        "step": step,
        "loss": -nll,
        "forget_nll": nll,
        "eval": {"forget_rr": 1 - asr, "forget_asr": asr, "sarr": sarr},
    }


ROWS = [
    row(1, 0.0, 0.9),
    {"step": 2, "loss": 0.0, "forget_nll": 1.0},
    row(3, 0.1, 0.04),
    row(5, 0.05, 0.05),
    row(7, 0.05, 0.0),
    row(9, 0.5, 0.0),
]


def test_min_subject_to_keeps_the_earliest_best_step_that_meets_the_conditions():
    rule = parse_rule("min sarr subject to forget_asr<=0.05", ("forget_nll",))
    kept = select(rule, ROWS)
    # steps 3, 5, 7 and 9 meet the condition; 5 and 7 share the lowest SARR: the earlier is kept
    assert kept["step"] == 5 and kept["met"] and kept["value"] == 0.05 and kept["probed_steps"] == [1, 3, 5, 7, 9]
    assert "step 5 has the lowest sarr (0.05) of the 5 probed steps that meet forget_asr<=0.05" in kept["why"]
    assert stale_probes(rule, ROWS) == 2  # probes 7 and 9 came after it without beating it


def test_weighted_sums_max_and_no_step_meeting_the_conditions():
    assert select(parse_rule("min sarr + 2*forget_asr", ()), ROWS)["step"] == 7  # 0.05 + 0
    assert select(parse_rule("max forget_rr subject to sarr>=0.1", ()), ROWS)["step"] == 9
    none = select(parse_rule("min sarr subject to sarr<=-1", ()), ROWS)
    assert not none["met"] and none["step"] == 9 and "no probed step met" in none["why"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("lowest sarr", "expected 'min|max QUANTITY"),
        ("min rouge_l", "unknown quantity rouge_l; this run has"),
        ("min sarr subject to forget_asr<0.05", "cannot read the condition"),
        ("min sarr subject to forget_asr<=x", "cannot read the condition"),
        ("min 2*sarr + *forget_asr", "cannot read"),
    ],
)
def test_bad_rules_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_rule(text, ("forget_nll",))


def test_select_needs_the_probe(tmp_path):
    code, _, err = run_cli(
        "unlearn",
        "--model",
        tmp_path / "m",
        "--data",
        tmp_path / "d",
        "--method",
        "ga",
        "--out",
        tmp_path / "r",
        "--select",
        "min sarr",
        "--set",
        "eval_every=0",
    )
    assert code != 0 and "Traceback" not in err and "set eval_every" in err
    code, _, err = run_cli(
        "unlearn",
        "--model",
        tmp_path / "m",
        "--data",
        tmp_path / "d",
        "--method",
        "ga",
        "--out",
        tmp_path / "r",
        "--early-stop",
        "2",
        "--set",
        "eval_every=5",
    )
    assert code != 0 and "needs a selection rule" in err


def test_the_kept_step_is_the_one_a_recount_of_the_log_picks(tiny_model, demo_data, tmp_path):
    rule = "min forget_nll subject to forget_asr<=1"
    cfg = config(max_steps=12, eval_every=2, eval_samples=4, select=rule, early_stop=2)
    result = unlearn(str(tiny_model), demo_data, "ga", tmp_path / "run", cfg, merge=True, progress=False)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    probed = [r for r in rows if "eval" in r]
    # the recount, by hand: the lowest logged forget NLL among probed steps, the earliest of equals
    best = min(probed, key=lambda r: (r["forget_nll"], r["step"]))
    selection = json.loads((run / "selection.json").read_text())
    summary = json.loads((run / "run.json").read_text())
    assert selection["step"] == best["step"] == summary["selected"]["step"]
    assert selection["rule"] == rule and str(best["step"]) in selection["why"]
    # early stop: training ended 2 probes after the kept step, or ran to the end first
    after = [r["step"] for r in probed if r["step"] > best["step"]]
    if result.stopped:
        assert len(after) == 2 and result.steps == after[-1] and "early stop" in result.stopped
    else:
        assert result.steps == 12 and len(after) < 2
    # adapter/ is the kept step's adapter; the last step's is in adapter-last/ when they differ
    from safetensors.torch import load_file

    kept = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    if best["step"] != result.steps:
        last = load_file(str(run / "adapter-last" / "adapter_model.safetensors"))
        assert any(not torch.equal(kept[k], last[k]) for k in kept)
    assert not (run / "kept").exists()
    # --merge merges the kept step's adapter, not the last step's weights
    from transformers import LlavaForConditionalGeneration

    from safeeraser.data.records import load_split
    from safeeraser.data.views import view_examples
    from safeeraser.models.codec import Codec
    from safeeraser.models.loading import attach_adapter, load_model
    from safeeraser.unlearn.methods import Forward

    merged = LlavaForConditionalGeneration.from_pretrained(run / "merged").eval()
    adapted = attach_adapter(load_model(str(tiny_model)), run)
    codec = Codec(adapted.processor)
    batch = codec.collate_train(
        [codec.encode_example(e) for e in view_examples(load_split(demo_data, "train"), "forget")[:2]]
    )
    with torch.no_grad():
        assert torch.allclose(Forward(merged).logits(batch), Forward(adapted.model).logits(batch), atol=1e-4)
