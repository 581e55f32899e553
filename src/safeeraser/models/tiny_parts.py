"""What every tiny family's recipe shares: the special tokens and sizes of the tiny LLaVA, the
tokenizers trained on the demo's texts, the vision and text configurations, the generation ids.
``models.tiny`` (the LLaVA recipe and the training), ``models.tiny_families`` and
``models.tiny_tiled`` (the other families' builders) all build on it; it imports none of them."""

from __future__ import annotations

from dataclasses import dataclass

from safeeraser.models.registry import LLAVA_15_TEMPLATE

SPECIAL = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "<image>"}


@dataclass(frozen=True)
class TinySize:
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    vocab_size: int
    steps: int
    lr: float
    batch_per_view: int


SIZES = {
    # about 0.75M parameters: trains into vanilla behaviour in under two minutes on 2 CPU cores
    # (600 steps of 4 examples per view: the demo's whole study has to fit in 10 minutes)
    "tiny": TinySize(64, 16, 64, 2, 2, 128, 2, 4, 256, 1024, 600, 1.5e-3, 4),
    # about 100M parameters: for memory and speed measurements; its vanilla training is short
    "small": TinySize(128, 16, 384, 4, 6, 768, 12, 12, 2048, 2048, 40, 5e-4, 4),
}


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (any text encodes) trained on the dataset's own text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
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


def set_generation_ids(model, *, pad: int, eos, bos: int | None = None):
    """The ids ``generate`` pads with, stops on (one id or a list) and starts from."""
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = eos
    if bos is not None:
        model.generation_config.bos_token_id = bos
    return model


def _bpe_tokenizer(texts: list[str], vocab_size: int, special: tuple[str, ...]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def text_settings(size, vocab_size: int, *, pad: int, bos: int, eos: int, kv_heads: int | None = None) -> dict:
    """The decoder settings every tiny copy shares (widths, depths and ids from the size and tokenizer)."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=kv_heads or size.text_heads,
        max_position_embeddings=1024,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
    )
