"""An example model family: ViP-LLaVA (``vipllava``), registered from outside safeeraser, with a tiny copy.

ViP-LLaVA is LLaVA-1.5 with a projector over several of the vision tower's layers. Its hub
checkpoints carry their own chat template (the codec uses it); ``chat_template`` below is only
the fallback for a checkpoint saved without one, such as this family's tiny copy, which reuses
the tiny LLaVA-1.5's tokenizer, processor and decoder parts (``safeeraser.models.families.llava``).
Not checked against a hub checkpoint: registered, untested.
"""

from __future__ import annotations

from safeeraser.models.families.llava import (
    LLAVA_15_TEMPLATE,
    SIZES,
    SPECIAL,
    VICUNA_SYSTEM,
    build_processor,
    clip_vision_config,
    corpus,
    llama_text_config,
    train_tokenizer,
)
from safeeraser.models.family import REGISTERED, ModelFamily
from safeeraser.models.tiny_parts import TinyRecipe, TinySize, set_generation_ids


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """The tiny ViP-LLaVA: the tiny LLaVA's parts, the projector reading the tower's last two layers."""
    from transformers import VipLlavaConfig, VipLlavaForConditionalGeneration

    tokenizer = train_tokenizer(corpus(texts), size.vocab_size)
    config = VipLlavaConfig(
        vision_config=clip_vision_config(size),
        text_config=llama_text_config(tokenizer, size),
        image_token_index=tokenizer.convert_tokens_to_ids(SPECIAL["image"]),
        image_seq_length=(size.image_size // size.patch_size) ** 2,
        vision_feature_layer=[-1, -2],
    )
    model = VipLlavaForConditionalGeneration(config)
    ids = dict(pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id, bos=tokenizer.bos_token_id)
    return build_processor(tokenizer, size), set_generation_ids(model, **ids)


FAMILY = ModelFamily(
    name="vipllava",
    label="ViP-LLaVA (example plugin)",
    model_types=("vipllava",),
    model_class="VipLlavaForConditionalGeneration",
    chat_template=LLAVA_15_TEMPLATE,
    system=VICUNA_SYSTEM,
    hub_ids=("llava-hf/vip-llava-7b-hf", "llava-hf/vip-llava-13b-hf"),
    status=REGISTERED,
    tiny=TinyRecipe(build, {"tiny": SIZES["tiny"]}),
)
