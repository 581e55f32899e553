"""SimNPO: NPO without the reference model, on the length-normalised likelihood, with a margin.

Fan et al. 2024, *Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning*: -(2/beta) log sigmoid(-(beta/|y|) log p(y|x) - gamma) on forget, plus NLL(retain).
Dividing by the answer's length stops long answers from dominating; no forward pass with the
adapter off is needed.
"""

from pydantic import Field

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings, nll_term


class SimNpoSettings(Settings):
    beta: float = Field(2.5, gt=0, description="inverse temperature of the length-normalised log-likelihood")
    gamma: float = Field(0.0, ge=0, description="reward margin gamma (0: the paper's usual choice)")


def forget_simnpo(f, forget, settings):
    logits = f.logits(forget)
    loss = losses.simnpo_loss(
        losses.sequence_mean_logprob(logits, forget["labels"]), settings.simnpo.beta, settings.simnpo.gamma
    )
    return {"loss": loss, "simnpo": loss, "forget_nll": losses.answer_nll(logits.detach(), forget["labels"])}


def terms(settings, retain_weight):
    return {"forget": forget_simnpo, "retain": nll_term("retain", retain_weight)}


METHOD = Method(
    "simnpo",
    terms,
    pd_weight=1.0,
    settings=SimNpoSettings,
    batches=("forget", "retain"),
    logs=("simnpo", "forget_nll", "retain_nll"),
    paper="Fan et al. 2024, Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning",
)
