"""UNDIAL: self-distillation from the original model with the answer token's logit lowered.

Dong et al. 2024, *UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in
Large Language Models*: at every answer position the target is the original model's
distribution with the harmful answer's token logit reduced by ``strength``; the current model is
trained toward it by cross-entropy. The target is bounded (unlike gradient ascent), so the model
moves its mass to the original's other choices instead of collapsing. Forget term only, as in
the paper and open-unlearning's default (no retain term).
"""

from pydantic import Field

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings


class UndialSettings(Settings):
    strength: float = Field(
        10.0, ge=0, description="how far the answer token's logit is lowered in the original's distribution"
    )


def forget_undial(f, forget, settings):
    logits = f.logits(forget)
    loss = losses.adjusted_teacher_ce(logits, f.reference_logits(forget), forget["labels"], settings.undial.strength)
    return {"loss": loss, "undial": loss, "forget_nll": losses.answer_nll(logits.detach(), forget["labels"])}


def terms(settings, retain_weight):
    return {"forget": forget_undial}


METHOD = Method(
    "undial",
    terms,
    pd_weight=1.0,
    settings=UndialSettings,
    batches=("forget",),
    logs=("undial", "forget_nll"),
    paper="Dong et al. 2024, UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
)
