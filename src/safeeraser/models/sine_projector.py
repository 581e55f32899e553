"""SineProject's projector layers: the frozen projector plus a bounded, sinusoidally modulated update.

Each linear layer of the multimodal projector (the family's ``projector``) becomes

    W = W0 + sin(omega * B A) / sqrt(in_features)

with W0 frozen and A (rank x in), B (out x rank) trained. Every entry of the update lies in
[-1/sqrt(in), 1/sqrt(in)] whatever A and B become (Garg, Saratchandran and Lucey, *SineProject*,
CVPR 2026). B starts at zero, so training starts from the original projector.

The layers are PEFT LoRA layers (``lora_A``/``lora_B`` hold A and B), so the adapter saves,
checkpoints, resumes, switches off (the methods' reference model) and merges as any LoRA layer
does; only their delta differs. ``MARKER`` in the adapter folder records the frequency and the
layers, and ``attach_adapter`` reads it: without it PEFT would load A and B as a plain LoRA.
``merge`` folds the update into W, so the merged model is plain transformers weights.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from torch import nn

MARKER = "sineproject.json"  # in the adapter folder: {"frequency": omega, "modules": [...]}


class ProjectorLinear(nn.Linear):
    """A projector's linear layer, marked (its class swapped) so that PEFT builds a ``SineLinear``
    on it while the language model's linear layers get ordinary LoRA. Its weights and state-dict
    keys are nn.Linear's."""


def projector_linears(model: nn.Module, projector: str) -> list[str]:
    """Full names of the linear layers inside the family's projector module (named by its suffix),
    the same before and after PEFT wraps them."""
    owners = [name for name, _ in model.named_modules() if name == projector or name.endswith("." + projector)]
    if not owners:
        from safeeraser.errors import UserError

        raise UserError(f"SineProject: the model has no projector module {projector!r}")
    owner = min(owners, key=len)
    found: list[str] = []
    for name, module in model.named_modules():
        if not name.startswith(owner + ".") or any(name.startswith(f + ".") for f in found):
            continue  # outside the projector, or inside a layer already found (PEFT's A, B and base layer)
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        if isinstance(base, nn.Linear):
            found.append(name)
    if not found:
        from safeeraser.errors import UserError

        raise UserError(f"SineProject: the projector {owner!r} has no linear layers")
    return found


def mark(model: nn.Module, names: list[str]) -> None:
    """The named linear layers marked as the projector's (a class swap; nothing else changes)."""
    modules = dict(model.named_modules())
    for name in names:
        module = modules[name]
        if type(module) is nn.Linear:
            module.__class__ = ProjectorLinear


def targets(language_target: str, names: list[str]) -> str:
    """The LoRA target regex: the language model's layers, or exactly the projector's linear layers."""
    return f"(?:{language_target})|(?:{'|'.join(re.escape(n) for n in names)})"


def register(lora_config, frequency: float) -> None:
    """PEFT builds a ``SineLinear`` (with this frequency) on every marked projector layer."""

    def build(target, adapter_name, config, **kwargs):
        return SineLinear(target, adapter_name, config=config, frequency=frequency, **kwargs)

    lora_config._register_custom_module({ProjectorLinear: build})


def write_marker(folder: Path, frequency: float, names: list[str]) -> None:
    (Path(folder) / MARKER).write_text(
        json.dumps({"frequency": frequency, "modules": names}, indent=1) + "\n", encoding="utf-8"
    )


def read_marker(folder: Path) -> dict | None:
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"frequency": float(data["frequency"]), "modules": [str(m) for m in data["modules"]]}
    except (OSError, ValueError, KeyError, TypeError):
        from safeeraser.errors import UserError

        raise UserError(f"{path}: unreadable SineProject record") from None


def sine_delta(weight_a: torch.Tensor, weight_b: torch.Tensor, frequency: float) -> torch.Tensor:
    """sin(omega * B A) / sqrt(in_features): the projector layer's update, each entry within
    +-1/sqrt(in_features)."""
    return torch.sin(frequency * (weight_b @ weight_a)) / math.sqrt(weight_a.shape[1])


def _lora_linear():
    from peft.tuners.lora.layer import Linear

    return Linear


class SineLinear(_lora_linear()):
    """A PEFT LoRA linear layer whose update is ``sine_delta(A, B)`` instead of ``scaling * B A``."""

    def __init__(self, base_layer, adapter_name: str, config, frequency: float, **kwargs):
        self.frequency = float(frequency)
        super().__init__(base_layer, adapter_name, config=config, **kwargs)

    def get_delta_weight(self, adapter) -> torch.Tensor:
        a, b = self.lora_A[adapter].weight, self.lora_B[adapter].weight
        dtype = b.dtype
        return sine_delta(a.float(), b.float(), self.frequency).to(dtype)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        kwargs.pop("adapter_names", None)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        came = result.dtype
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            a = self.lora_A[adapter].weight
            inputs = self.lora_dropout[adapter](x.to(a.dtype))
            result = result + nn.functional.linear(inputs, sine_delta(a, self.lora_B[adapter].weight, self.frequency))
        return result.to(came)

    def __repr__(self) -> str:
        return "sine." + super().__repr__()
