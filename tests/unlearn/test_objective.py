"""Each released training term, pinned to a value computed by hand on a fixed tiny batch.

The model here is a table of fixed logits (a real ``nn.Module`` whose output ignores its input),
so every expected number is a few log-softmax sums written out below. Its ``disable_adapter``
switches to a second table: the "original" model that KL and NPO compare against.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch

from safeeraser.unlearn import losses
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.methods import Forward, get_method
from safeeraser.unlearn.methods.base import batch_views

I = -100  # noqa: E741 - a masked label, as the codec writes it


class TableLM(torch.nn.Module):
    """Logits from a fixed table (B, T, V); ``disable_adapter`` swaps in the reference table."""

    def __init__(self, current: torch.Tensor, reference: torch.Tensor | None = None):
        super().__init__()
        self.current = current
        self.reference = reference if reference is not None else current
        self.off = False

    def forward(self, input_ids, attention_mask=None, **_):
        table = self.reference if self.off else self.current
        return SimpleNamespace(logits=table[: input_ids.shape[0], : input_ids.shape[1]])

    @contextlib.contextmanager
    def disable_adapter(self):
        self.off = True
        try:
            yield
        finally:
            self.off = False


def logp(table: torch.Tensor, b: int, t: int, token: int) -> float:
    return float(torch.log_softmax(table[b, t], -1)[token])


def batch(labels: list[list[int]], mask: list[list[int]] | None = None) -> dict:
    labels_t = torch.tensor(labels)
    mask_t = torch.tensor(mask) if mask is not None else torch.ones_like(labels_t)
    return {"input_ids": torch.zeros_like(labels_t), "attention_mask": mask_t, "labels": labels_t}


def settings(**method):
    return resolve_config(overrides=[{"method": method}] if method else None).method


torch.manual_seed(0)
TABLE = torch.randn(2, 4, 5)
REF = torch.randn(2, 4, 5)


def run_terms(name: str, batches: dict[str, dict], method_settings=None) -> dict[str, dict]:
    objective = get_method(name, method_settings or settings())
    f = Forward(TableLM(TABLE, REF))
    return {b: term(f, batches[b], method_settings or settings()) for b, term in objective.terms.items()}


def test_gd_pd_weights_retain_and_decouple_by_half_as_released():
    # one answer token each: forget predicts 1 at position 0, retain 2 at 1, decouple 3 at 2
    batches = {"forget": batch([[I, 1, I, I]]), "retain": batch([[I, I, 2, I]]), "decouple": batch([[I, I, I, 3]])}
    nll = {"forget": -logp(TABLE, 0, 0, 1), "retain": -logp(TABLE, 0, 1, 2), "decouple": -logp(TABLE, 0, 2, 3)}
    got = run_terms("gd+pd", batches)
    assert float(got["forget"]["loss"]) == pytest.approx(-nll["forget"], rel=1e-6)
    assert float(got["retain"]["loss"]) == pytest.approx(0.5 * nll["retain"], rel=1e-6)
    assert float(got["decouple"]["loss"]) == pytest.approx(0.5 * nll["decouple"], rel=1e-6)
    # without PD the retain term keeps weight 1; the old behaviour is a setting away
    assert float(run_terms("gd", batches)["retain"]["loss"]) == pytest.approx(nll["retain"], rel=1e-6)
    old = run_terms("gd+pd", batches, settings(pd_retain_weight=1.0))
    assert float(old["retain"]["loss"]) == pytest.approx(nll["retain"], rel=1e-6)


def test_po_is_one_token_mean_over_the_joined_refusal_and_retain_batch():
    objective = get_method("po+pd", resolve_config().method)
    assert list(objective.terms) == ["refusal+retain", "decouple"] and batch_views("refusal+retain") == (
        "refusal",
        "retain",
    )
    # row 0: a refusal with 1 answer token; row 1: a retain example with 3
    joined = batch([[I, 4, I, I], [I, 0, 1, 2]])
    tokens = [-logp(TABLE, 0, 0, 4), -logp(TABLE, 1, 0, 0), -logp(TABLE, 1, 1, 1), -logp(TABLE, 1, 2, 2)]
    got = run_terms("po", {"refusal+retain": joined})["refusal+retain"]
    assert float(got["loss"]) == pytest.approx(sum(tokens) / 4, rel=1e-6)
    # `separate` is the sum of the two means: the refusal's single token weighs three times more
    separate = run_terms(
        "po", {"refusal": batch([[I, 4, I, I]]), "retain": batch([[I, 0, 1, 2]])}, settings(po_batch="separate")
    )
    total = sum(float(t["loss"]) for t in separate.values())
    retain_alone = [-logp(TABLE, 0, t, t) for t in range(3)]  # a one-row batch reads the table's row 0
    assert total == pytest.approx(tokens[0] + sum(retain_alone) / 3, rel=1e-6)
    assert get_method("po+pd", resolve_config().method).pd_weight == 1.0


def _kl(p_from: torch.Tensor, p_to: torch.Tensor) -> float:
    """KL(p_from || p_to) of two logit vectors, written out."""
    a, b = torch.log_softmax(p_from, -1), torch.log_softmax(p_to, -1)
    return float(sum(math.exp(a[v]) * (a[v] - b[v]) for v in range(len(a))))


def test_kl_is_original_to_current_over_every_unpadded_position_as_released():
    # one retain example of 3 real positions (the 4th is padding), answer token at position 2 only
    retain = batch([[I, I, 3, I]], mask=[[1, 1, 1, 0]])
    forget = batch([[I, 1, I, I]])
    got = run_terms("kl", {"forget": forget, "retain": retain})["retain"]
    expected = sum(_kl(REF[0, t], TABLE[0, t]) for t in range(3)) / 3  # KL(original || current), positions 0-2
    assert float(got["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(got["retain_kl"]) == pytest.approx(expected, rel=1e-5)
    # reverse direction, answer positions: KL(current || original) at position 1 (it predicts token 3)
    old = run_terms(
        "kl", {"forget": forget, "retain": retain}, settings(kl_direction="reverse", kl_positions="answer")
    )["retain"]
    assert float(old["loss"]) == pytest.approx(_kl(TABLE[0, 1], REF[0, 1]), rel=1e-5)
    # the two readings differ on this batch, so the test tells them apart
    assert abs(expected - _kl(TABLE[0, 1], REF[0, 1])) > 1e-3


def test_released_defaults_in_the_config():
    c = resolve_config()
    assert c.lora.train_projector is True and c.method.forget_nll_bound is None and c.system_prompt is True
    assert (c.method.kl_direction, c.method.kl_positions, c.method.po_batch) == ("forward", "sequence", "joined")
    assert (c.lora.r, c.lora.alpha, c.optim.lr, c.epochs, c.batch_size * c.grad_accum) == (32, 256, 1e-4, 10, 32)


def test_kl_primitive_by_hand():
    cur = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    ref = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    both = torch.tensor([[True, True]])
    assert float(losses.kl_to_reference(cur, ref, both, "forward")) == pytest.approx(
        (_kl(ref[0, 0], cur[0, 0]) + _kl(ref[0, 1], cur[0, 1])) / 2, rel=1e-6
    )
    assert float(losses.kl_to_reference(cur, ref, both, "reverse")) == pytest.approx(
        (_kl(cur[0, 0], ref[0, 0]) + _kl(cur[0, 1], ref[0, 1])) / 2, rel=1e-6
    )
    assert losses.answer_positions(torch.tensor([[I, I, 5, 6]])).tolist() == [[False, True, True, False]]
