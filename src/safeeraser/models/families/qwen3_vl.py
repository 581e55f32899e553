"""Qwen3-VL (``qwen3_vl``) and its tiny copy."""

from __future__ import annotations

from safeeraser.models.families._qwen import (
    QWEN_SPECIAL,
    QWEN_VL,
    SIZES,
    qwen_image_processor,
    qwen_tokenizer,
)
from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.parts import PartsProcessor
from safeeraser.models.tiny_parts import TinyRecipe, TinySize, chatml_text_settings, set_generation_ids

# The Qwen3-VL Instruct hub processors' chat template, without its tool-calling branch: ChatML as
# Qwen2-VL, but no default system sentence (a system message only when one is given).
QWEN3_VL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['content'] is string -%}{{- messages[0]['content'] }}"
    "{%- else -%}{%- for content in messages[0]['content'] -%}{%- if 'text' in content -%}{{- content['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' }}{%- endif -%}"
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}{%- if message['role'] != 'system' -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + image_count.value | string + ': ' }}{%- endif -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'video' or 'video' in content -%}{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' + video_count.value | string + ': ' }}{%- endif -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content -%}{{- content['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A Qwen3-VL: its vision tower (learned position embeddings interpolated to the grid, DeepStack
    features from an inner layer added to the decoder's first layers) and patch merger, and a Qwen3
    decoder (QK-norm) with interleaved M-RoPE."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = qwen_tokenizer(texts + ["system user assistant"] * 50, size.vocab_size)
    processor = PartsProcessor(tokenizer, qwen_image_processor(size), QWEN3_VL_TEMPLATE, family.image_token)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    side = size.image_size // size.patch_size
    vision = dict(
        depth=size.vision_layers + 1,
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_heads=size.vision_heads,
        patch_size=size.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=size.text_hidden,
        num_position_embeddings=side * side,
        deepstack_visual_indexes=[0],
    )
    head_dim = size.text_hidden // size.text_heads
    text = chatml_text_settings(
        size,
        tokenizer,
        head_dim=head_dim,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": list(size.mrope_section),
            "mrope_interleaved": True,
        },
    )
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen3VLForConditionalGeneration(config)
    return processor, set_generation_ids(model, pad=ids["<|endoftext|>"], eos=ids["<|im_end|>"])


FAMILY = ModelFamily(
    name="qwen3_vl",
    status=TESTED,
    label="Qwen3-VL",
    model_types=("qwen3_vl",),
    model_class="Qwen3VLForConditionalGeneration",
    hub_ids=(
        "Qwen/Qwen3-VL-2B-Instruct",
        "Qwen/Qwen3-VL-4B-Instruct",
        "Qwen/Qwen3-VL-8B-Instruct",
        "Qwen/Qwen3-VL-32B-Instruct",
    ),
    tiny=TinyRecipe(build, SIZES),
    **{**QWEN_VL, "chat_template": QWEN3_VL_TEMPLATE},
)
