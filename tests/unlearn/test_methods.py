"""The added methods' losses, pinned on fixed tiny batches to numbers worked out here by hand.

Logits come from ``TableLM`` (fixed tables: the current model and, adapter off, the original),
hidden states from ``HiddenLM`` (fixed per-layer tables). Each expected value is written out from
the tables with plain ``math``: none calls the loss code under test.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch

from safeeraser.errors import UserError
from safeeraser.unlearn.config import parse_override, resolve_config
from safeeraser.unlearn.methods import ALL_METHOD_NAMES, BASE_METHODS, METHOD_NAMES, Forward, get_method
from tests.unlearn.test_objective import REF, TABLE, TableLM, batch, logp

I = -100  # noqa: E741 - a masked label


def settings(**sections):
    return resolve_config(overrides=[{"method": sections}] if sections else None).method


def terms_of(name: str, batches: dict[str, dict], method_settings=None, model=None) -> dict[str, dict]:
    s = method_settings or settings()
    f = Forward(model if model is not None else TableLM(TABLE, REF))
    return {b: term(f, batches[b], s) for b, term in get_method(name, s).terms.items()}


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_simnpo_is_length_normalised_and_reference_free():
    # row 0: one answer token (1 at position 0); row 1: two (2 at 0, 4 at 1)
    forget = batch([[I, 1, I, I], [I, 2, 4, I]])
    mean_logp = [logp(TABLE, 0, 0, 1), (logp(TABLE, 1, 0, 2) + logp(TABLE, 1, 1, 4)) / 2]
    beta, gamma = 2.5, 0.0
    expected = -(2 / beta) * sum(log_sigmoid(-beta * m - gamma) for m in mean_logp) / 2
    got = terms_of("simnpo", {"forget": forget, "retain": batch([[I, 3, I, I]])})
    assert float(got["forget"]["loss"]) == pytest.approx(expected, rel=1e-6)
    # a margin and another beta through method.simnpo.*
    s = settings(simnpo={"beta": 1.5, "gamma": 0.7})
    expected = -(2 / 1.5) * sum(log_sigmoid(-1.5 * m - 0.7) for m in mean_logp) / 2
    assert float(terms_of("simnpo", {"forget": forget, "retain": forget}, s)["forget"]["loss"]) == pytest.approx(
        expected, rel=1e-6
    )
    # no reference pass: the same value whatever the original model is
    other = TableLM(TABLE, torch.zeros_like(REF))
    assert float(terms_of("simnpo", {"forget": forget, "retain": forget}, s, other)["forget"]["loss"]) == pytest.approx(
        expected, rel=1e-6
    )


def test_dpo_prefers_the_refusal_row_to_the_harmful_row_of_the_same_prompt():
    # a paired batch: row 0 the refusal (tokens 4, 0), row 1 the harmful answer (token 2)
    pair = batch([[I, 4, 0, I], [I, I, 2, I]])
    win = logp(TABLE, 0, 0, 4) + logp(TABLE, 0, 1, 0)
    win_ref = logp(REF, 0, 0, 4) + logp(REF, 0, 1, 0)
    lose, lose_ref = logp(TABLE, 1, 1, 2), logp(REF, 1, 1, 2)
    beta = 0.1
    expected = -(2 / beta) * log_sigmoid(beta * ((win - win_ref) - (lose - lose_ref)))
    for name in ("dpo", "idkdpo"):
        got = terms_of(name, {"refusal&forget": pair, "retain": batch([[I, 3, I, I]])})
        assert float(got["refusal&forget"]["loss"]) == pytest.approx(expected, rel=1e-6)
        assert float(got["refusal&forget"]["forget_nll"]) == pytest.approx(-lose, rel=1e-6)
    assert list(get_method("dpo", resolve_config().method).terms) == ["refusal&forget"]
    assert list(get_method("idkdpo", resolve_config().method).terms) == ["refusal&forget", "retain"]
    assert get_method("idkdpo+pd", resolve_config().method).views == ("refusal", "forget", "retain", "decouple")
    s = settings(dpo={"beta": 2.0})
    expected = -(2 / 2.0) * log_sigmoid(2.0 * ((win - win_ref) - (lose - lose_ref)))
    assert float(terms_of("dpo", {"refusal&forget": pair}, s)["refusal&forget"]["loss"]) == pytest.approx(
        expected, rel=1e-6
    )


def test_undial_distils_the_original_with_the_answer_token_lowered():
    forget = batch([[I, I, 3, 1]])  # answer tokens 3 (predicted at position 1) and 1 (at 2)
    strength = 10.0

    def ce(t: int, token: int) -> float:
        teacher = [float(REF[0, t, v]) - (strength if v == token else 0.0) for v in range(5)]
        z = sum(math.exp(x) for x in teacher)
        q = [math.exp(x) / z for x in teacher]
        return -sum(q[v] * logp(TABLE, 0, t, v) for v in range(5))

    expected = (ce(1, 3) + ce(2, 1)) / 2
    got = terms_of("undial", {"forget": forget})["forget"]
    assert float(got["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(got["forget_nll"]) == pytest.approx(-(logp(TABLE, 0, 1, 3) + logp(TABLE, 0, 2, 1)) / 2, rel=1e-6)


def test_wga_weights_each_token_by_its_probability():
    forget = batch([[I, 1, I, I], [I, 2, 4, I]])
    nll = [-logp(TABLE, 0, 0, 1), -logp(TABLE, 1, 0, 2), -logp(TABLE, 1, 1, 4)]
    for beta in (1.0, 0.5):
        expected = -sum(math.exp(-x) ** beta * x for x in nll) / 3
        got = terms_of("wga", {"forget": forget, "retain": forget}, settings(wga={"beta": beta}))
        assert float(got["forget"]["loss"]) == pytest.approx(expected, rel=1e-6)
    # beta 0 is plain gradient ascent
    got = terms_of("wga", {"forget": forget, "retain": forget}, settings(wga={"beta": 0.0}))
    assert float(got["forget"]["loss"]) == pytest.approx(-sum(nll) / 3, rel=1e-6)


class Layer(torch.nn.Module):
    """A decoder layer whose output is a fixed table (the original's when the owner is switched off)."""

    def __init__(self, owner, current: torch.Tensor, reference: torch.Tensor):
        super().__init__()
        self.owner = [owner]  # not a submodule
        self.current, self.reference = current, reference

    def forward(self, x):
        return (self.reference if self.owner[0].off else self.current)[: x.shape[0], : x.shape[1]]


class HiddenLM(torch.nn.Module):
    """Two decoder layers of fixed hidden states (B, T, D), a vision tower that must be skipped."""

    def __init__(self, hidden: list[torch.Tensor], reference: list[torch.Tensor]):
        super().__init__()
        self.off = False
        self.vision_tower = torch.nn.Module()
        self.vision_tower.layers = torch.nn.ModuleList([torch.nn.Identity()] * 3)
        self.language_model = torch.nn.Module()
        self.language_model.layers = torch.nn.ModuleList(Layer(self, h, r) for h, r in zip(hidden, reference))

    def forward(self, input_ids, attention_mask=None, **_):
        x = input_ids
        for layer in self.language_model.layers:
            x = layer(x)
        return SimpleNamespace(logits=x)

    @contextlib.contextmanager
    def disable_adapter(self):
        self.off = True
        try:
            yield
        finally:
            self.off = False


def test_rmu_steers_the_chosen_layer_to_c_u_on_forget_and_holds_it_on_retain():
    torch.manual_seed(1)
    hidden = [torch.randn(1, 4, 3) for _ in range(2)]
    reference = [torch.randn(1, 4, 3) for _ in range(2)]
    model = HiddenLM(hidden, reference)
    forget = batch([[I, I, 2, 3]])  # answer tokens at positions 2 and 3
    retain = batch([[I, 1, I, I]])  # one answer token at position 1
    c, alpha, seed, layer = 4.0, 100.0, 3, 1
    u = torch.rand(3, generator=torch.Generator().manual_seed(seed))
    u = [float(x) / math.sqrt(sum(float(y) ** 2 for y in u)) for x in u]
    h = hidden[layer][0]
    forget_expected = sum((float(h[t, d]) - c * u[d]) ** 2 for t in (2, 3) for d in range(3)) / 6
    retain_mse = sum((float(h[1, d]) - float(reference[layer][0, 1, d])) ** 2 for d in range(3)) / 3
    s = settings(rmu={"layer": layer, "steering": c, "alpha": alpha, "control_seed": seed})
    got = terms_of("rmu", {"forget": forget, "retain": retain}, s, model)
    assert float(got["forget"]["loss"]) == pytest.approx(forget_expected, rel=1e-6)
    assert float(got["retain"]["loss"]) == pytest.approx(alpha * retain_mse, rel=1e-6)
    assert float(got["retain"]["rmu_retain"]) == pytest.approx(retain_mse, rel=1e-6)
    # under +pd the retain term keeps its weight (pd_retain_weight is 1 for RMU) and the decouple term joins
    assert list(get_method("rmu+pd", s).terms) == ["forget", "retain", "decouple"]
    # the family's default layer is used when method.rmu.layer is null; one past the stack is a one-line error
    f = Forward(model, family=SimpleNamespace(rmu_layer=0))
    default = get_method("rmu", settings(rmu={"steering": c, "control_seed": seed})).terms["forget"](
        f, forget, settings(rmu={"steering": c, "control_seed": seed})
    )
    h0 = hidden[0][0]
    assert float(default["loss"]) == pytest.approx(
        sum((float(h0[t, d]) - c * u[d]) ** 2 for t in (2, 3) for d in range(3)) / 6, rel=1e-6
    )
    with pytest.raises(UserError, match="decoder layers 0-1"):
        terms_of("rmu", {"forget": forget, "retain": retain}, settings(rmu={"layer": 2}), model)


def test_every_method_declares_its_batches_logs_settings_and_paper():
    defaults = settings()
    for name, method in BASE_METHODS.items():
        assert tuple(method.build(defaults, 1.0)) == method.batches, name
        assert method.paper and method.logs, name
        if method.settings is not None:
            for key, field in method.settings.model_fields.items():
                assert field.description, f"{name}.{key}"
                assert getattr(getattr(defaults, name), key) == field.default
    added = {
        f"{m}{pd}" for m in ("simnpo", "dpo", "idkdpo", "rmu", "undial", "wga", "mmunlearner") for pd in ("", "+pd")
    }
    assert set(ALL_METHOD_NAMES) == set(METHOD_NAMES) | added | {"po+sineproject", "po+pd+sineproject"}
    # every method composes with PD: the decouple term added at the method's lambda
    for name in ALL_METHOD_NAMES:
        if "+pd" in name:
            objective = get_method(name, defaults)
            base = name.removesuffix("+sineproject").removesuffix("+pd")
            assert list(objective.terms)[-1] == "decouple" and objective.pd_weight == BASE_METHODS[base].pd_weight


def test_method_settings_by_section_and_by_the_earlier_flat_keys(tmp_path):
    s = resolve_config(
        overrides=[parse_override("method.simnpo.gamma=0.5"), parse_override("method.rmu.layer=3")]
    ).method
    assert s.simnpo.gamma == 0.5 and s.simnpo.beta == 2.5 and s.rmu.layer == 3
    # the flat keys of earlier releases set the same settings, and the later layer wins either way
    s = resolve_config(
        overrides=[parse_override("method.npo_beta=0.3"), parse_override("method.kl_direction=reverse")]
    ).method
    assert (s.npo.beta, s.npo_beta, s.kl.direction, s.kl_direction) == (0.3, 0.3, "reverse", "reverse")
    s = resolve_config(overrides=[parse_override("method.npo_beta=0.3"), parse_override("method.npo.beta=0.4")]).method
    assert s.npo.beta == 0.4
    # an earlier run's config.yaml (flat keys, no sections) still loads, with the same values
    old = tmp_path / "config.yaml"
    old.write_text(
        "method:\n  pd_weight: null\n  pd_retain_weight: null\n  npo_beta: 0.2\n  forget_nll_bound: null\n"
        "  kl_direction: forward\n  kl_positions: answer\n  po_batch: separate\n"
    )
    s = resolve_config(old).method
    assert (s.npo.beta, s.kl.positions, s.po.batch, s.simnpo.beta) == (0.2, "answer", "separate", 2.5)
    with pytest.raises(UserError, match="'method.simnpo.delta': unknown setting"):
        resolve_config(overrides=[parse_override("method.simnpo.delta=1")])
    with pytest.raises(UserError, match="'method.npo.beta': input should be greater than 0"):
        resolve_config(overrides=[parse_override("method.npo_beta=-1")])


def test_the_methods_page_names_every_method_its_paper_and_every_setting_default():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text(encoding="utf-8")
    section = page.split("## All methods: papers and settings", 1)[1].split("\n#", 1)[0]
    rows = {
        line.split("|")[1].strip().split()[0].strip("`"): line
        for line in section.splitlines()
        if line.startswith("| `")
    }
    for name, method in BASE_METHODS.items():
        assert name in rows, name
        assert method.paper.split(",")[0] in rows[name], name  # authors and year
        for key, field in method.settings.model_fields.items() if method.settings else ():
            default = "null" if field.default is None else str(field.default)
            assert f"`{name}.{key}`" in rows[name], (name, key)
            assert default in rows[name].split(f"`{name}.{key}`")[1].split(";")[0], (name, key, default)
