"""Llama-3.2-Vision (``mllama``), a cross-attention family, and its tiny copy."""

from __future__ import annotations

from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.tiny_parts import (
    TinyRecipe,
    TinySize,
    bpe_tokenizer,
    pil_image_processor,
    set_generation_ids,
    text_settings,
    toy_size,
)

# Llama-3.2-Vision's conversation format, in the layout of its hub processors' template (Llama 3
# headers, ``<|eot_id|>`` ending each turn, one ``<|image|>`` per image, the BOS written by the
# template; a system message only in text-only prompts, as the hub template refuses one beside an
# image), for the tiny copies and checkpoints saved without a template.
MLLAMA_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set system_message = messages[0]['content'] | trim -%}"
    "{%- else -%}{%- set system_message = messages[0]['content'][0]['text'] | trim -%}{%- endif -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- endif -%}"
    "{%- set image_ns = namespace(has_images=false) -%}"
    "{%- for message in messages -%}{%- if message['content'] is not string -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{%- set image_ns.has_images = true -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{%- if image_ns.has_images and system_message != '' -%}"
    "{{- raise_exception('Prompting with images is incompatible with system messages.') }}{%- endif -%}"
    "{%- if system_message != '' -%}{{- '<|start_header_id|>system<|end_header_id|>\n\n' + system_message + '<|eot_id|>' }}{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- '<|image|>' }}{%- elif content['type'] == 'text' -%}{{- content['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif -%}"
)


def one_image_token(processor, image_inputs: dict) -> int:
    """Mllama: the image stays one ``<|image|>`` token; the picture reaches the decoder by cross-attention."""
    return 1


# Llama-3.2-Vision's control tokens (as its hub tokenizer names them).
MLLAMA_SPECIAL = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|image|>",
    "<|finetune_right_pad_id|>",
    "<|python_tag|>",
)


SIZES = {
    # tiles of 32 x 32 pixels (4 x 4 patches of 8), up to 4 tiles per image (the hub's tiling, at toy
    # size): a 64 x 64 picture is 2 x 2 tiles; a decoder of 3 layers, the middle one cross-attention
    "tiny": toy_size(
        tile_size=32,
        max_tiles=4,
        patch_size=8,
        vision_layers=2,
        vision_global_layers=1,
        text_layers=3,
        cross_attention_layers=(1,),
        text_kv_heads=2,
    ),
}


def mllama_tokenizer(texts: list[str], vocab_size: int):
    """Llama 3's layout: the tokenizer adds ``<|begin_of_text|>`` (the template writes it too, and the
    codec then adds none), ``<|eot_id|>`` ends a turn (the instruct models' eos), one ``<|image|>`` per image."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts, vocab_size, MLLAMA_SPECIAL)
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        extra_special_tokens={"image_token": "<|image|>"},
        padding_side="left",
    )


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A Llama-3.2-Vision: the tiled vision encoder (local and gated global layers, aspect-ratio
    embeddings, intermediate layers concatenated), the linear projector, and a Llama decoder with
    gated cross-attention layers that read the image through ``cross_attention_mask``."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor

    tokenizer = mllama_tokenizer(texts + ["user assistant system"] * 50, size.vocab_size)
    image_processor = pil_image_processor("MllamaImageProcessor")(
        size={"height": size.tile_size, "width": size.tile_size}, max_image_tiles=size.max_tiles
    )
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=MLLAMA_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in MLLAMA_SPECIAL}
    intermediate = list(range(size.vision_layers))  # every local layer's output joins the final one
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_global_layers=size.vision_global_layers,
        attention_heads=size.vision_heads,
        image_size=size.tile_size,
        patch_size=size.patch_size,
        max_num_tiles=size.max_tiles,
        intermediate_layers_indices=intermediate,
        vision_output_dim=size.vision_hidden * (len(intermediate) + 1),
    )
    text = dict(
        **text_settings(
            size,
            len(tokenizer),
            pad=ids["<|finetune_right_pad_id|>"],
            bos=ids["<|begin_of_text|>"],
            eos=ids["<|eot_id|>"],
        ),
        cross_attention_layers=list(size.cross_attention_layers),
    )
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids["<|image|>"])
    model = MllamaForConditionalGeneration(config)
    eos = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    return (
        processor,
        set_generation_ids(model, pad=ids["<|finetune_right_pad_id|>"], eos=eos, bos=ids["<|begin_of_text|>"]),
    )


FAMILY = ModelFamily(
    name="mllama",
    status=TESTED,
    label="Llama-3.2-Vision",
    model_types=("mllama",),
    model_class="MllamaForConditionalGeneration",
    chat_template=MLLAMA_TEMPLATE,
    hub_ids=("meta-llama/Llama-3.2-11B-Vision-Instruct", "meta-llama/Llama-3.2-90B-Vision-Instruct"),
    image_inputs=("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"),
    cross_attention="cross_attention_mask",
    image_tokens=one_image_token,
    image_token="<|image|>",
    end_of_turn="<|eot_id|>",
    answer_prefix="",
    # layer 9 of the 11B's 40 (32 self-attention + 8 cross-attention layers): about the depth of
    # layer 7 of 32 where WMDP steers, and a self-attention layer
    rmu_layer=9,
    tiny=TinyRecipe(build, SIZES),
)
