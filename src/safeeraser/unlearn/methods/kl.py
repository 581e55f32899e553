"""KL minimisation: gradient ascent on forget, stay close to the original model on retain inputs."""

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method


def loss(f, batches, settings):
    forget = f.nll(batches["forget"])
    retain = batches["retain"]
    kl = losses.answer_kl(f.logits(retain), f.reference_logits(retain), retain["labels"])
    return {"loss": -forget + kl, "forget_nll": forget, "retain_kl": kl}


METHOD = Method("kl", ("forget", "retain"), loss, pd_weight=1.0)
