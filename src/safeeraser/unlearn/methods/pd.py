"""Prompt Decouple: also learn to answer the harmful question normally about a harmless image.

Without it a method learns "refuse these words"; with it, "refuse these words about this kind
of image" — which is what keeps SARR down.
"""

from safeeraser.unlearn.methods.base import Method


def with_prompt_decouple(method: Method, weight: float | None = None) -> Method:
    weight = method.pd_weight if weight is None else weight

    def loss(f, batches, settings):
        terms = method.loss(f, batches, settings)
        decouple = f.nll(batches["decouple"])
        terms["decouple_nll"] = decouple
        terms["loss"] = terms["loss"] + weight * decouple
        return terms

    return Method(f"{method.name}+pd", method.views + ("decouple",), loss, pd_weight=weight)
