"""What every unlearning method is: a loss over named batches, computed through ``Forward``."""

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


@dataclass(frozen=True)
class Method:
    name: str
    views: tuple[str, ...]  # named batches it needs (forget, retain, refusal, decouple); the first sets the epoch
    loss: Callable[[Forward, dict[str, dict], "object"], Terms]  # returns {"loss": ..., other logged terms}
    pd_weight: float  # published lambda for the Prompt-Decouple term on top of this method
