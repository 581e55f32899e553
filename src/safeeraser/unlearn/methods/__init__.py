"""The unlearning methods by name: one module each, plus the Prompt-Decouple wrapper.

``METHODS`` is the registry (``safeeraser.registry``): the built-in methods, then any plugin's,
registered through the entry-point group ``safeeraser.methods`` (one ``Method`` each; a plugin
module imports ``safeeraser.unlearn.methods.base``, not this package, which loads it).
"""

from __future__ import annotations

from dataclasses import replace

from safeeraser.errors import UserError
from safeeraser.registry import Registry
from safeeraser.unlearn.methods import (
    dpo,
    ga,
    gd,
    kl,
    mmunlearner,
    npo,
    po,
    relearn,
    rmu,
    simnpo,
    sineproject,
    undial,
    wga,
)
from safeeraser.unlearn.methods.base import Forward, Method, Objective
from safeeraser.unlearn.methods.pd import SUFFIX as PD_SUFFIX
from safeeraser.unlearn.methods.pd import with_prompt_decouple

# The paper's methods first: the four in the released code (forget.py: ga, gd, kl, idk = po) and
# NPO, added here after its own paper (not in the released code); then those the unlearning
# literature compares against. Each is one module; the config's method.<name> sections come from here.
PUBLISHED = (ga.METHOD, gd.METHOD, kl.METHOD, po.METHOD, npo.METHOD)
ADDED = (simnpo.METHOD, dpo.METHOD, dpo.IDK_METHOD, rmu.METHOD, undial.METHOD, wga.METHOD, mmunlearner.METHOD)
METHODS: Registry[Method] = Registry("method", "safeeraser.methods", Method)
for _method in PUBLISHED + ADDED:
    METHODS.register(_method)
BASE_METHODS = METHODS  # name -> Method, plugins' included (read once, here)
# Settings sections that are no method of their own: SineProject's, which any method may take (X+sineproject).
EXTRA_SETTINGS = {"sineproject": sineproject.SineProjectSettings}
SINE_SUFFIX = sineproject.SUFFIX
# Names used by the published code; "sineproject" alone is its paper's headline, PO+PD with it.
ALIASES = {
    "sineproject": sineproject.HEADLINE,
    "gapd": "ga+pd",
    "gdpd": "gd+pd",
    "klpd": "kl+pd",
    "popd": "po+pd",
    "npopd": "npo+pd",
    "idk": "po",
    "idkpd": "po+pd",
    "idk+dpo": "idkdpo",
    "idk+dpo+pd": "idkdpo+pd",
}
# Those five, each with and without PD: the demo's default list.
METHOD_NAMES = tuple(name for m in PUBLISHED for name in (m.name, m.name + PD_SUFFIX))
# Every method this toolkit lists (tables, the demo's other methods), each with and without PD, then
# SineProject on PO and PO+PD as its paper runs it. Any method takes +sineproject (X+sineproject, X+pd+sineproject).
ALL_METHOD_NAMES = (
    *(name for base in BASE_METHODS for name in (base, base + PD_SUFFIX)),
    po.METHOD.name + SINE_SUFFIX,
    sineproject.HEADLINE,
)
VANILLA = "vanilla"  # the model before unlearning: a row beside the methods' in the report, not a method
# Objectives the trainer runs that unlearn nothing: the audit's relearning attack. Not in the lists
# above (no study, demo, report or +PD variant offers them); canonical_name and get_method know them.
ATTACKS: dict[str, Method] = {relearn.METHOD.name: relearn.METHOD}


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "+").replace("-", "+")
    key = ALIASES.get(key, key)
    if key in ATTACKS:
        return key
    sine = key.endswith(SINE_SUFFIX) or (SINE_SUFFIX + PD_SUFFIX) in key  # x+sineproject+pd reads as x+pd+sineproject
    if sine:
        key = key.replace(SINE_SUFFIX, "")
        key = ALIASES.get(key, key)
    known = key in ALL_METHOD_NAMES and SINE_SUFFIX not in key
    if not known:
        raise UserError(
            f"unknown method {name!r}: expected one of {', '.join(ALL_METHOD_NAMES)}, or any method with {SINE_SUFFIX} (aliases: {', '.join(ALIASES)})"
        )
    return key + SINE_SUFFIX if sine else key


def get_method(name: str, settings) -> Objective:
    """The method's objective under ``settings``: the ``method`` section of the config
    (``unlearn.config.resolve_config().method`` for the published defaults)."""
    key = canonical_name(name)
    if key in ATTACKS:
        return Objective(key, ATTACKS[key].build(settings, 1.0), logs=ATTACKS[key].logs)
    plain = key.removesuffix(SINE_SUFFIX)
    method = BASE_METHODS[plain.removesuffix(PD_SUFFIX)]
    if plain.endswith(PD_SUFFIX):
        objective = with_prompt_decouple(method, settings)
    else:
        objective = Objective(plain, method.build(settings, 1.0), logs=method.logs, prepare=method.prepare)
    if key.endswith(SINE_SUFFIX):  # the projector frozen, with SineProject's bounded update added
        return replace(objective, name=key, projector="sine")
    return objective


__all__ = [
    "ALL_METHOD_NAMES",
    "ATTACKS",
    "BASE_METHODS",
    "METHODS",
    "EXTRA_SETTINGS",
    "SINE_SUFFIX",
    "Forward",
    "Method",
    "Objective",
    "METHOD_NAMES",
    "PD_SUFFIX",
    "VANILLA",
    "ALIASES",
    "canonical_name",
    "get_method",
]
