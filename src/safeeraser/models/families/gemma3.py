"""Gemma-3 (``gemma3``) and its tiny copy."""

from __future__ import annotations

from safeeraser.models.family import TESTED, ModelFamily, processor_expansion
from safeeraser.models.tiny_parts import (
    TinyRecipe,
    TinySize,
    bpe_tokenizer,
    pil_image_processor,
    set_generation_ids,
    text_settings,
    toy_size,
)

# Gemma-3's conversation format (its hub processors' template): the BOS written by the template, a
# system message folded into the first user turn, the assistant called "model".
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


# Gemma-3's control tokens (as its hub tokenizer names them).
GEMMA_SPECIAL = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)


SIZES = {
    # 64 x 64 images: a SigLIP tower over 8 x 8 patches, pooled to 16 image tokens (as the tiny LLaVA)
    "tiny": toy_size(image_size=64, patch_size=8, image_tokens=16, text_kv_heads=2, head_dim=16),
}


def gemma_tokenizer(texts: list[str], vocab_size: int):
    """Gemma's layout: the template writes ``<bos>``, ``<end_of_turn>`` ends a turn, images are
    ``<start_of_image>`` soft tokens ``<end_of_image>``."""
    from transformers import PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts, vocab_size, GEMMA_SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        padding_side="left",
    )


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A Gemma-3: SigLIP vision tower, pooled projector, Gemma-3 decoder (sliding + global layers)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig

    tokenizer = gemma_tokenizer(texts + ["user model"] * 50, size.vocab_size)
    image_processor = pil_image_processor("Gemma3ImageProcessor")(
        size={"height": size.image_size, "width": size.image_size}
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_TEMPLATE,
        image_seq_length=size.image_tokens,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GEMMA_SPECIAL}
    vision = SiglipVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
    )
    text = dict(
        **text_settings(size, len(tokenizer), pad=ids["<pad>"], bos=ids["<bos>"], eos=ids["<eos>"]),
        head_dim=size.head_dim,
        query_pre_attn_scalar=size.head_dim,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"][: size.text_layers],
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=size.image_tokens,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    model = Gemma3ForConditionalGeneration(config)
    return (
        processor,
        set_generation_ids(model, pad=ids["<pad>"], eos=[ids["<eos>"], ids["<end_of_turn>"]], bos=ids["<bos>"]),
    )


FAMILY = ModelFamily(
    name="gemma3",
    status=TESTED,
    label="Gemma-3",
    model_types=("gemma3",),
    model_class="Gemma3ForConditionalGeneration",
    hub_ids=("google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/gemma-3-27b-it"),
    chat_template=GEMMA3_TEMPLATE,
    image_inputs=("pixel_values",),
    end_of_turn="<end_of_turn>",
    answer_prefix="",
    image_tokens=None,
    expand=processor_expansion,
    token_types=("token_type_ids", "<image_soft_token>"),
    image_token="<start_of_image>",
    tiny=TinyRecipe(build, SIZES),
)
