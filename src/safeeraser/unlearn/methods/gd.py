"""Gradient Difference: gradient ascent on forget plus ordinary training on retain."""

from safeeraser.unlearn.methods.base import Method, nll_term


def terms(settings, retain_weight):
    return {"forget": nll_term("forget", -1.0), "retain": nll_term("retain", retain_weight)}


# Released GD+PD: -NLL(forget) + 0.5 NLL(retain) + 0.5 NLL(decouple).
METHOD = Method(
    "gd",
    terms,
    pd_weight=0.5,
    pd_retain_weight=0.5,
    batches=("forget", "retain"),
    logs=("forget_nll", "retain_nll"),
    paper="Liu et al. 2022, Continual Learning and Private Unlearning",
)
