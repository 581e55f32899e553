"""DPO for unlearning: prefer a refusal to the harmful answer, relative to the original model.

Rafailov et al. 2023, *Direct Preference Optimization*, used for unlearning as in Zhang et al.
2024 (NPO) and Maini et al. 2024 (TOFU): the preferred answer is a refusal, the rejected one the
harmful answer to the same image and question, and the reference is the model with the adapter
switched off. ``dpo`` is the preference term alone; ``idkdpo`` adds NLL(retain), the recipe
open-unlearning runs as IdkDPO. The loss is scaled by 2/beta, as NPO's is, so that the two are
compared at one learning rate.
"""

from pydantic import Field

from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings, nll_term

PAIRED = "refusal&forget"  # row i of the refusal half and of the forget half answer one prompt


class DpoSettings(Settings):
    beta: float = Field(
        0.1, gt=0, description="inverse temperature of the log-ratios to the original model (as NPO's published beta)"
    )


def preference_term(section: str):
    def term(f, pair, settings):
        beta = getattr(settings, section).beta
        logits = f.logits(pair)
        logp = losses.sequence_logprob(logits, pair["labels"])
        ref = losses.sequence_logprob(f.reference_logits(pair), pair["labels"])
        n = logp.shape[0] // 2
        loss = losses.dpo_loss(logp[:n], ref[:n], logp[n:], ref[n:], beta)
        labels = pair["labels"]
        return {
            "loss": loss,
            "dpo": loss,
            "refusal_nll": losses.answer_nll(logits[:n].detach(), labels[:n]),
            "forget_nll": losses.answer_nll(logits[n:].detach(), labels[n:]),
        }

    return term


def dpo_terms(settings, retain_weight):
    return {PAIRED: preference_term("dpo")}


def idkdpo_terms(settings, retain_weight):
    return {PAIRED: preference_term("idkdpo"), "retain": nll_term("retain", retain_weight)}


METHOD = Method(
    "dpo",
    dpo_terms,
    pd_weight=1.0,
    settings=DpoSettings,
    batches=(PAIRED,),
    logs=("dpo", "refusal_nll", "forget_nll"),
    paper="Rafailov et al. 2023, Direct Preference Optimization (refusal preferred to the harmful answer)",
)
IDK_METHOD = Method(
    "idkdpo",
    idkdpo_terms,
    pd_weight=1.0,
    settings=DpoSettings,
    batches=(PAIRED, "retain"),
    logs=("dpo", "refusal_nll", "forget_nll", "retain_nll"),
    paper="Maini et al. 2024, TOFU (IDK preference) / open-unlearning IdkDPO: DPO with a refusal preferred, plus NLL(retain)",
)
