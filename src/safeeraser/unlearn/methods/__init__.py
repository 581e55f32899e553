"""The unlearning methods by name: one module each, plus the Prompt-Decouple wrapper."""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.unlearn.methods import dpo, ga, gd, kl, npo, po, relearn, rmu, simnpo, undial, wga
from safeeraser.unlearn.methods.base import Forward, Method, Objective
from safeeraser.unlearn.methods.pd import SUFFIX as PD_SUFFIX
from safeeraser.unlearn.methods.pd import with_prompt_decouple

# The paper's methods first: the four in the released code (forget.py: ga, gd, kl, idk = po) and
# NPO, added here after its own paper (not in the released code); then those the unlearning
# literature compares against. Each is one module; the config's method.<name> sections come from here.
PUBLISHED = (ga.METHOD, gd.METHOD, kl.METHOD, po.METHOD, npo.METHOD)
ADDED = (simnpo.METHOD, dpo.METHOD, dpo.IDK_METHOD, rmu.METHOD, undial.METHOD, wga.METHOD)
BASE_METHODS: dict[str, Method] = {m.name: m for m in PUBLISHED + ADDED}
# Names used by the published code.
ALIASES = {"gapd": "ga+pd", "gdpd": "gd+pd", "klpd": "kl+pd", "popd": "po+pd", "npopd": "npo+pd", "idk": "po", "idkpd": "po+pd", "idk+dpo": "idkdpo", "idk+dpo+pd": "idkdpo+pd"}
# Those five, each with and without PD: the demo's default list.
METHOD_NAMES = tuple(name for m in PUBLISHED for name in (m.name, m.name + PD_SUFFIX))
# Every method this toolkit runs, each with and without PD.
ALL_METHOD_NAMES = tuple(name for base in BASE_METHODS for name in (base, base + PD_SUFFIX))
VANILLA = "vanilla"  # the model before unlearning: a row beside the methods' in the report, not a method
# Objectives the trainer runs that unlearn nothing: the audit's relearning attack. Not in the lists
# above (no study, demo, report or +PD variant offers them); canonical_name and get_method know them.
ATTACKS: dict[str, Method] = {relearn.METHOD.name: relearn.METHOD}


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "+").replace("-", "+")
    key = ALIASES.get(key, key)
    if key not in ALL_METHOD_NAMES and key not in ATTACKS:
        raise UserError(f"unknown method {name!r}: expected one of {', '.join(ALL_METHOD_NAMES)} (aliases: {', '.join(ALIASES)})")
    return key


def get_method(name: str, settings) -> Objective:
    """The method's objective under ``settings``: the ``method`` section of the config
    (``unlearn.config.resolve_config().method`` for the published defaults)."""
    key = canonical_name(name)
    if key in ATTACKS:
        return Objective(key, ATTACKS[key].build(settings, 1.0), logs=ATTACKS[key].logs)
    method = BASE_METHODS[key.removesuffix(PD_SUFFIX)]
    if key.endswith(PD_SUFFIX):
        return with_prompt_decouple(method, settings)
    return Objective(key, method.build(settings, 1.0), logs=method.logs)


__all__ = ["ALL_METHOD_NAMES", "ATTACKS", "BASE_METHODS", "Forward", "Method", "Objective", "METHOD_NAMES", "PD_SUFFIX", "VANILLA", "ALIASES", "canonical_name", "get_method"]
