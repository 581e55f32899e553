"""SineProject and MMUnlearner: each loss term, the saliency mask and the sine reparameterisation
pinned on fixed tiny inputs to numbers worked out here by hand; names, settings and sweeps.

The end-to-end runs on two families' tiny copies are in test_successors_training.py (slow).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from safeeraser.errors import UserError
from safeeraser.models import sine_projector
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.methods import ALL_METHOD_NAMES, canonical_name, get_method
from safeeraser.unlearn.methods.mmunlearner import GradientMask, fisher, saliency_mask
from tests.unlearn.test_methods import settings, terms_of
from tests.unlearn.test_objective import TABLE, batch, logp

I = -100  # noqa: E741 - a masked label


# --- MMUnlearner -----------------------------------------------------------------------------


def test_mmunlearner_terms_are_ascent_on_forget_and_descent_on_retain():
    forget, retain, decouple = batch([[I, 1, I, I]]), batch([[I, 3, 2, I]]), batch([[I, I, 4, I]])
    forget_nll = -logp(TABLE, 0, 0, 1)
    retain_nll = -(logp(TABLE, 0, 0, 3) + logp(TABLE, 0, 1, 2)) / 2
    decouple_nll = -logp(TABLE, 0, 1, 4)
    got = terms_of("mmunlearner", {"forget": forget, "retain": retain})
    assert float(got["forget"]["loss"]) == pytest.approx(-forget_nll, rel=1e-6)
    assert float(got["forget"]["forget_nll"]) == pytest.approx(forget_nll, rel=1e-6)
    assert float(got["retain"]["loss"]) == pytest.approx(retain_nll, rel=1e-6)
    # forget_weight scales the ascent term; +PD: GD's released weights, 0.5 retain and 0.5 decouple
    s = settings(mmunlearner={"forget_weight": 2.5})
    got = terms_of("mmunlearner+pd", {"forget": forget, "retain": retain, "decouple": decouple}, s)
    assert float(got["forget"]["loss"]) == pytest.approx(-2.5 * forget_nll, rel=1e-6)
    assert float(got["retain"]["loss"]) == pytest.approx(0.5 * retain_nll, rel=1e-6)
    assert float(got["decouple"]["loss"]) == pytest.approx(0.5 * decouple_nll, rel=1e-6)
    assert (
        get_method("mmunlearner+pd", resolve_config().method).prepare
        is get_method("mmunlearner", resolve_config().method).prepare
        is not None
    )


def test_fisher_is_the_mean_squared_gradient_over_batches():
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0]))
    v = nn.Parameter(torch.tensor(3.0))
    # loss(x) = (w . x) * v: d/dw = v x, d/dv = w . x
    batches = [torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 1.0])]
    got = fisher([("w", w), ("v", v)], batches, lambda x: (w * x).sum() * v)
    # batch 1: dw = 3*(1,0,2) = (3,0,6), dv = 1 - 2 = -1; batch 2: dw = (0,3,3), dv = 2 - 1 = 1
    assert torch.allclose(got["w"], torch.tensor([(9 + 0) / 2, (0 + 9) / 2, (36 + 9) / 2]))
    assert torch.allclose(got["v"], torch.tensor((1.0 + 1.0) / 2))
    assert w.grad is None and v.grad is None  # the estimate leaves the weights' .grad alone


def test_saliency_mask_keeps_weights_whose_forget_fisher_outweighs_retain():
    forget = {"a": torch.tensor([4.0, 1.0, 0.0, 0.0]), "b": torch.tensor([[0.3]])}
    retain = {"a": torch.tensor([2.0, 1.0, 1.0, 0.0]), "b": torch.tensor([[0.6]])}
    # ratios: 2, 1, ~1e-15, (0 + eps) / (0 + eps) = 1; b: 0.5
    one = saliency_mask(forget, retain, 1.0)
    assert one["a"].tolist() == [1.0, 1.0, 0.0, 1.0] and one["b"].tolist() == [[0.0]]
    strict = saliency_mask(forget, retain, 1.5)
    assert strict["a"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert saliency_mask(forget, retain, 0.4)["b"].tolist() == [[1.0]]


def test_the_gradient_mask_restricts_only_the_forget_terms_gradient():
    p = nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    mask = GradientMask({"p": p}, {"p": torch.tensor([1.0, 0.0, 1.0])}, ("forget",))
    assert mask.kept == pytest.approx(2 / 3)
    with mask.during("retain"):
        (p * torch.tensor([3.0, 4.0, 5.0])).sum().backward()
    assert p.grad.tolist() == [3.0, 4.0, 5.0]
    with mask.during("forget"):  # added to the retain gradient, masked
        (p * torch.tensor([-1.0, -2.0, -3.0])).sum().backward()
    assert p.grad.tolist() == [2.0, 4.0, 2.0]
    with mask.during("decouple"):  # the hooks are gone once the forget term's pass is over
        (p * torch.tensor([1.0, 1.0, 1.0])).sum().backward()
    assert p.grad.tolist() == [3.0, 5.0, 3.0]


# --- SineProject -----------------------------------------------------------------------------


def test_sine_delta_by_hand_and_bounded():
    a = torch.tensor([[0.5, 0.0, 1.0, 0.0]])  # rank 1, in_features 4
    b = torch.tensor([[1.0], [2.0]])  # out_features 2
    # omega * B A = (pi/2) [[0.5, 0, 1, 0], [1, 0, 2, 0]]; sin of it over sqrt(4) = 2
    expected = torch.tensor([[math.sin(math.pi / 4), 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]) / 2
    assert torch.allclose(sine_projector.sine_delta(a, b, math.pi / 2), expected, atol=1e-6)
    # whatever A and B become, every entry stays within 1/sqrt(in_features)
    g = torch.Generator().manual_seed(0)
    big_a, big_b = 100 * torch.randn(8, 16, generator=g), 100 * torch.randn(5, 8, generator=g)
    assert sine_projector.sine_delta(big_a, big_b, 100.0).abs().max() <= 1 / 4 + 1e-6


class TwoPart(nn.Module):
    """A language-model layer and a two-layer projector, named as a family names them."""

    def __init__(self):
        super().__init__()
        self.language_model = nn.Module()
        self.language_model.q_proj = nn.Linear(4, 4)
        self.multi_modal_projector = nn.Sequential(nn.Linear(4, 2), nn.GELU(), nn.Linear(2, 3))

    def forward(self, x):
        return self.multi_modal_projector(x), self.language_model.q_proj(x)


def sine_model(frequency=math.pi / 2):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = TwoPart()
    names = sine_projector.projector_linears(model, "multi_modal_projector")
    assert names == ["multi_modal_projector.0", "multi_modal_projector.2"]
    sine_projector.mark(model, names)
    config = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules=sine_projector.targets(r".*language_model.*\.q_proj", names),
        rank_pattern={n: 1 for n in names},
    )
    sine_projector.register(config, frequency)
    return get_peft_model(model, config), names


def test_the_projector_layers_become_sine_layers_and_the_language_model_keeps_lora():
    from peft.tuners.lora.layer import Linear as LoraLinear

    peft_model, names = sine_model()
    base = peft_model.base_model.model
    assert sine_projector.projector_linears(base, "multi_modal_projector") == names  # the same names once wrapped
    first = base.multi_modal_projector[0]
    assert isinstance(first, sine_projector.SineLinear) and first.lora_A["default"].weight.shape == (1, 4)
    assert type(base.language_model.q_proj) is LoraLinear and base.language_model.q_proj.lora_A[
        "default"
    ].weight.shape == (2, 4)
    assert not any(
        p.requires_grad for n, p in peft_model.named_parameters() if "base_layer" in n
    )  # the projector frozen
    # B starts at zero: the projector is the original one
    x = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    with peft_model.disable_adapter():
        original = peft_model(x)[0]
    assert torch.equal(peft_model(x)[0], original)


def test_the_sine_layer_computes_w0_plus_the_sine_update_and_merges_into_plain_weights():
    peft_model, _ = sine_model()
    layer = peft_model.base_model.model.multi_modal_projector[0]
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.tensor([[0.5, 0.0, 1.0, 0.0]]))
        layer.lora_B["default"].weight.copy_(torch.tensor([[1.0], [2.0]]))
    delta = torch.tensor([[math.sin(math.pi / 4), 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]) / 2
    w0, bias = layer.base_layer.weight.detach().clone(), layer.base_layer.bias.detach().clone()
    x = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    layer.eval()
    assert torch.allclose(layer(x), x @ (w0 + delta).T + bias, atol=1e-6)
    merged = peft_model.merge_and_unload()
    assert isinstance(merged.multi_modal_projector[0], nn.Linear)
    assert torch.allclose(merged.multi_modal_projector[0].weight, w0 + delta, atol=1e-6)
    assert set(merged.state_dict()) == set(TwoPart().state_dict())  # plain weights, as the model names them


def test_a_projector_the_model_lacks_is_a_one_line_error():
    with pytest.raises(UserError, match="no projector module 'visual.merger'"):
        sine_projector.projector_linears(TwoPart(), "visual.merger")


# --- names, settings, sweeps -----------------------------------------------------------------


def test_names_compose_with_pd_in_any_order():
    assert canonical_name("sineproject") == "po+pd+sineproject"  # the paper's headline
    assert canonical_name("PO_PD_SineProject") == "po+pd+sineproject"
    assert canonical_name("idkpd+sineproject") == "po+pd+sineproject"
    assert canonical_name("gd+sineproject+pd") == "gd+pd+sineproject"
    assert canonical_name("mmunlearner+pd+sineproject") == "mmunlearner+pd+sineproject"
    for bad in ("sineproject+sineproject", "xyz+sineproject", "po+sineproject+kl"):
        with pytest.raises(UserError, match="unknown method"):
            canonical_name(bad)
    objective = get_method("gd+pd+sineproject", resolve_config().method)
    assert (
        objective.projector == "sine"
        and list(objective.terms) == ["forget", "retain", "decouple"]
        and objective.pd_weight == 0.5
    )
    assert get_method("po+pd", resolve_config().method).projector is None
    # both listed (tables, the demo's other methods), each with and without PD
    assert {"mmunlearner", "mmunlearner+pd", "po+sineproject", "po+pd+sineproject"} <= set(ALL_METHOD_NAMES)


def test_their_settings_are_typed_with_the_papers_defaults():
    method = resolve_config().method
    assert (
        method.mmunlearner.threshold == 1.0
        and method.mmunlearner.forget_weight == 1.0
        and method.mmunlearner.saliency_batches is None
    )
    assert method.sineproject.rank is None and method.sineproject.frequency == 100.0
    from safeeraser.unlearn.config import parse_override

    assert (
        resolve_config(overrides=[parse_override("method.sineproject.frequency=30")]).method.sineproject.frequency
        == 30.0
    )
    with pytest.raises(UserError, match="'method.mmunlearner.threshold'"):
        resolve_config(overrides=[parse_override("method.mmunlearner.threshold=-1")])
    with pytest.raises(UserError, match="'method.sineproject.rnak'"):
        resolve_config(overrides=[parse_override("method.sineproject.rnak=4")])


def test_a_study_sweeps_their_settings(tmp_path: Path):
    from safeeraser.study.spec import parse_study

    data = {
        "data": str(tmp_path),
        "model": str(tmp_path),
        "methods": ["mmunlearner+pd", "sineproject"],
        "seeds": [0],
        "grid": {"method.mmunlearner.threshold": [1.0, 2.0], "method.sineproject.frequency": [50.0, 200.0]},
    }
    study = parse_study(data, "study.yaml", tmp_path)
    assert len(study.runs) == 8
    cells = {
        (r.method, r.config["method"]["mmunlearner"]["threshold"], r.config["method"]["sineproject"]["frequency"])
        for r in study.runs
    }
    assert cells == {
        (m, t, f) for m in ("mmunlearner+pd", "po+pd+sineproject") for t in (1.0, 2.0) for f in (50.0, 200.0)
    }
