"""The trained part of a run: the LoRA adapter (or SineProject's projector layers, or a trained
adapter continued), and the codec that writes the training prompts."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.models.codec import Codec
from safeeraser.unlearn.config import UnlearnConfig

SNAPSHOTS = "snapshots"  # the adapter after each step the run was asked to keep (snapshots/step-N)


def capitalized(example):
    """The example with question and answer ``.capitalize()``d, as the released data module reads
    them (a refusal is stripped of spaces first, as it is there): ``text.capitalize``."""
    return replace(example, question=example.question.capitalize(), answer=example.answer.strip(" ").capitalize())


def _capitalized(encode):
    """``encode`` of the ``capitalized`` example."""
    return lambda example: encode(capitalized(example))


def training_codec(loaded, config: UnlearnConfig) -> Codec:
    """The codec of training under ``config``: the prompt format (system sentence), the answer's
    cuts and end token (with ``capitalized`` when ``text.capitalize``, what the model is trained on)."""
    family = loaded.family
    system = family.system_sentence(config.system_sentence) if config.system_prompt else None
    return Codec(
        loaded.processor,
        family=family,
        system=system,
        max_answer_tokens=config.max_answer_tokens,
        max_length=config.max_length,
        train_eos=config.text.train_eos,
    )


def snapshot_folder(out: Path, step: int) -> Path:
    """Where a run asked for ``snapshots`` keeps the adapter after optimizer step ``step``."""
    return Path(out) / SNAPSHOTS / f"step-{step}"


def _continued(model, adapter: Path):
    """The model with a trained adapter (its LoRA and projector copy, or SineProject's layers)
    loaded trainable: training continues it rather than starting a fresh LoRA, and saves an
    adapter over the same base."""
    from safeeraser.models.loading import peft_from_adapter

    return peft_from_adapter(model, Path(adapter), trainable=True)


def _lora(model, family, config: UnlearnConfig, projector: str | None = None):
    """LoRA on the language model and the projector trained in full (``lora.train_projector``), or,
    with ``projector="sine"`` (SineProject), the projector frozen with a sine-bounded update on each
    of its linear layers (``models/sine_projector.py``)."""
    from peft import LoraConfig, get_peft_model

    target = config.lora.target or family.lora_target
    extra = {}
    if projector == "sine":
        from safeeraser.models import sine_projector

        names = sine_projector.projector_linears(model, family.projector)
        sine_projector.mark(model, names)
        target = sine_projector.targets(target, names)
        rank = config.method.sineproject.rank or config.lora.r
        extra = {"rank_pattern": {re.escape(n): rank for n in names}}
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=target,
        modules_to_save=[family.projector] if config.lora.train_projector and projector is None else None,
        bias="none",
        **extra,
    )
    if projector == "sine":
        sine_projector.register(lora, config.method.sineproject.frequency)
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise UserError(f"LoRA target {lora.target_modules!r} matches no module of this model ({e})") from None
