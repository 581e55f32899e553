"""What Idefics3 and SmolVLM(2) share: a SigLIP tower over crops, a pixel-shuffle connector, a Llama
decoder (``text_model``); the hub template, the image expansion, the family settings and the tiny
copies' tokenizer, image processor and model."""

from __future__ import annotations

from safeeraser.models.tiny_parts import (
    TinySize,
    bpe_tokenizer,
    pil_image_processor,
    set_generation_ids,
    text_settings,
    toy_size,
)


# Idefics3 / SmolVLM: the hub processors' template. Roles capitalised ("User:", "Assistant:"), a
# colon with no space before an image, every turn closed by ``<end_of_utterance>`` and a new line;
# the template writes the first token itself (Idefics3-8B: Llama-3's ``<|begin_of_text|>``;
# SmolVLM and SmolVLM2: ``<|im_start|>``).
def idefics3_template(first: str) -> str:
    return (
        first + "{% for message in messages %}{{ message['role'] | capitalize }}"
        "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
        "{% else %}{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'text' %}{{ part['text'] }}"
        "{% elif part['type'] == 'image' %}{{ '<image>' }}"
        "{% elif part['type'] == 'video' %}{{ '<video>' }}{% endif %}"
        "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


def idefics3_expansion(processor, image_inputs: dict) -> str:
    """Idefics3 / SmolVLM: one image is split into a grid of crops plus the whole image resized;
    each crop is ``<fake_token_around_image><row_R_col_C>`` and ``image_seq_len`` image tokens, a new
    line after each row, then the global image. The processor's own text where its class loads
    (SmolVLM's needs torchvision), else the same text built from the image processor's rows/cols."""
    if hasattr(processor, "replace_image_token"):
        return processor.replace_image_token(image_inputs, 0)
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    tok = processor.tokenizer
    return get_image_prompt_string(
        image_inputs["rows"][0][0],
        image_inputs["cols"][0][0],
        processor.image_seq_len,
        fake_token_around_image=getattr(tok, "fake_image_token", None) or "<fake_token_around_image>",
        image_token=processor.image_token,
        global_image_token=getattr(tok, "global_image_token", None) or "<global-img>",
    )


# Idefics3 and SmolVLM(2): a SigLIP tower over crops, a pixel-shuffle connector, a Llama decoder
# (``text_model``); images are split into crops (padded across crops and across a batch, with a
# ``pixel_attention_mask`` of the real pixels) and expand to text (``idefics3_expansion``).
IDEFICS3 = dict(
    lora_target=r".*text_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    projector="connector",
    image_inputs=("pixel_values", "pixel_attention_mask"),
    image_processor_kwargs=(("return_row_col_info", True),),
    end_of_turn="<end_of_utterance>",
    image_tokens=None,
    expand=idefics3_expansion,
)


SIZES = {
    # 64-pixel images split into 2 x 2 crops of 32 plus the whole image at 32: 5 crops of 4 x 4
    # patches, shuffled 2 x 2 into 4 image tokens each (about 30 prompt tokens per image)
    "tiny": toy_size(image_size=64, crop_size=32, patch_size=8, scale_factor=2),
}

# The Idefics3 / SmolVLM control tokens (as their hub tokenizers name them) and the crop-grid tags.
IDEFICS3_TOKENS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>")

GRID_TAGS = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))


def idefics3_tokenizer(texts: list[str], vocab_size: int, *, bos: str, pad: str):
    """The hub layout: the template writes the first token (``bos``), ``<end_of_utterance>`` ends
    a turn (the instruct models' eos), the crop tags and image tokens are single special tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts, vocab_size, (pad, bos, *IDEFICS3_TOKENS, *GRID_TAGS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<end_of_utterance>",
        pad_token=pad,
        extra_special_tokens={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
        padding_side="left",
    )


def image_seq_len(size: TinySize) -> int:
    return (size.crop_size // size.patch_size) ** 2 // size.scale_factor**2


def crop_image_processor(prefix: str, size: TinySize):
    return pil_image_processor(f"{prefix}ImageProcessor")(
        size={"longest_edge": size.image_size}, max_image_size={"longest_edge": size.crop_size}, do_image_splitting=True
    )


def crop_model(config_class, model_class, tokenizer, size: TinySize):
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in (tokenizer.bos_token, tokenizer.pad_token, "<end_of_utterance>", "<image>")
    }
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.crop_size,
        patch_size=size.patch_size,
    )
    text = dict(
        model_type="llama",
        **text_settings(
            size,
            len(tokenizer),
            pad=ids[tokenizer.pad_token],
            bos=ids[tokenizer.bos_token],
            eos=ids["<end_of_utterance>"],
        ),
    )
    config = config_class(
        vision_config=vision,
        text_config=text,
        scale_factor=size.scale_factor,
        image_token_id=ids["<image>"],
        pad_token_id=ids[tokenizer.pad_token],
    )
    model = model_class(config)
    return set_generation_ids(
        model, pad=ids[tokenizer.pad_token], eos=ids["<end_of_utterance>"], bos=ids[tokenizer.bos_token]
    )
