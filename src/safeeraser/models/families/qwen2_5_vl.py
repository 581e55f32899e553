"""Qwen2.5-VL (``qwen2_5_vl``) and its tiny copy: its window-attention vision tower and patch merger, and a Qwen2 decoder with M-RoPE."""

from __future__ import annotations

from safeeraser.models.families._qwen import QWEN_VL, SIZES, build_qwen
from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.tiny_parts import TinyRecipe, TinySize


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A tiny Qwen2.5-VL."""
    return build_qwen(texts, size, family, version="2.5")


FAMILY = ModelFamily(
    name="qwen2_5_vl",
    status=TESTED,
    label="Qwen2.5-VL",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    hub_ids=(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "Qwen/Qwen2.5-VL-32B-Instruct",
        "Qwen/Qwen2.5-VL-72B-Instruct",
    ),
    tiny=TinyRecipe(build, SIZES),
    **QWEN_VL,
)
