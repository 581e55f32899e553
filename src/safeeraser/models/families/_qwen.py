"""What the Qwen-VL families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) share: the hub template and family
settings, the image-token count, and the tiny copies' tokenizer, image processor and builder."""

from __future__ import annotations

from safeeraser.models.family import ModelFamily
from safeeraser.models.parts import PartsProcessor
from safeeraser.models.tiny_parts import (
    TinySize,
    bpe_tokenizer,
    chatml_text_settings,
    pil_image_processor,
    set_generation_ids,
    toy_size,
)

# The Qwen2-VL / Qwen2.5-VL hub processors' chat template (ChatML, a default system sentence,
# ``<|vision_start|><|image_pad|><|vision_end|>`` per image), for the tiny copies and for
# checkpoints saved without a template.
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_vl_image_tokens(processor, image_inputs: dict) -> int:
    """Qwen2-VL family: one token per merged patch (``merge_size`` x ``merge_size`` patches)."""
    return int(image_inputs["image_grid_thw"][0].prod()) // processor.image_processor.merge_size**2


QWEN_VL = dict(
    chat_template=QWEN_VL_TEMPLATE,
    projector="visual.merger",
    image_inputs=("pixel_values", "image_grid_thw"),
    image_tokens=qwen_vl_image_tokens,
    end_of_turn="<|im_end|>",
    answer_prefix="",
    needs_torchvision=True,
    image_token="<|image_pad|>",
    token_types=("mm_token_type_ids", "<|image_pad|>"),
)


# The Qwen2-VL family's control tokens (as its hub tokenizers define them).
QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

QWEN_DEFAULT_SYSTEM = "You are a helpful assistant."


SIZES = {
    # 64 x 64 images: 8 x 8 patches of 8 pixels, merged 2 x 2 into 16 image tokens (as the tiny LLaVA)
    "tiny": toy_size(image_size=64, patch_size=8, text_kv_heads=2, mrope_section=(2, 3, 3)),
}


def qwen_tokenizer(texts: list[str], vocab_size: int):
    """Qwen's layout: no BOS, ``<|im_end|>`` ends a turn (the instruct models' eos), ``<|endoftext|>`` pads."""
    from transformers import PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts, vocab_size, QWEN_SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        padding_side="left",
    )


def qwen_corpus_extra() -> list[str]:
    return ["system user assistant"] + [QWEN_DEFAULT_SYSTEM] * 500


def build_qwen(texts: list[str], size: TinySize, family: ModelFamily, *, version: str):
    import transformers

    tokenizer = qwen_tokenizer(texts + qwen_corpus_extra(), size.vocab_size)
    image_processor = qwen_image_processor(size)
    processor = PartsProcessor(tokenizer, image_processor, QWEN_VL_TEMPLATE, family.image_token)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    vision = dict(
        depth=size.vision_layers,
        num_heads=size.vision_heads,
        patch_size=size.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    if version == "2.5":
        vision.update(
            hidden_size=size.vision_hidden,
            intermediate_size=size.vision_hidden * 2,
            window_size=size.patch_size * 4,
            out_hidden_size=size.text_hidden,
            fullatt_block_indexes=[size.vision_layers - 1],
        )
    else:  # Qwen2-VL: embed_dim is the tower's width, hidden_size the merger's output (the decoder's width)
        vision.update(embed_dim=size.vision_hidden, mlp_ratio=2, hidden_size=size.text_hidden)
    text = chatml_text_settings(
        size,
        tokenizer,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(size.mrope_section)},
    )
    prefix = "Qwen2_5_VL" if version == "2.5" else "Qwen2VL"
    config = getattr(transformers, f"{prefix}Config")(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    return processor, set_generation_ids(model, pad=ids["<|endoftext|>"], eos=ids["<|im_end|>"])


def qwen_image_processor(size: TinySize):
    ImageProcessor = pil_image_processor("Qwen2VLImageProcessor")
    pixels = size.image_size * size.image_size
    return ImageProcessor(
        min_pixels=pixels // 4, max_pixels=pixels, patch_size=size.patch_size, merge_size=2, temporal_patch_size=2
    )
