"""WGA: gradient ascent with each answer token weighted by its own (detached) probability^beta.

Wang et al. 2025, *Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond*
(ICLR 2025): -mean over forget answer tokens of p(token)^beta x NLL(token), plus NLL(retain).
Tokens the model has already made unlikely weigh little, so ascent stops pushing them toward
infinity — the failure that makes plain GA collapse.
"""

from pydantic import Field

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings, nll_term


class WgaSettings(Settings):
    beta: float = Field(1.0, ge=0, description="exponent of the token weight p(token)^beta (0: plain gradient ascent)")


def forget_wga(f, forget, settings):
    logits = f.logits(forget)
    loss = losses.weighted_ascent(logits, forget["labels"], settings.wga.beta)
    return {"loss": loss, "wga": loss, "forget_nll": losses.answer_nll(logits.detach(), forget["labels"])}


def terms(settings, retain_weight):
    return {"forget": forget_wga, "retain": nll_term("retain", retain_weight)}


METHOD = Method(
    "wga",
    terms,
    pd_weight=1.0,
    settings=WgaSettings,
    batches=("forget", "retain"),
    logs=("wga", "forget_nll", "retain_nll"),
    paper="Wang et al. 2025, Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond",
)
