"""Configuration layering and the method registry (no model needed)."""

import pytest
import torch

from safeeraser.errors import UserError
from safeeraser.unlearn import losses
from safeeraser.unlearn.config import parse_override, resolve_config
from safeeraser.unlearn.methods import METHOD_NAMES, canonical_name, get_method


def test_published_defaults():
    c = resolve_config()
    assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (32, 256, 0.05)
    assert (c.optim.lr, c.optim.weight_decay, c.optim.warmup_ratio, c.optim.schedule, c.optim.grad_clip) == (
        1e-4,
        0.01,
        0.06,
        "cosine",
        1.0,
    )
    assert c.epochs == 10 and c.batch_size * c.grad_accum == 32


def test_file_then_flags_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 0.002\nlora:\n  r: 4\n")
    c = resolve_config(f, [parse_override("lora.r=16"), {"max_steps": 7}])
    assert c.optim.lr == 0.002 and c.lora.r == 16 and c.max_steps == 7 and c.lora.alpha == 256


def test_demo_preset():
    c = resolve_config(preset="demo")
    assert c.lora.r == 8 and c.max_steps == 100 and c.optim.lr == 3e-3


@pytest.mark.parametrize(
    "text,message",
    [
        ("lora:\n  rank: 4\n", "'lora.rank': unknown setting"),
        ("optim:\n  lr: -1\n", "'optim.lr': input should be greater than 0"),
        ("- a\n- b\n", "expected a mapping"),
        ("optim: [\n", "invalid YAML at line"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        resolve_config(f)


def test_bad_override():
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_override("lora.r")


def test_methods_and_aliases():
    assert set(METHOD_NAMES) == {"ga", "gd", "kl", "po", "npo", "ga+pd", "gd+pd", "kl+pd", "po+pd", "npo+pd"}
    assert [canonical_name(a) for a in ("gapd", "gdpd", "klpd", "popd", "idk", "idkpd", "PO+PD", "npo_pd")] == [
        "ga+pd",
        "gd+pd",
        "kl+pd",
        "po+pd",
        "po",
        "po+pd",
        "po+pd",
        "npo+pd",
    ]
    with pytest.raises(UserError, match="unknown method 'satimp'"):
        canonical_name("satimp")


def test_pd_adds_the_decouple_view_and_published_lambdas():
    assert get_method("po", resolve_config().method).views == ("refusal", "retain")
    assert get_method("po+pd", resolve_config().method).views == ("refusal", "retain", "decouple")
    assert (
        get_method("ga+pd", resolve_config().method).pd_weight == 0.5
        and get_method("gd+pd", resolve_config().method).pd_weight == 0.5
    )
    assert (
        get_method("kl+pd", resolve_config().method).pd_weight == 1.0
        and get_method("po+pd", resolve_config().method).pd_weight == 1.0
    )
    settings = resolve_config(overrides=[{"method": {"pd_weight": 0.2}}]).method
    assert get_method("ga+pd", settings).pd_weight == 0.2


def test_answer_nll_ignores_masked_tokens():
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 7, 8, -100, -100]])
    got = losses.answer_nll(logits, labels)
    logp = torch.log_softmax(logits, -1)
    picks = [logp[0, 1, 3], logp[0, 2, 4], logp[0, 3, 5], logp[1, 0, 7], logp[1, 1, 8]]
    assert torch.allclose(got, -torch.stack(picks).mean())
    # changing a masked (prompt) position's logits changes nothing
    logits2 = logits.clone()
    logits2[0, 0] += 5.0
    assert torch.allclose(losses.answer_nll(logits2, labels), got)


def test_kl_is_zero_against_itself_and_positive_otherwise():
    logits = torch.randn(1, 4, 6)
    positions = losses.answer_positions(torch.tensor([[-100, 1, 2, 3]]))
    for direction in ("forward", "reverse"):
        assert losses.kl_to_reference(logits, logits, positions, direction).abs() < 1e-6
        assert losses.kl_to_reference(logits, logits.flip(-1), positions, direction) > 0


def test_npo_loss_matches_its_formula():
    logp, ref = torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -2.0])
    beta = 0.5
    expected = (2 / beta) * torch.nn.functional.softplus(beta * (logp - ref)).mean()
    assert torch.allclose(losses.npo_loss(logp, ref, beta), expected)
