"""Tiny copies of other model families: the real architecture at toy size, from its config class.

Each builder returns (processor, model) for ``make_tiny``: a byte-level BPE tokenizer trained on
the dataset's text plus the family's own special tokens, the family's image processor and chat
template, and the family's ``transformers`` model class. Saved with ``save_pretrained``, the
copy loads by the same path as the hub checkpoint (the family's model class, and
``AutoProcessor`` where ``torchvision`` imports; ``models.parts`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from safeeraser.models.parts import PartsProcessor
from safeeraser.models.registry import QWEN_VL_TEMPLATE, ModelFamily
from safeeraser.models.tiny_parts import _bpe_tokenizer, set_generation_ids, text_settings  # noqa: F401  (re-read by older imports)

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


@dataclass(frozen=True)
class QwenSize:
    image_size: int  # images are resized to at most image_size x image_size pixels
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]  # sums to half the text head size
    vocab_size: int
    steps: int
    lr: float
    batch_per_view: int


QWEN_SIZES = {
    # 64 x 64 images: 8 x 8 patches of 8 pixels, merged 2 x 2 into 16 image tokens (as the tiny LLaVA)
    "tiny": QwenSize(64, 8, 32, 1, 2, 64, 2, 4, 2, 128, (2, 3, 3), 1024, 400, 2e-3, 4),
}


def pil_image_processor(name: str):
    """The image processor class ``name``, by its PIL backend where this transformers has one
    (no torchvision needed), else the class itself."""
    import transformers

    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def qwen_tokenizer(texts: list[str], vocab_size: int):
    """Qwen's layout: no BOS, ``<|im_end|>`` ends a turn (the instruct models' eos), ``<|endoftext|>`` pads."""
    from transformers import PreTrainedTokenizerFast

    tok = _bpe_tokenizer(texts, vocab_size, QWEN_SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        padding_side="left",
    )


def qwen_corpus_extra() -> list[str]:
    return ["system user assistant"] + [QWEN_DEFAULT_SYSTEM] * 500


def build_qwen2_5_vl(texts: list[str], size_name: str, family: ModelFamily):
    """A Qwen2.5-VL: its window-attention vision tower and patch merger, and a Qwen2 decoder with M-RoPE."""
    return _build_qwen(texts, size_name, family, version="2.5")


def build_qwen2_vl(texts: list[str], size_name: str, family: ModelFamily):
    """A Qwen2-VL: its vision tower (full attention, LayerNorm) and patch merger, and a Qwen2 decoder with M-RoPE."""
    return _build_qwen(texts, size_name, family, version="2")


def _build_qwen(texts: list[str], size_name: str, family: ModelFamily, *, version: str):
    import transformers

    size = QWEN_SIZES[size_name]
    tokenizer = qwen_tokenizer(texts + qwen_corpus_extra(), size.vocab_size)
    image_processor = _qwen_image_processor(size)
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
    text = dict(
        **text_settings(
            size,
            len(tokenizer),
            pad=ids["<|endoftext|>"],
            bos=ids["<|endoftext|>"],
            eos=ids["<|im_end|>"],
            kv_heads=size.text_kv_heads,
        ),
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
    return processor, set_generation_ids(model, pad=ids["<|endoftext|>"], eos=ids["<|im_end|>"]), size


def _qwen_image_processor(size: QwenSize):
    ImageProcessor = pil_image_processor("Qwen2VLImageProcessor")
    pixels = size.image_size * size.image_size
    return ImageProcessor(
        min_pixels=pixels // 4, max_pixels=pixels, patch_size=size.patch_size, merge_size=2, temporal_patch_size=2
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


@dataclass(frozen=True)
class GemmaSize:
    image_size: int
    patch_size: int
    image_tokens: int  # mm_tokens_per_image: the patch grid average-pooled to a square of this many
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    head_dim: int
    text_intermediate: int
    vocab_size: int
    steps: int
    lr: float
    batch_per_view: int


GEMMA_SIZES = {
    # 64 x 64 images: a SigLIP tower over 8 x 8 patches, pooled to 16 image tokens (as the tiny LLaVA)
    "tiny": GemmaSize(64, 8, 16, 32, 1, 2, 64, 2, 4, 2, 16, 128, 1024, 400, 2e-3, 4),
}


def gemma_tokenizer(texts: list[str], vocab_size: int):
    """Gemma's layout: the template writes ``<bos>``, ``<end_of_turn>`` ends a turn, images are
    ``<start_of_image>`` soft tokens ``<end_of_image>``."""
    from transformers import PreTrainedTokenizerFast

    tok = _bpe_tokenizer(texts, vocab_size, GEMMA_SPECIAL)
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


def build_gemma3(texts: list[str], size_name: str, family: ModelFamily):
    """A Gemma-3: SigLIP vision tower, pooled projector, Gemma-3 decoder (sliding + global layers)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig

    from safeeraser.models.registry import GEMMA3_TEMPLATE

    size = GEMMA_SIZES[size_name]
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
        **text_settings(
            size, len(tokenizer), pad=ids["<pad>"], bos=ids["<bos>"], eos=ids["<eos>"], kv_heads=size.text_kv_heads
        ),
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
        size,
    )


