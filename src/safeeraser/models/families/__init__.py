"""The model families: which family a checkpoint belongs to, and everything that differs between them.

A model is found by the ``model_type`` in its ``config.json``; a family is named by that
``model_type`` string. Each family is one module here that declares one ``ModelFamily``
(``FAMILY``): the ``transformers`` model and processor classes, how a prompt is built (the
processor's own chat template; ``chat_template`` is only the fallback for checkpoints saved
without one), how the answer joins the prompt and which token ends the assistant's turn, how many
placeholder tokens one image needs, which image inputs the model takes, the LoRA targets, the
projector, the system sentence and, optionally, its tiny copy's recipe. The codec, trainer,
methods and generation read these and nothing else.

Adding a family: one module with its ``FAMILY`` and one line below, or, from another package, an
entry point in the group ``safeeraser.families`` (docs/families.md, "Adding a family").
"""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.models.families import (
    gemma3,
    idefics3,
    internvl,
    llava,
    llava_next,
    llava_onevision,
    mllama,
    qwen2_5_vl,
    qwen2_vl,
    qwen3_vl,
    smolvlm,
)
from safeeraser.models.family import ModelFamily
from safeeraser.registry import Registry

FAMILIES: Registry[ModelFamily] = Registry("model family", "safeeraser.families", ModelFamily)
for _module in (
    llava,
    llava_next,
    llava_onevision,
    qwen2_vl,
    qwen2_5_vl,
    qwen3_vl,
    mllama,
    internvl,
    gemma3,
    idefics3,
    smolvlm,
):
    FAMILIES.register(_module.FAMILY)

# The family a command assumes when none is named: LLaVA-1.5, the paper's.
DEFAULT_FAMILY = llava.FAMILY.name

ADDING_A_FAMILY = 'docs/families.md, "Adding a family"'


def registered() -> str:
    return ", ".join(FAMILIES)


def family_named(name: str, where: str = "--family") -> ModelFamily:
    """The family called ``name`` (a transformers model_type string)."""
    if name in FAMILIES:
        return FAMILIES[name]
    raise UserError(
        f"{where}: unknown model family {name!r} (registered: {registered()}; to add one see {ADDING_A_FAMILY})"
    )


def family_for(model_type: str, where: str) -> ModelFamily:
    """The family whose ``model_types`` include ``model_type`` (read from a checkpoint's config.json)."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise UserError(
        f"{where}: unsupported model_type {model_type!r} (registered: {registered()}; to add one see {ADDING_A_FAMILY})"
    )


def tiny_families() -> tuple[str, ...]:
    """The families with a tiny copy (a recipe ``make-tiny`` and the demo can build)."""
    return tuple(name for name, family in FAMILIES.items() if family.tiny is not None)
