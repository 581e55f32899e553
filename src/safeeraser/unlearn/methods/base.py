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

    @staticmethod
    def inputs(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k in MODEL_INPUTS}

    def logits(self, batch: dict) -> torch.Tensor:
        return self.model(**self.inputs(batch)).logits

    def nll(self, batch: dict) -> torch.Tensor:
        return losses.answer_nll(self.logits(batch), batch["labels"])

    @torch.no_grad()
    def reference_logits(self, batch: dict) -> torch.Tensor:
        with self.reference():
            return self.peft_model(**self.inputs(batch)).logits

    def reference(self):
        disable = getattr(self.peft_model, "disable_adapter", None)
        return disable() if disable is not None else contextlib.nullcontext()


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