def build_llava_next(texts: list[str], size_name: str, family: ModelFamily):
    """A LLaVA-1.6 (NeXT): the tiny LLaVA's CLIP tower, projector and Llama decoder, with anyres
    (each image seen whole and as tiles of a grid pinpoint, plus a learned row-end embedding)."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor

    from safeeraser.models.tiny_parts import (
        SIZES,
        SPECIAL,
        clip_vision_config,
        llama_text_config,
        llava_processor_settings,
        train_tokenizer,
    )

    size = SIZES[size_name]
    tokenizer = train_tokenizer(texts + ["USER: ASSISTANT:"], size.vocab_size)
    side = size.image_size
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side]]
    image_processor = pil_image_processor("LlavaNextImageProcessor")(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, **llava_processor_settings(size)
    )
    config = LlavaNextConfig(
        vision_config=clip_vision_config(size),
        text_config=llama_text_config(tokenizer, size),
        image_token_index=tokenizer.convert_tokens_to_ids(SPECIAL["image"]),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(side // size.patch_size) ** 2,
    )
    model = LlavaNextForConditionalGeneration(config)
    return (
        processor,
        set_generation_ids(model, pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id, bos=tokenizer.bos_token_id),
        size,
    )


BUILDERS = {
    "llava_next": build_llava_next,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "gemma3": build_gemma3,
}


# --- families that split images into crops or tiles (models.tiny_tiled) ---------------------
from safeeraser.models.tiny_tiled import TILED_BUILDERS  # noqa: E402

BUILDERS.update(TILED_BUILDERS)


# --- Llama-3.2-Vision (mllama) --------------------------------------------------------------

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


@dataclass(frozen=True)
class MllamaSize:
    tile_size: int  # images are cut into up to max_tiles tiles of tile_size x tile_size pixels
    max_tiles: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_global_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    cross_attention_layers: tuple[int, ...]  # which decoder layers are cross-attention layers
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vocab_size: int
    steps: int
    lr: float
    batch_per_view: int


MLLAMA_SIZES = {
    # tiles of 32 x 32 pixels (4 x 4 patches of 8), up to 4 tiles per image (the hub's tiling, at toy
    # size): a 64 x 64 picture is 2 x 2 tiles; a decoder of 3 layers, the middle one cross-attention
    "tiny": MllamaSize(32, 4, 8, 32, 2, 1, 2, 64, 3, (1,), 4, 2, 128, 1024, 400, 2e-3, 4),
}


def mllama_tokenizer(texts: list[str], vocab_size: int):
    """Llama 3's layout: the tokenizer adds ``<|begin_of_text|>`` (the template writes it too, and the
    codec then adds none), ``<|eot_id|>`` ends a turn (the instruct models' eos), one ``<|image|>`` per image."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = _bpe_tokenizer(texts, vocab_size, MLLAMA_SPECIAL)
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


def build_mllama(texts: list[str], size_name: str, family: ModelFamily):
    """A Llama-3.2-Vision: the tiled vision encoder (local and gated global layers, aspect-ratio
    embeddings, intermediate layers concatenated), the linear projector, and a Llama decoder with
    gated cross-attention layers that read the image through ``cross_attention_mask``."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor

    from safeeraser.models.registry import MLLAMA_TEMPLATE

    size = MLLAMA_SIZES[size_name]
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
            kv_heads=size.text_kv_heads,
        ),
        cross_attention_layers=list(size.cross_attention_layers),
    )
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids["<|image|>"])
    model = MllamaForConditionalGeneration(config)
    eos = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    return (
        processor,
        set_generation_ids(model, pad=ids["<|finetune_right_pad_id|>"], eos=eos, bos=ids["<|begin_of_text|>"]),
        size,
    )


BUILDERS["mllama"] = build_mllama


# --- Qwen3-VL -------------------------------------------------------------------------------


def build_qwen3_vl(texts: list[str], size_name: str, family: ModelFamily):
    """A Qwen3-VL: its vision tower (learned position embeddings interpolated to the grid, DeepStack
    features from an inner layer added to the decoder's first layers) and patch merger, and a Qwen3
    decoder (QK-norm) with interleaved M-RoPE."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from safeeraser.models.registry import QWEN3_VL_TEMPLATE

    size = QWEN_SIZES[size_name]
    tokenizer = qwen_tokenizer(texts + ["system user assistant"] * 50, size.vocab_size)
    processor = PartsProcessor(tokenizer, _qwen_image_processor(size), QWEN3_VL_TEMPLATE, family.image_token)
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
    text = dict(
        **text_settings(
            size,
            len(tokenizer),
            pad=ids["<|endoftext|>"],
            bos=ids["<|endoftext|>"],
            eos=ids["<|im_end|>"],
            kv_heads=size.text_kv_heads,
        ),
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
    return processor, set_generation_ids(model, pad=ids["<|endoftext|>"], eos=ids["<|im_end|>"]), size


BUILDERS["qwen3_vl"] = build_qwen3_vl
