"""Negative Preference Optimization: a bounded form of gradient ascent relative to the original model.

Not in the released SafeEraser code (no branch in forget.py): added after Zhang et al. 2024, with
that paper's beta; its PD weight (1.0) is ours."""

from pydantic import Field

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings, nll_term


class NpoSettings(Settings):
    beta: float = Field(
        0.1,
        gt=0,
        description="inverse temperature of the log-ratio to the original model (0.1, the NPO paper's value); also method.npo_beta",
    )


def forget_npo(f, forget, settings):
    logits = f.logits(forget)
    logp = losses.sequence_logprob(logits, forget["labels"])
    ref_logp = losses.sequence_logprob(f.reference_logits(forget), forget["labels"])
    npo = losses.npo_loss(logp, ref_logp, settings.npo.beta)
    forget_nll = losses.answer_nll(logits.detach(), forget["labels"])
    return {"loss": npo, "npo": npo, "forget_nll": forget_nll}


def terms(settings, retain_weight):
    return {"forget": forget_npo, "retain": nll_term("retain", retain_weight)}


METHOD = Method(
    "npo",
    terms,
    pd_weight=1.0,
    settings=NpoSettings,
    batches=("forget", "retain"),
    logs=("npo", "forget_nll", "retain_nll"),
    paper="Zhang et al. 2024, Negative Preference Optimization",
)
