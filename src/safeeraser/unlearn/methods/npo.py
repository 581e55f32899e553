"""Negative Preference Optimization: a bounded form of gradient ascent relative to the original model."""

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, nll_term


def forget_npo(f, forget, settings):
    logits = f.logits(forget)
    logp = losses.sequence_logprob(logits, forget["labels"])
    ref_logp = losses.sequence_logprob(f.reference_logits(forget), forget["labels"])
    npo = losses.npo_loss(logp, ref_logp, settings.npo_beta)
    forget_nll = losses.answer_nll(logits.detach(), forget["labels"])
    return {"loss": npo, "npo": npo, "forget_nll": forget_nll}


def terms(settings, retain_weight):
    return {"forget": forget_npo, "retain": nll_term("retain", retain_weight)}


METHOD = Method("npo", terms, pd_weight=1.0)
