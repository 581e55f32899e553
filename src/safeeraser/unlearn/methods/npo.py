"""Negative Preference Optimization: a bounded form of gradient ascent relative to the original model."""

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method


def loss(f, batches, settings):
    forget = batches["forget"]
    logits = f.logits(forget)
    logp = losses.sequence_logprob(logits, forget["labels"])
    ref_logp = losses.sequence_logprob(f.reference_logits(forget), forget["labels"])
    npo = losses.npo_loss(logp, ref_logp, settings.npo_beta)
    retain = f.nll(batches["retain"])
    forget_nll = losses.answer_nll(logits.detach(), forget["labels"])
    return {"loss": npo + retain, "npo": npo, "forget_nll": forget_nll, "retain_nll": retain}


METHOD = Method("npo", ("forget", "retain"), loss, pd_weight=1.0)
