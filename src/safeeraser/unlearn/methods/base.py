"""What every unlearning method is: a loss over named batches, computed through ``Forward``.

The loss is a sum of one term per named batch. The trainer back-propagates each term as soon as
it is computed (the gradients add up to those of the summed loss), so only one batch's
activations are held at a time: GD, KL or X+PD peak at about the memory of GA, not 2-3x it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from safeeraser.unlearn import losses

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_sizes")


class Forward:
    """The model as a method sees it: the current (adapted) model and, for free, the original.

    The reference is the same weights with the LoRA adapter switched off — never a second copy.
    """

    def __init__(self, model: torch.nn.Module, peft_model=None):
        self.model = model  # possibly wrapped for distributed training
        self.peft_model = peft_model if peft_model is not None else model
        self._adapter_layers: list | None = None  # found on first use

    @staticmethod
    def inputs(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k in MODEL_INPUTS}

    def logits(self, batch: dict) -> torch.Tensor:
        return self.model(**self.inputs(batch)).logits

    def nll(self, batch: dict) -> torch.Tensor:
        return losses.answer_nll(self.logits(batch), batch["labels"])

    @torch.no_grad()
    def reference_logits(self, batch: dict) -> torch.Tensor:
        with self._reference():
            return self.peft_model(**self.inputs(batch)).logits

    def _reference(self):
        """A context (no-grad passes only) in which the model is the original: adapter layers off."""
        if self._adapter_layers is None:
            self._adapter_layers = _adapter_layers(self.peft_model)
        if self._adapter_layers:
            return _switched_off(self._adapter_layers)
        disable = getattr(self.peft_model, "disable_adapter", None)  # another kind of PEFT model
        return disable() if disable is not None else contextlib.nullcontext()


def _adapter_layers(model: torch.nn.Module) -> list:
    """The modules a PEFT adapter adds (LoRA layers, trainable copies such as the projector).

    ``PeftModel.disable_adapter`` finds them by walking every module, and first builds a status
    report of the whole model, on each call: about 5 ms on the tiny model and more on a 7B one,
    paid on every KL / NPO micro-batch. Collected once here, they are switched in microseconds.
    """
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return []
    try:
        from peft.utils.other import AuxiliaryTrainingWrapper as Wrapper
    except ImportError:  # older PEFT
        from peft.utils import ModulesToSaveWrapper as Wrapper
    return [m for m in model.modules() if isinstance(m, (BaseTunerLayer, Wrapper))]


@contextlib.contextmanager
def _switched_off(layers: list):
    """Every adapter layer off for a no-grad forward pass, then back as it was.

    PEFT layers keep the switch in ``_disable_adapters`` (what their ``disable_adapters`` property
    reads and ``enable_adapters`` sets). Setting it directly skips ``enable_adapters``' re-setting
    of ``requires_grad`` on every adapter weight, which a no-grad pass does not need; a layer
    without that attribute gets ``enable_adapters``. ``test_reference_is_the_same_model_with_the_
    adapter_off`` checks the result against the model without the adapter.
    """
    was = [getattr(layer, "disable_adapters", False) for layer in layers]
    try:
        for layer, off in zip(layers, was):
            if not off:
                _switch(layer, False)
        yield
    finally:
        for layer, off in zip(layers, was):
            if not off:
                _switch(layer, True)


def _switch(layer, enabled: bool) -> None:
    if hasattr(layer, "_disable_adapters"):
        layer._disable_adapters = not enabled
    else:
        layer.enable_adapters(enabled)


Terms = dict[str, torch.Tensor]
Term = Callable[[Forward, dict, "object"], Terms]  # (forward, one view's batch, method settings) -> {"loss": ..., logged terms}


def nll_term(view: str, weight: float = 1.0) -> Term:
    """``weight`` x NLL of the batch (negative: gradient ascent), logged unweighted as ``<view>_nll``."""

    def term(f: Forward, batch: dict, settings) -> Terms:
        nll = f.nll(batch)
        return {"loss": weight * nll, f"{view}_nll": nll}

    return term


@dataclass(frozen=True)
class Method:
    name: str
    terms: dict[str, Term]  # named batch (forget, retain, refusal, decouple) -> its term; the first sets the epoch
    pd_weight: float  # published lambda for the Prompt-Decouple term on top of this method

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.terms)
