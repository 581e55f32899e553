"""Tiny copies of the families that split an image into crops or tiles: Idefics3, SmolVLM(2), InternVL,
LLaVA-OneVision.

Same recipe as ``models.tiny_families``: the real architecture at toy size from its config class,
a byte-level BPE tokenizer trained on the dataset's text plus the family's special tokens, the
family's image processor (its PIL backend, no ``torchvision`` needed) and chat template. Each
builder returns (processor, model, size).
"""

from __future__ import annotations

from dataclasses import dataclass

from safeeraser.models.registry import ModelFamily


@dataclass(frozen=True)
class CropSize:
    image_size: int  # an image's longest edge is resized to this before splitting
    crop_size: int  # the vision tower's input: crops (and the global image) of this side
    patch_size: int
    scale_factor: int  # the connector's pixel shuffle: (crop / patch)^2 / scale^2 tokens per crop
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


CROP_SIZES = {
    # 64-pixel images split into 2 x 2 crops of 32 plus the whole image at 32: 5 crops of 4 x 4
    # patches, shuffled 2 x 2 into 4 image tokens each (about 30 prompt tokens per image)
    "tiny": CropSize(64, 32, 8, 2, 32, 1, 2, 64, 2, 4, 128, 1024, 400, 2e-3, 4),
}

# The Idefics3 / SmolVLM control tokens (as their hub tokenizers name them) and the crop-grid tags.
IDEFICS3_TOKENS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>")
GRID_TAGS = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))


def idefics3_tokenizer(texts: list[str], vocab_size: int, *, bos: str, pad: str):
    """The hub layout: the template writes the first token (``bos``), ``<end_of_utterance>`` ends
    a turn (the instruct models' eos), the crop tags and image tokens are single special tokens."""
    from transformers import PreTrainedTokenizerFast

    from safeeraser.models.tiny_parts import _bpe_tokenizer

    tok = _bpe_tokenizer(texts, vocab_size, (pad, bos, *IDEFICS3_TOKENS, *GRID_TAGS))
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


def build_idefics3(texts: list[str], size_name: str, family: ModelFamily):
    """An Idefics3 (as Idefics3-8B / SmolVLM): SigLIP-style tower over crops, pixel-shuffle
    connector, Llama decoder; the real ``Idefics3Processor`` (it needs no video processor)."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor

    size = CROP_SIZES[size_name]
    tokenizer = idefics3_tokenizer(
        texts + ["User: Assistant:"] * 50, size.vocab_size, bos="<|begin_of_text|>", pad="<|end_of_text|>"
    )
    processor = Idefics3Processor(
        image_processor=_crop_image_processor("Idefics3", size),
        tokenizer=tokenizer,
        image_seq_len=_image_seq_len(size),
        chat_template=family.chat_template,
    )
    model = _crop_model(Idefics3Config, Idefics3ForConditionalGeneration, tokenizer, size)
    return processor, model, size


def build_smolvlm(texts: list[str], size_name: str, family: ModelFamily):
    """A SmolVLM2: the Idefics3 architecture under its own classes. ``SmolVLMProcessor`` needs a
    video processor (``torchvision``) and ``num2words``, so the copy carries its parts (tokenizer,
    image processor, template, ``image_seq_len`` in processor_config.json) as the hub folder does."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    from safeeraser.models.parts import PartsProcessor

    size = CROP_SIZES[size_name]
    tokenizer = idefics3_tokenizer(
        texts + ["User: Assistant:"] * 50, size.vocab_size, bos="<|im_start|>", pad="<|im_end|>"
    )
    settings = {"processor_class": "SmolVLMProcessor", "image_seq_len": _image_seq_len(size)}
    processor = PartsProcessor(
        tokenizer, _crop_image_processor("SmolVLM", size), family.chat_template, family.image_token, settings
    )
    model = _crop_model(SmolVLMConfig, SmolVLMForConditionalGeneration, tokenizer, size)
    return processor, model, size


