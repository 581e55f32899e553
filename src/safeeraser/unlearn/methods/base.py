"""What every unlearning method is: a loss over named batches, computed through ``Forward``.

The loss is a sum of one term per named batch (a batch may join views, e.g. refusal+retain). The trainer back-propagates each term as soon as
it is computed (the gradients add up to those of the summed loss), so only one batch's
activations are held at a time: GD, KL or X+PD peak at about the memory of GA, not 2-3x it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from safeeraser.unlearn import losses

# A batch is what the codec collated: the model's inputs, named as the family's processor names
# them (ids, attention mask, the family's image inputs), plus the labels, which only the loss reads.
NOT_MODEL_INPUTS = ("labels",)


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
        return {k: v for k, v in batch.items() if k not in NOT_MODEL_INPUTS}

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
Term = Callable[[Forward, dict, Any], Terms]  # (forward, one batch, method settings) -> {"loss": ..., logged terms}

# A batch name joins views: "refusal+retain" is one micro-batch of each view in one batch, so
# that a single token mean runs over both (as the released PO loss does).
JOIN = "+"


def batch_views(batch: str) -> tuple[str, ...]:
    return tuple(batch.split(JOIN))


def nll_term(batch: str, weight: float = 1.0) -> Term:
    """``weight`` x NLL of the batch (negative: gradient ascent), logged unweighted as ``<batch>_nll``."""

    def term(f: Forward, inputs: dict, settings) -> Terms:
        nll = f.nll(inputs)
        return {"loss": weight * nll, f"{batch}_nll": nll}

    return term


@dataclass(frozen=True)
class Method:
    """An unlearning method as declared: its loss terms, built from the method settings.

    ``build(settings, retain_weight)`` returns {batch name: term}; the first batch sets the epoch.
    ``pd_weight`` is the published lambda of the Prompt-Decouple term on top of the method and
    ``pd_retain_weight`` the retain term's weight under +PD (the released GD+PD halves it).
    """

    name: str
    build: Callable[[Any, float], dict[str, Term]]
    pd_weight: float
    pd_retain_weight: float = 1.0


@dataclass(frozen=True)
class Objective:
    """A method resolved against its settings (and +PD): what the trainer runs."""

    name: str
    terms: dict[str, Term]
    pd_weight: float | None = None  # the lambda in use, for X+PD

    @property
    def views(self) -> tuple[str, ...]:
        """Every view the batches draw on, in order of first use."""
        return tuple(dict.fromkeys(v for batch in self.terms for v in batch_views(batch)))
