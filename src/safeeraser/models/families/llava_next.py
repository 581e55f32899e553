"""LLaVA-1.6 (LLaVA-NeXT, ``llava_next``) and its tiny copy (the tiny LLaVA-1.5's parts with anyres)."""

from __future__ import annotations

from safeeraser.models.families.llava import (
    LLAVA_15_TEMPLATE,
    SIZES,
    SPECIAL,
    clip_vision_config,
    llama_text_config,
    llava_processor_settings,
    train_tokenizer,
)
from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.tiny_parts import TinyRecipe, TinySize, pil_image_processor, set_generation_ids


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A LLaVA-1.6 (NeXT): the tiny LLaVA's CLIP tower, projector and Llama decoder, with anyres
    (each image seen whole and as tiles of a grid pinpoint, plus a learned row-end embedding)."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor

    tokenizer = train_tokenizer(texts + ["USER: ASSISTANT:"], size.vocab_size)
    side = size.image_size
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side]]
    image_processor = pil_image_processor("LlavaNextImageProcessor")(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, **llava_processor_settings(size)
    )
    config = LlavaNextConfig(
        vision_config=clip_vision_config(size),
        text_config=llama_text_config(tokenizer, size),
        image_token_index=tokenizer.convert_tokens_to_ids(SPECIAL["image"]),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(side // size.patch_size) ** 2,
    )
    model = LlavaNextForConditionalGeneration(config)
    return (
        processor,
        set_generation_ids(model, pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id, bos=tokenizer.bos_token_id),
    )


FAMILY = ModelFamily(
    name="llava_next",
    status=TESTED,
    label="LLaVA-1.6 (LLaVA-NeXT)",
    model_types=("llava_next",),
    model_class="LlavaNextForConditionalGeneration",
    chat_template=LLAVA_15_TEMPLATE,
    hub_ids=(
        "llava-hf/llava-v1.6-vicuna-7b-hf",
        "llava-hf/llava-v1.6-vicuna-13b-hf",
        "llava-hf/llava-v1.6-mistral-7b-hf",
        "llava-hf/llava-v1.6-34b-hf",
    ),
    tiny=TinyRecipe(build, SIZES),
)
