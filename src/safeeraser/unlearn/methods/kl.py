"""KL minimisation: gradient ascent on forget, stay close to the original model on retain inputs.

Released: KL(original || current) averaged over every position of the retain sequence
(``method.kl_direction: forward``, ``method.kl_positions: sequence``); padding is left out here.
"""

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, nll_term


def retain_kl(f, retain, settings):
    if settings.kl_positions == "sequence":
        positions = retain["attention_mask"].bool()
    else:
        positions = losses.answer_positions(retain["labels"])
    kl = losses.kl_to_reference(f.logits(retain), f.reference_logits(retain), positions, settings.kl_direction)
    return {"loss": kl, "retain_kl": kl}


def terms(settings, retain_weight):
    kl = retain_kl if retain_weight == 1.0 else _weighted(retain_kl, retain_weight)
    return {"forget": nll_term("forget", -1.0), "retain": kl}


def _weighted(term, weight):
    def weighted(f, batch, settings):
        out = term(f, batch, settings)
        return {**out, "loss": weight * out["loss"]}

    return weighted


METHOD = Method("kl", terms, pd_weight=1.0)
