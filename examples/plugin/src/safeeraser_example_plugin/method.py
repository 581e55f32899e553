"""An example plugin method, ``gdscaled``: gradient difference whose retain term is scaled by a
setting of its own, ``method.gdscaled.retain_scale`` (``--set method.gdscaled.retain_scale=2``).

It imports ``safeeraser.unlearn.methods.base`` only: the methods package loads plugins while it
initialises. ``gdscaled+pd`` composes it with Prompt-Decouple like any built-in method.
"""

from __future__ import annotations

from pydantic import Field

from safeeraser.unlearn.methods.base import Method, Settings, nll_term


class GdScaledSettings(Settings):
    retain_scale: float = Field(1.0, gt=0, description="weight of the retain NLL against the forget ascent")


def terms(settings, retain_weight):
    scale = settings.gdscaled.retain_scale
    return {"forget": nll_term("forget", -1.0), "retain": nll_term("retain", retain_weight * scale)}


METHOD = Method(
    "gdscaled",
    terms,
    pd_weight=0.5,
    settings=GdScaledSettings,
    batches=("forget", "retain"),
    logs=("forget_nll", "retain_nll"),
    paper="an example plugin: gradient difference with a scaled retain term",
)
