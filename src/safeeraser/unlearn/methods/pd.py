"""Prompt Decouple: also learn to answer the harmful question normally about a harmless image.

Without it a method learns "refuse these words"; with it, "refuse these words about this kind
of image" — which is what keeps SARR down.
"""

from safeeraser.unlearn.methods.base import Method, nll_term


def with_prompt_decouple(method: Method, weight: float | None = None) -> Method:
    weight = method.pd_weight if weight is None else weight
    return Method(f"{method.name}+pd", {**method.terms, "decouple": nll_term("decouple", weight)}, pd_weight=weight)
