"""SmolVLM2 (``smolvlm``): the Idefics3 architecture under its own classes; its tiny copy."""

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
from safeeraser.models.parts import PartsProcessor
from safeeraser.models.tiny_parts import TinyRecipe, TinySize

# SmolVLM2's first token is ``<|im_start|>``.
SMOLVLM_TEMPLATE = idefics3_template("<|im_start|>")


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A SmolVLM2: the Idefics3 architecture under its own classes. ``SmolVLMProcessor`` needs a
    video processor (``torchvision``) and ``num2words``, so the copy carries its parts (tokenizer,
    image processor, template, ``image_seq_len`` in processor_config.json) as the hub folder does."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    tokenizer = idefics3_tokenizer(
        texts + ["User: Assistant:"] * 50, size.vocab_size, bos="<|im_start|>", pad="<|im_end|>"
    )
    settings = {"processor_class": "SmolVLMProcessor", "image_seq_len": image_seq_len(size)}
    processor = PartsProcessor(
        tokenizer, crop_image_processor("SmolVLM", size), family.chat_template, family.image_token, settings
    )
    model = crop_model(SmolVLMConfig, SmolVLMForConditionalGeneration, tokenizer, size)
    return processor, model


FAMILY = ModelFamily(
    name="smolvlm",
    label="SmolVLM2",
    model_types=("smolvlm",),
    model_class="SmolVLMForConditionalGeneration",
    hub_ids=(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
    ),
    chat_template=SMOLVLM_TEMPLATE,
    status=TESTED,
    rmu_layer=5,  # SmolVLM2-2.2B's 24 decoder layers (layer 7 of 32 at the same depth)
    needs_torchvision=True,
    processor_modules=("num2words",),
    tiny=TinyRecipe(build, SIZES),
    **IDEFICS3,
)
