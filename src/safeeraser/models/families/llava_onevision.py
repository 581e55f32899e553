"""LLaVA-OneVision (``llava_onevision``): anyres tiles with unpadding and new-line tokens; its tiny copy."""

from __future__ import annotations

from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.parts import PartsProcessor
from safeeraser.models.tiny_parts import (
    TinyRecipe,
    TinySize,
    bpe_tokenizer,
    chatml_text_settings,
    pil_image_processor,
    set_generation_ids,
    toy_size,
)

# LLaVA-OneVision (llava-hf checkpoints): ChatML whose role is followed by a space, the images
# first, then each text after a new line, ``<|im_end|>`` with no new line after it; the
# generation prompt is ``<|im_start|>assistant`` and a new line.
ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\\n' + message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}{{ '<video>' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ '\\n' + part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def onevision_image_tokens(processor, image_inputs: dict) -> int:
    """LLaVA-OneVision: anyres tiles, unpadded to the image's aspect ratio, one new-line token per
    row, pooled down past ``anyres_max_N`` tiles, plus the whole image. The processor's own count
    where its class loads (it needs torchvision); else the same methods of that class applied to
    the checkpoint's parts and processor settings (processor_config.json)."""
    if not hasattr(processor, "replace_image_token"):
        import functools
        from types import SimpleNamespace

        from transformers import LlavaOnevisionProcessor as Real

        parts = processor
        processor = SimpleNamespace(
            image_processor=parts.image_processor,
            image_token=parts.image_token,
            num_image_tokens=parts.num_image_tokens,
            vision_feature_select_strategy=parts.vision_feature_select_strategy,
            vision_aspect_ratio=getattr(parts, "vision_aspect_ratio", "anyres_max_9"),
        )
        processor._get_unpadded_features = functools.partial(Real._get_unpadded_features, processor)
        processor._get_number_of_features = functools.partial(Real._get_number_of_features, processor)
        processor.replace_image_token = functools.partial(Real.replace_image_token, processor)
    return processor.replace_image_token(image_inputs, 0).count(processor.image_token)


ONEVISION_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
SIZES = {
    # 32-pixel tiles of 2 x 2 patches: a 64-pixel image is 2 x 2 tiles (4 x 4 features, a new line
    # per row) and the whole image (4): 24 image tokens
    "tiny": toy_size(tile_size=32, max_tiles=4, patch_size=16, text_kv_heads=2),
}


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A LLaVA-OneVision: SigLIP tower, projector, Qwen2 decoder, anyres tiles (grid pinpoints up to
    2 x 2 tiles) with the learned new-line embedding. ``LlavaOnevisionProcessor`` needs a video
    processor (torchvision), so the copy carries its parts and the processor's settings."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts + ["system user assistant"] * 50, size.vocab_size, ONEVISION_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        padding_side="left",
    )
    side = size.tile_size
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    image_processor = pil_image_processor("LlavaOnevisionImageProcessor")(
        size={"height": side, "width": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    settings = {
        "processor_class": "LlavaOnevisionProcessor",
        "num_image_tokens": (side // size.patch_size) ** 2,
        "vision_feature_select_strategy": "full",
        "vision_aspect_ratio": "anyres_max_9",
    }
    processor = PartsProcessor(tokenizer, image_processor, family.chat_template, family.image_token, settings)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ONEVISION_TOKENS}
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=side,
        patch_size=size.patch_size,
    )
    text = chatml_text_settings(
        size,
        tokenizer,
        model_type="qwen2",
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    model = LlavaOnevisionForConditionalGeneration(config)
    return processor, set_generation_ids(model, pad=ids["<|endoftext|>"], eos=ids["<|im_end|>"])


FAMILY = ModelFamily(
    name="llava_onevision",
    label="LLaVA-OneVision",
    model_types=("llava_onevision",),
    model_class="LlavaOnevisionForConditionalGeneration",
    chat_template=ONEVISION_TEMPLATE,
    hub_ids=("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    image_inputs=("pixel_values", "image_sizes", "batch_num_images"),
    image_tokens=onevision_image_tokens,
    end_of_turn="<|im_end|>",
    answer_prefix="",
    needs_torchvision=True,
    rmu_layer=6,  # Qwen2-7B's 28 decoder layers (layer 7 of 32 at the same depth)
    status=TESTED,
    tiny=TinyRecipe(build, SIZES),
)
