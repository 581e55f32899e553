"""Preference Optimization (published as IDK): answer harmful prompts with a refusal, keep retain.

Released: refusal and retain examples in one batch with one token mean over both
(``method.po_batch: joined``); ``separate`` sums the two batches' means instead, which weighs
the short refusals' tokens far more.
"""

from safeeraser.unlearn.methods.base import Method, nll_term


def terms(settings, retain_weight):
    if settings.po_batch == "joined" and retain_weight == 1.0:
        return {"refusal+retain": nll_term("refusal+retain")}
    return {"refusal": nll_term("refusal"), "retain": nll_term("retain", retain_weight)}


METHOD = Method("po", terms, pd_weight=1.0)
