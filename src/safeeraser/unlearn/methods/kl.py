"""KL minimisation: gradient ascent on forget, stay close to the original model on retain inputs."""

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, nll_term


def retain_kl(f, retain, settings):
    kl = losses.answer_kl(f.logits(retain), f.reference_logits(retain), retain["labels"])
    return {"loss": kl, "retain_kl": kl}


METHOD = Method("kl", {"forget": nll_term("forget", -1.0), "retain": retain_kl}, pd_weight=1.0)
