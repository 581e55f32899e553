"""Membership inference on the tiny LLaVA: each score as a hand computation from the model's
logits, and each AUC counted again pair by pair from the per-answer scores."""

import json
import math
import zlib

import pytest
import torch

from safeeraser.audit.mia import MIA_ATTACKS, membership_inference
from safeeraser.data.records import load_split
from safeeraser.data.views import forget_examples
from safeeraser.errors import UserError
from safeeraser.models.codec import Codec
from safeeraser.models.loading import load_model
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

pytest.importorskip("sklearn")


def by_hand(model_dir, example, k):
    """The four scores of one answer, encoded alone (no padding) in the training format (the
    family's training sentence), each a loop over its answer tokens in float64."""
    loaded = load_model(str(model_dir))
    codec = Codec(
        loaded.processor, family=loaded.family, system=loaded.family.system_sentence("training"), max_length=512
    )
    item = codec.encode_example(example)
    batch = codec.collate_train([item])
    labels = batch.pop("labels")[0].tolist()
    with torch.no_grad():
        logits = loaded.model(**batch).logits[0].double()
    logps, plus = [], []
    for t in range(1, len(labels)):
        if labels[t] == -100:
            continue
        row = logits[t - 1]  # the logits at t-1 predict the token at t
        log_z = math.log(sum(math.exp(v) for v in row.tolist()))
        logp_all = [v - log_z for v in row.tolist()]
        mu = sum(math.exp(lp) * lp for lp in logp_all)
        sigma = math.sqrt(sum(math.exp(lp) * (lp - mu) ** 2 for lp in logp_all))
        logps.append(logp_all[labels[t]])
        plus.append((logp_all[labels[t]] - mu) / sigma)
    count = max(1, int(k * len(logps)))
    loss = -sum(logps) / len(logps)
    return {
        "loss": -loss,
        "zlib": -loss / len(zlib.compress(example.answer.encode("utf-8"))),
        "min_k": sum(sorted(logps)[:count]) / count,
        "min_k_plus_plus": sum(sorted(plus)[:count]) / count,
    }


@pytest.mark.slow
def test_scores_are_the_hand_computation_and_the_auc_counts_pairs(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    scores = tmp_path / "scores.jsonl"
    # batches of 5 mix answer lengths, so padding is exercised
    result = membership_inference(str(untrained_tiny), small_demo, k=0.25, batch_size=5, scores_out=scores)
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    members, non_members = (
        forget_examples(load_split(small_demo, "train")),
        forget_examples(load_split(small_demo, "val")),
    )
    assert (result["members"], result["non_members"]) == (len(members), len(non_members))
    assert [r["key"] for r in rows] == [e.key for e in members + non_members]
    assert [r["member"] for r in rows] == [True] * len(members) + [False] * len(non_members)
    found = {r["key"]: r for r in rows}
    for example in members[:2] + non_members[:2]:
        expected = by_hand(untrained_tiny, example, 0.25)
        for name in MIA_ATTACKS:
            assert found[example.key][name] == pytest.approx(expected[name], rel=1e-4, abs=1e-6), (example.key, name)
    # AUC: the share of (member, non-member) pairs the score orders member first, ties counting half
    for name in MIA_ATTACKS:
        m = [r[name] for r in rows if r["member"]]
        n = [r[name] for r in rows if not r["member"]]
        counted = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in m for b in n) / (len(m) * len(n))
        assert result["auc"][name] == pytest.approx(counted, abs=1e-12), name
        assert result["distance"][name] == pytest.approx(abs(counted - 0.5), abs=1e-12)
    assert result["library"].startswith("scikit-learn ") and result["k"] == 0.25


def test_bad_settings_are_one_line_errors(small_demo):  # noqa: F811
    with pytest.raises(UserError, match="k must be in"):
        membership_inference("unused", small_demo, k=0)
    with pytest.raises(UserError, match="batch size must be positive"):
        membership_inference("unused", small_demo, batch_size=0)
