"""KL minimisation: gradient ascent on forget, stay close to the original model on retain inputs.

Released: KL(original || current) averaged over every position of the retain sequence
(``method.kl_direction: forward``, ``method.kl_positions: sequence``); padding is left out here.
"""

from typing import Literal

from pydantic import Field

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings, nll_term


class KlSettings(Settings):
    direction: Literal["forward", "reverse"] = Field(
        "forward",
        description="forward = KL(original || current) (released) | reverse = KL(current || original); also method.kl_direction",
    )
    positions: Literal["sequence", "answer"] = Field(
        "sequence",
        description="sequence = every non-padding position of the retain example (released) | answer = answer tokens only; also method.kl_positions",
    )


def retain_kl(f, retain, settings):
    if settings.kl.positions == "sequence":
        positions = retain["attention_mask"].bool()
    else:
        positions = losses.answer_positions(retain["labels"])
    kl = losses.kl_to_reference(f.logits(retain), f.reference_logits(retain), positions, settings.kl.direction)
    return {"loss": kl, "retain_kl": kl}


def terms(settings, retain_weight):
    kl = retain_kl if retain_weight == 1.0 else _weighted(retain_kl, retain_weight)
    return {"forget": nll_term("forget", -1.0), "retain": kl}


def _weighted(term, weight):
    def weighted(f, batch, settings):
        out = term(f, batch, settings)
        return {**out, "loss": weight * out["loss"]}

    return weighted


METHOD = Method(
    "kl",
    terms,
    pd_weight=1.0,
    settings=KlSettings,
    batches=("forget", "retain"),
    logs=("forget_nll", "retain_kl"),
    paper="Maini et al. 2024, TOFU (KL minimisation), as released by SafeEraser (ACL Findings 2025)",
)
