"""LLaVA-1.5 (``llava``), the paper's model family, and its tiny copy.

The tiny copy is what the demo starts from: a CLIP vision tower, LLaVA's projector and a Llama
decoder (``LlavaForConditionalGeneration``), a byte-level BPE tokenizer trained on the dataset's
text, a CLIP image processor and LLaVA-1.5's chat format; saved with ``save_pretrained``, it loads
exactly like ``llava-hf/llava-1.5-7b-hf``. LLaVA-1.6 (``llava_next``) reuses its parts.
"""

from __future__ import annotations

from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.tiny_parts import TinyRecipe, TinySize, bpe_tokenizer, set_generation_ids

# LLaVA-1.5's conversation format as a chat template, for checkpoints saved without one.
LLAVA_15_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


# LLaVA-1.5's system sentence: the vicuna_v1 conversation of the LLaVA code base, which LLaVA-1.5
# was instruction-tuned with and the released SafeEraser inference uses (ckpt_infer.py:68,
# conversation.py:243-244).
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# The sentence the released SafeEraser training puts before every prompt instead
# (config/model_config.yaml:20, read by data_module.py:171): "human" where vicuna_v1 says "user".
LLAVA_TRAINING_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


SPECIAL = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "<image>"}


SIZES = {
    # about 0.75M parameters: trains into vanilla behaviour in under two minutes on 2 CPU cores
    # (600 steps of 4 examples per view: the demo's whole study has to fit in 10 minutes)
    "tiny": TinySize(
        image_size=64,
        patch_size=16,
        vision_hidden=64,
        vision_layers=2,
        vision_heads=2,
        text_hidden=128,
        text_layers=2,
        text_heads=4,
        text_intermediate=256,
        vocab_size=1024,
        steps=600,
        lr=1.5e-3,
        batch_per_view=4,
    ),
    # about 100M parameters: for memory and speed measurements; its vanilla training is short
    "small": TinySize(
        image_size=128,
        patch_size=16,
        vision_hidden=384,
        vision_layers=4,
        vision_heads=6,
        text_hidden=768,
        text_layers=12,
        text_heads=12,
        text_intermediate=2048,
        vocab_size=2048,
        steps=40,
        lr=5e-4,
        batch_per_view=4,
    ),
}


def corpus(texts: list[str]) -> list[str]:
    """The tokenizer's training text: the demo's texts, the chat format's words and, repeated, the
    system sentences that open every prompt (their words become whole tokens, which keeps the tiny
    model's prompts short)."""
    extra = {"USER: ASSISTANT: SYSTEM:", "Sure, I cannot can't won't sorry yes no"}
    return sorted(set(texts) | extra) + [VICUNA_SYSTEM, LLAVA_TRAINING_SYSTEM] * 500


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (any text encodes) trained on the dataset's own text; LLaVA's
    (Llama's) layout: ``<s>`` added before every text, ``</s>`` ends the answer."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = bpe_tokenizer(texts, vocab_size, tuple(SPECIAL.values()))
    bos = tok.token_to_id(SPECIAL["bos"])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL['bos']} $A", pair=f"{SPECIAL['bos']} $A $B", special_tokens=[(SPECIAL["bos"], bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        pad_token=SPECIAL["pad"],
        extra_special_tokens={"image_token": SPECIAL["image"]},
        padding_side="left",
    )


def llava_processor_settings(size: TinySize) -> dict:
    """What a LLaVA-1.5 / LLaVA-NeXT processor needs besides its tokenizer and image processor."""
    return dict(
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_15_TEMPLATE,
    )


def clip_vision_config(size: TinySize):
    """The tiny CLIP vision tower (LLaVA-1.5 and LLaVA-NeXT)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 4,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
        projection_dim=size.vision_hidden,
    )


def llama_text_config(tokenizer, size: TinySize):
    """The tiny Llama decoder (LLaVA-1.5 and LLaVA-NeXT)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_heads,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_processor(tokenizer, size: TinySize):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size.image_size}, crop_size={"height": size.image_size, "width": size.image_size}
    )
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, **llava_processor_settings(size))


def build_model(tokenizer, size: TinySize):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config=clip_vision_config(size),
        text_config=llama_text_config(tokenizer, size),
        image_token_index=tokenizer.convert_tokens_to_ids(SPECIAL["image"]),
        image_seq_length=(size.image_size // size.patch_size) ** 2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config)
    return set_generation_ids(model, pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id, bos=tokenizer.bos_token_id)


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """The tiny LLaVA-1.5: its tokenizer trained on ``texts``, processor and model."""
    tokenizer = train_tokenizer(corpus(texts), size.vocab_size)
    return build_processor(tokenizer, size), build_model(tokenizer, size)


FAMILY = ModelFamily(
    name="llava",
    label="LLaVA-1.5",
    model_types=("llava",),
    model_class="LlavaForConditionalGeneration",
    chat_template=LLAVA_15_TEMPLATE,
    system=VICUNA_SYSTEM,
    training_system=LLAVA_TRAINING_SYSTEM,
    hub_ids=("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf"),
    status=TESTED,
    tiny=TinyRecipe(build, SIZES),
)
