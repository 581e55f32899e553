"""InternVL (``internvl``, transformers' -hf checkpoints): dynamic tiling; its tiny copy."""

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

# InternVL (transformers' -hf checkpoints): ChatML without a default system sentence, the image as
# ``<IMG_CONTEXT>`` and a new line (as the conversion script in transformers writes the template).
INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif part['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def internvl_expansion(processor, image_inputs: dict) -> str:
    """InternVL: dynamic tiling into ``num_patches`` tiles (plus a thumbnail when there are
    several), each ``image_seq_length`` tokens, between ``<img>`` and ``</img>``. The processor's
    own text where its class loads, else the same from the tokenizer and processor_config.json."""
    if hasattr(processor, "replace_image_token"):
        return processor.replace_image_token(image_inputs, 0)
    tok = processor.tokenizer
    n = int(image_inputs["num_patches"][0]) * processor.image_seq_length
    return f"{tok.start_image_token}{processor.image_token * n}{tok.end_image_token}"


SIZES = {
    # 32-pixel tiles (at most 4, plus a thumbnail) of 4 x 4 patches, pixel-shuffled 2 x 2 into 4
    # tokens per tile: a 64-pixel image is 2 x 2 tiles + thumbnail, 20 image tokens
    "tiny": toy_size(tile_size=32, max_tiles=4, patch_size=8, text_kv_heads=2),
}

# InternVL's control tokens (its -hf tokenizers: Qwen2.5's ChatML tokens plus the image tags).
INTERNVL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """An InternVL (as InternVL3-*-hf): InternViT tower over tiles, pixel-shuffle MLP projector,
    Qwen2 decoder. ``InternVLProcessor`` loads with a video processor (torchvision), so the copy
    carries its parts (tokenizer, GOT-OCR2 image processor with tiling, template, image_seq_length)."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration, PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts + ["system user assistant"] * 50, size.vocab_size, INTERNVL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "context_image_token": "<IMG_CONTEXT>",
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "video_token": "<video>",
        },
        padding_side="left",
    )
    seq = (size.tile_size // size.patch_size) ** 2 // 4  # downsample_ratio 0.5 on each side
    settings = {"processor_class": "InternVLProcessor", "image_seq_length": seq}
    processor = PartsProcessor(
        tokenizer, tile_image_processor(size), family.chat_template, family.image_token, settings
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in INTERNVL_TOKENS}
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=[size.tile_size, size.tile_size],
        patch_size=[size.patch_size, size.patch_size],
    )
    text = chatml_text_settings(
        size,
        tokenizer,
        model_type="qwen2",
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=seq,
        downsample_ratio=0.5,
    )
    model = InternVLForConditionalGeneration(config)
    return processor, set_generation_ids(model, pad=ids["<|endoftext|>"], eos=ids["<|im_end|>"])


def tile_image_processor(size: TinySize):
    return pil_image_processor("GotOcr2ImageProcessor")(
        crop_to_patches=True,
        min_patches=1,
        max_patches=size.max_tiles,
        size={"height": size.tile_size, "width": size.tile_size},
    )


FAMILY = ModelFamily(
    name="internvl",
    label="InternVL",
    model_types=("internvl",),
    model_class="InternVLForConditionalGeneration",
    hub_ids=(
        "OpenGVLab/InternVL3-1B-hf",
        "OpenGVLab/InternVL3-2B-hf",
        "OpenGVLab/InternVL3-8B-hf",
        "OpenGVLab/InternVL3-14B-hf",
    ),
    chat_template=INTERNVL_TEMPLATE,
    image_inputs=("pixel_values",),  # every image's tiles, one after another (no batch dimension)
    end_of_turn="<|im_end|>",
    answer_prefix="",
    needs_torchvision=True,
    image_token="<IMG_CONTEXT>",
    image_tokens=None,
    expand=internvl_expansion,
    rmu_layer=6,  # InternVL3-2B/8B's 28 decoder layers (layer 7 of 32 at the same depth)
    status=TESTED,
    tiny=TinyRecipe(build, SIZES),
)
