"""Qwen2-VL (``qwen2_vl``) and its tiny copy: its vision tower (full attention, LayerNorm) and patch merger, and a Qwen2 decoder with M-RoPE."""

from __future__ import annotations

from safeeraser.models.families._qwen import QWEN_VL, SIZES, build_qwen
from safeeraser.models.family import TESTED, ModelFamily
from safeeraser.models.tiny_parts import TinyRecipe, TinySize


def build(texts: list[str], size: TinySize, family: ModelFamily):
    """A tiny Qwen2-VL."""
    return build_qwen(texts, size, family, version="2")


FAMILY = ModelFamily(
    name="qwen2_vl",
    status=TESTED,
    label="Qwen2-VL",
    model_types=("qwen2_vl",),
    model_class="Qwen2VLForConditionalGeneration",
    hub_ids=("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-72B-Instruct"),
    tiny=TinyRecipe(build, SIZES),
    **QWEN_VL,
)
