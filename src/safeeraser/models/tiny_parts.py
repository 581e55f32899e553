"""What every family's tiny recipe shares: the size type, the recipe type, the byte-level BPE
tokenizer trained on the demo's texts, the decoder settings and the generation ids.

Each family module under ``models.families`` builds its tiny copy from these (its recipe beside
its registration); ``models.tiny`` trains any of them into vanilla behaviour. This module imports
no family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True, kw_only=True)
class TinySize:
    """One size of a tiny copy, by name: the vision tower, the decoder and the vanilla training.

    The first group every family has; the rest only the families whose architecture has them
    (None elsewhere, and left out of the record ``safeeraser.json`` keeps)."""

    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    vocab_size: int
    steps: int  # vanilla training steps
    lr: float  # vanilla training learning rate
    batch_per_view: int  # examples of each group per vanilla training step
    image_size: int | None = None  # images are resized to this side (at most this, for Qwen's dynamic grid)
    tile_size: int | None = None  # families that cut images into tiles: a tile's side
    max_tiles: int | None = None
    crop_size: int | None = None  # Idefics3 / SmolVLM: the side of the crops the tower reads
    scale_factor: int | None = None  # Idefics3 / SmolVLM: the connector's pixel shuffle
    image_tokens: int | None = None  # Gemma-3: the patch grid pooled to this many tokens
    text_kv_heads: int | None = None  # None: as many as text_heads
    head_dim: int | None = None
    mrope_section: tuple[int, ...] | None = None  # the Qwen family's M-RoPE: sums to half the head size
    vision_global_layers: int | None = None  # Mllama: gated global layers after the local ones
    cross_attention_layers: tuple[int, ...] | None = None  # Mllama: which decoder layers cross-attend

    def record(self) -> dict:
        """The fields this size sets, for the model's summary."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# The toy scale every tiny copy but LLaVA's is built at: a one-layer vision tower of width 32, a
# two-layer decoder of width 64, a 1024-token vocabulary, 400 vanilla steps (about 0.2 M parameters).
TOY = dict(
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    text_hidden=64,
    text_layers=2,
    text_heads=4,
    text_intermediate=128,
    vocab_size=1024,
    steps=400,
    lr=2e-3,
    batch_per_view=4,
)


def toy_size(**fields) -> TinySize:
    """A tiny size at the toy scale (``TOY``), with the family's own ``fields`` (which may override it)."""
    return TinySize(**(TOY | fields))


@dataclass(frozen=True)
class TinyRecipe:
    """How a family's tiny copy is built: ``build(texts, size, family)`` returns the untrained
    (processor, model) from the demo's texts (its tokenizer is trained on them); ``sizes`` are
    the sizes it can be built at, by name (``--size``)."""

    build: Callable[[list[str], TinySize, object], tuple[object, object]]
    sizes: Mapping[str, TinySize]


def bpe_tokenizer(texts: list[str], vocab_size: int, special: tuple[str, ...]):
    """A byte-level BPE tokenizer (any text encodes) trained on ``texts``, ``special`` tokens first."""
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


def pil_image_processor(name: str):
    """The image processor class ``name``, by its PIL backend where this transformers has one
    (no torchvision needed), else the class itself."""
    import transformers

    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def text_settings(size: TinySize, vocab_size: int, *, pad: int, bos: int, eos: int) -> dict:
    """The decoder settings every tiny copy shares (widths, depths and ids from the size and tokenizer)."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads or size.text_heads,
        max_position_embeddings=1024,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
    )


def chatml_text_settings(size: TinySize, tokenizer, **more) -> dict:
    """``text_settings`` for a ChatML tokenizer (Qwen's layout: ``<|endoftext|>`` pads and starts,
    ``<|im_end|>`` ends a turn), with the decoder's ``more`` settings."""
    pad, eos = tokenizer.convert_tokens_to_ids("<|endoftext|>"), tokenizer.convert_tokens_to_ids("<|im_end|>")
    return text_settings(size, len(tokenizer), pad=pad, bos=pad, eos=eos) | more


def set_generation_ids(model, *, pad: int, eos, bos: int | None = None):
    """The ids ``generate`` pads with, stops on (one id or a list) and starts from."""
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = eos
    if bos is not None:
        model.generation_config.bos_token_id = bos
    return model
