"""Prompt Decouple: also learn to answer the harmful question normally about a harmless image.

Without it a method learns "refuse these words"; with it, "refuse these words about this kind
of image" — which is what keeps SARR down.
"""

from safeeraser.unlearn.methods.base import Method, Objective, nll_term

SUFFIX = "+pd"  # X+pd is method X with the Prompt-Decouple term


def with_prompt_decouple(method: Method, settings) -> Objective:
    weight = method.pd_weight if settings.pd_weight is None else settings.pd_weight
    retain = method.pd_retain_weight if settings.pd_retain_weight is None else settings.pd_retain_weight
    terms = {**method.build(settings, retain), "decouple": nll_term("decouple", weight)}
    return Objective(
        method.name + SUFFIX, terms, pd_weight=weight, logs=(*method.logs, "decouple_nll"), prepare=method.prepare
    )
