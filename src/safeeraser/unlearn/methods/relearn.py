"""Relearning: plain NLL on harmful answers, the attack ``safeeraser audit`` runs on an unlearned model.

Not an unlearning method: it trains the model *towards* the forget answers, to measure how few
steps bring back what unlearning removed (a relearning attack). The trainer runs it by name like
any method; the study lists, the demo and the report do not offer it.
"""

from safeeraser.unlearn.methods.base import Method, nll_term


def terms(settings, retain_weight):
    return {"forget": nll_term("forget")}


METHOD = Method(
    "relearn",
    terms,
    pd_weight=0.0,
    batches=("forget",),
    logs=("forget_nll",),
    paper="Hu et al. 2025, Unlearning or Obfuscating? Jogging the Memory of Unlearned LLMs via Benign Relearning (relearning attack)",
)
