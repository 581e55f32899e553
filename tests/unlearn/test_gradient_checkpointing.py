"""Gradient checkpointing with LoRA: the adapter learns exactly what it learns without it.

The silent failure it guards against: with frozen embeddings and reentrant checkpointing the
adapter receives no gradient and the run "trains" without changing. Here two short real runs of
the tiny LLaVA (untrained, its random initialisation) with and without checkpointing must end
with the same adapter to float tolerance, the adapter must have moved from its initialisation,
and torch's checkpoint function must really have run (counted where transformers calls it).
"""

from __future__ import annotations

import pytest
import torch
import transformers.modeling_utils
from safetensors.torch import load_file

from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # two short unlearning runs


def run(model, data, out, *, checkpointing: bool):
    config = resolve_config(
        preset="demo",
        overrides=[{"eval_every": 0, "max_steps": 3, "gradient_checkpointing": checkpointing, "optim": {"lr": 1e-2}}],
    )
    unlearn(str(model), data, "kl+pd", out, config, progress=False)
    return load_file(out / "adapter" / "adapter_model.safetensors")


def test_checkpointed_lora_learns_the_same_adapter(untrained_tiny, small_demo, tmp_path, monkeypatch):
    calls = []
    real = transformers.modeling_utils.checkpoint  # torch.utils.checkpoint.checkpoint, as transformers calls it

    def counting(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting)
    plain = run(untrained_tiny, small_demo, tmp_path / "plain", checkpointing=False)
    assert not calls
    checkpointed = run(untrained_tiny, small_demo, tmp_path / "ckpt", checkpointing=True)
    assert calls and set(calls) == {False}  # non-reentrant, every block

    assert plain.keys() == checkpointed.keys()
    lora_b = [k for k in plain if "lora_B" in k]
    assert lora_b and all(plain[k].abs().max() > 0 for k in lora_b)  # B starts at zero: it learned
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-4, atol=1e-6)
