"""Idefics3 (``idefics3``: Idefics3-8B and SmolVLM) and its tiny copy."""

from __future__ import annotations

from safeeraser.models.families._idefics import (
    IDEFICS3,
    SIZES,
    crop_image_processor,
    crop_model,
    idefics3_template,
    idefics3_tokenizer,
    image_seq_len,
)
from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.tiny_parts import TinyRecipe, TinySize

# Idefics3-8B's first token is Llama-3's ``<|begin_of_text|>``.
IDEFICS3_TEMPLATE = idefics3_template("<|begin_of_text|>")


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """An Idefics3 (as Idefics3-8B / SmolVLM): SigLIP-style tower over crops, pixel-shuffle
    connector, Llama decoder; the real ``Idefics3Processor`` (it needs no video processor)."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor

    tokenizer = idefics3_tokenizer(
        texts + ["User: Assistant:"] * 50, size.vocab_size, bos="<|begin_of_text|>", pad="<|end_of_text|>"
    )
    processor = Idefics3Processor(
        image_processor=crop_image_processor("Idefics3", size),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len(size),
        chat_template=family.chat_template,
    )
    model = crop_model(Idefics3Config, Idefics3ForConditionalGeneration, tokenizer, size)
    return processor, model


FAMILY = ModelFamily(
    name="idefics3",
    label="Idefics3 / SmolVLM",
    model_types=("idefics3",),
    model_class="Idefics3ForConditionalGeneration",
    hub_ids=(
        "HuggingFaceM4/Idefics3-8B-Llama3",
        "HuggingFaceTB/SmolVLM-Instruct",
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "HuggingFaceTB/SmolVLM-500M-Instruct",
    ),
    chat_template=IDEFICS3_TEMPLATE,
    status=TESTED,
    tiny=TinyRecipe(build, SIZES),
    **IDEFICS3,
)
