"""Gradient Ascent: push the harmful answers' likelihood down. Nothing holds the rest in place."""

from safeeraser.unlearn.methods.base import Method, nll_term


def terms(settings, retain_weight):
    return {"forget": nll_term("forget", -1.0)}


METHOD = Method(
    "ga",
    terms,
    pd_weight=0.5,
    batches=("forget",),
    logs=("forget_nll",),
    paper="Jang et al. 2023, Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
)