def _image_seq_len(size: CropSize) -> int:
    return (size.crop_size // size.patch_size) ** 2 // size.scale_factor**2


def _crop_image_processor(prefix: str, size: CropSize):
    import transformers

    try:  # the PIL backend by name where this transformers has it (no torchvision needed)
        cls = getattr(transformers, f"{prefix}ImageProcessorPil")
    except AttributeError:
        cls = getattr(transformers, f"{prefix}ImageProcessor")
    return cls(
        size={"longest_edge": size.image_size}, max_image_size={"longest_edge": size.crop_size}, do_image_splitting=True
    )


def _crop_model(config_class, model_class, tokenizer, size: CropSize):
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
    from safeeraser.models.tiny_parts import text_settings

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
    model.generation_config.pad_token_id = ids[tokenizer.pad_token]
    model.generation_config.eos_token_id = ids["<end_of_utterance>"]
    model.generation_config.bos_token_id = ids[tokenizer.bos_token]
    return model


# --- InternVL: dynamic tiling ---------------------------------------------------------------


@dataclass(frozen=True)
class TileSize:
    tile: int  # the tile side (and the vision tower's input)
    max_tiles: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vocab_size: int
    steps: int
    lr: float
    batch_per_view: int


TILE_SIZES = {
    # 32-pixel tiles (at most 4, plus a thumbnail) of 4 x 4 patches, pixel-shuffled 2 x 2 into 4
    # tokens per tile: a 64-pixel image is 2 x 2 tiles + thumbnail, 20 image tokens
    "tiny": TileSize(32, 4, 8, 32, 1, 2, 64, 2, 4, 2, 128, 1024, 400, 2e-3, 4),
}

# InternVL's control tokens (its -hf tokenizers: Qwen2.5's ChatML tokens plus the image tags).
INTERNVL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")


def build_internvl(texts: list[str], size_name: str, family: ModelFamily):
    """An InternVL (as InternVL3-*-hf): InternViT tower over tiles, pixel-shuffle MLP projector,
    Qwen2 decoder. ``InternVLProcessor`` loads with a video processor (torchvision), so the copy
    carries its parts (tokenizer, GOT-OCR2 image processor with tiling, template, image_seq_length)."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration, PreTrainedTokenizerFast

    from safeeraser.models.parts import PartsProcessor
    from safeeraser.models.tiny_parts import _bpe_tokenizer

    size = TILE_SIZES[size_name]
    tok = _bpe_tokenizer(texts + ["system user assistant"] * 50, size.vocab_size, INTERNVL_TOKENS)
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
    seq = (size.tile // size.patch_size) ** 2 // 4  # downsample_ratio 0.5 on each side
    settings = {"processor_class": "InternVLProcessor", "image_seq_length": seq}
    processor = PartsProcessor(
        tokenizer, _tile_image_processor(size), family.chat_template, family.image_token, settings
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in INTERNVL_TOKENS}
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=[size.tile, size.tile],
        patch_size=[size.patch_size, size.patch_size],
    )
    from safeeraser.models.tiny_parts import text_settings

    text = dict(
        model_type="qwen2",
        **text_settings(
            size,
            len(tokenizer),
            pad=ids["<|endoftext|>"],
            bos=ids["<|endoftext|>"],
            eos=ids["<|im_end|>"],
            kv_heads=size.text_kv_heads,
        ),
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=seq,
        downsample_ratio=0.5,
    )
    model = InternVLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    return processor, model, size


def _tile_image_processor(size: TileSize):
    import transformers

    try:  # the PIL backend by name where this transformers has it (no torchvision needed)
        cls = transformers.GotOcr2ImageProcessorPil
    except AttributeError:
        cls = transformers.GotOcr2ImageProcessor
    return cls(
        crop_to_patches=True, min_patches=1, max_patches=size.max_tiles, size={"height": size.tile, "width": size.tile}
    )


# --- LLaVA-OneVision: anyres tiles with unpadding and new-line tokens -------------------------

ONEVISION_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
ONEVISION_SIZES = {
    # 32-pixel tiles of 2 x 2 patches: a 64-pixel image is 2 x 2 tiles (4 x 4 features, a new line
    # per row) and the whole image (4): 24 image tokens
    "tiny": TileSize(32, 4, 16, 32, 1, 2, 64, 2, 4, 2, 128, 1024, 400, 2e-3, 4),
}


def build_llava_onevision(texts: list[str], size_name: str, family: ModelFamily):
    """A LLaVA-OneVision: SigLIP tower, projector, Qwen2 decoder, anyres tiles (grid pinpoints up to
    2 x 2 tiles) with the learned new-line embedding. ``LlavaOnevisionProcessor`` needs a video
    processor (torchvision), so the copy carries its parts and the processor's settings."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

    from safeeraser.models.parts import PartsProcessor
    from safeeraser.models.tiny_parts import _bpe_tokenizer

    size = ONEVISION_SIZES[size_name]
    tok = _bpe_tokenizer(texts + ["system user assistant"] * 50, size.vocab_size, ONEVISION_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        padding_side="left",
    )
    side = size.tile
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    import transformers

    image_cls = (
        getattr(transformers, "LlavaOnevisionImageProcessorPil", None) or transformers.LlavaOnevisionImageProcessor
    )
    image_processor = image_cls(
        size={"height": side, "width": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    settings = {
        "processor_class": "LlavaOnevisionProcessor",
        "num_image_tokens": (side // size.patch_size) ** 2,
        "vision_feature_select_strategy": "full",
        "vision_aspect_ratio": "anyres_max_9",
    }
    processor = PartsProcessor(tokenizer, image_processor, family.chat_template, family.image_token, settings)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ONEVISION_TOKENS}
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=side,
        patch_size=size.patch_size,
    )
    from safeeraser.models.tiny_parts import text_settings

    text = dict(
        model_type="qwen2",
        **text_settings(
            size,
            len(tokenizer),
            pad=ids["<|endoftext|>"],
            bos=ids["<|endoftext|>"],
            eos=ids["<|im_end|>"],
            kv_heads=size.text_kv_heads,
        ),
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    return processor, model, size


TILED_BUILDERS = {
    "idefics3": build_idefics3,
    "smolvlm": build_smolvlm,
    "internvl": build_internvl,
    "llava_onevision": build_llava_onevision,
}
