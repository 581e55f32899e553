"""What every unlearning method is: a loss over named batches, computed through ``Forward``.

The loss is a sum of one term per named batch (a batch may join views, e.g. refusal+retain). The trainer back-propagates each term as soon as
it is computed (the gradients add up to those of the summed loss), so only one batch's
activations are held at a time: GD, KL or X+PD peak at about the memory of GA, not 2-3x it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from safeeraser.unlearn import losses

# A batch is what the codec collated: the model's inputs, named as the family's processor names
# them (ids, attention mask, the family's image inputs), plus the labels, which only the loss reads.
NOT_MODEL_INPUTS = ("labels",)


class Forward:
    """The model as a method sees it: the current (adapted) model and, for free, the original.

    The reference is the same weights with the LoRA adapter switched off — never a second copy.
    """

    def __init__(self, model: torch.nn.Module, peft_model=None, family=None):
        self.model = model  # possibly wrapped for distributed training
        self.peft_model = peft_model if peft_model is not None else model
        self.family = family  # the model family (models.families), for per-family defaults such as RMU's layer
        self._adapter_layers: list | None = None  # found on first use
        self._decoder_layers: torch.nn.ModuleList | None = None

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

    def hidden(self, batch: dict, layer: int, reference: bool = False) -> torch.Tensor:
        """The output (B, T, D) of the language model's decoder layer ``layer`` (0-based), read by a
        forward hook; ``reference``: of the original model (adapter off, no gradient)."""
        layers = self.decoder_layers()
        if not 0 <= layer < len(layers):
            from safeeraser.errors import UserError

            raise UserError(f"layer {layer}: the language model has decoder layers 0-{len(layers) - 1}")
        seen: list[torch.Tensor] = []

        def keep(module, args, output):
            seen.append(output[0] if isinstance(output, tuple) else output)

        handle = layers[layer].register_forward_hook(keep)
        try:
            if reference:
                with torch.no_grad(), self._reference():
                    self.peft_model(**self.inputs(batch))
            else:
                self.model(**self.inputs(batch))
        finally:
            handle.remove()
        return seen[0]

    def decoder_layers(self) -> torch.nn.ModuleList:
        """The language model's stack of decoder layers: the longest ``layers`` list outside the vision tower."""
        if self._decoder_layers is None:
            stacks = [
                m
                for name, m in self.peft_model.named_modules()
                if isinstance(m, torch.nn.ModuleList)
                and name.endswith("layers")
                and "vision" not in name
                and "visual" not in name
            ]
            if not stacks:
                raise ValueError("no decoder layers found in the model")
            self._decoder_layers = max(stacks, key=len)
        return self._decoder_layers

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

# A batch name may also pair views: "refusal&forget" draws the same examples (same indices) of
# both views, rows of the first view then rows of the second, for losses that compare two answers
# to one prompt (DPO). The views must be aligned, as refusal and forget are.
PAIR = "&"


def is_paired(batch: str) -> bool:
    return PAIR in batch


def batch_views(batch: str) -> tuple[str, ...]:
    return tuple(v for part in batch.split(JOIN) for v in part.split(PAIR))


def nll_term(batch: str, weight: float = 1.0) -> Term:
    """``weight`` x NLL of the batch (negative: gradient ascent), logged unweighted as ``<batch>_nll``."""

    def term(f: Forward, inputs: dict, settings) -> Terms:
        nll = f.nll(inputs)
        return {"loss": weight * nll, f"{batch}_nll": nll}

    return term


class Settings(BaseModel):
    """A method's own settings (``method.<name>.<key>``): typed, bounded, each with its default and meaning."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Method:
    """An unlearning method as declared: its loss terms, built from the method settings.

    ``build(settings, retain_weight)`` returns {batch name: term}; the first batch sets the epoch.
    ``settings`` is the schema of its own section ``method.<name>`` (None: it has none); ``batches``
    the named batches it trains on under default settings and ``logs`` the terms it logs besides
    ``loss`` (what plots and selection rules may read). ``paper`` is the definition it follows.
    ``prepare``, where a method has one, is called by the trainer once before the first step with
    the run (its model, views and codec) and returns a gradient filter (``during(batch)``, a
    context around each term's backward pass), e.g. MMUnlearner's saliency mask.
    ``pd_weight`` is the lambda of the Prompt-Decouple term on top of the method (released for
    GA, GD, KL and PO; ours for the others) and ``pd_retain_weight`` the retain term's weight under +PD (the released
    GD+PD halves it).
    """

    name: str
    build: Callable[[Any, float], dict[str, Term]]
    pd_weight: float
    pd_retain_weight: float = 1.0
    settings: type[Settings] | None = None
    batches: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()
    paper: str = ""
    prepare: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Objective:
    """A method resolved against its settings (and +PD): what the trainer runs."""

    name: str
    terms: dict[str, Term]
    pd_weight: float | None = None  # the lambda in use, for X+PD
    logs: tuple[str, ...] = ()  # the loss terms it logs besides "loss"
    prepare: Callable[[Any], Any] | None = None  # the method's once-before-training step (Method.prepare)
    projector: str | None = (
        None  # "sine": the projector frozen and reparameterised (SineProject); None: as lora.train_projector says
    )

    @property
    def views(self) -> tuple[str, ...]:
        """Every view the batches draw on, in order of first use."""
        return tuple(dict.fromkeys(v for batch in self.terms for v in batch_views(batch)))
