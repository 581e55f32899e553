"""Preference Optimization (published as IDK): answer harmful prompts with a refusal, keep retain.

Released: refusal and retain examples in one batch with one token mean over both
(``method.po_batch: joined``); ``separate`` sums the two batches' means instead, which weighs
the short refusals' tokens far more.
"""

from typing import Literal

from pydantic import Field

from safeeraser.unlearn.methods.base import Method, Settings, nll_term


class PoSettings(Settings):
    batch: Literal["joined", "separate"] = Field(
        "joined",
        description="joined = refusal and retain in one batch, one token mean (released) | separate = sum of two means; also method.po_batch",
    )


def terms(settings, retain_weight):
    if settings.po.batch == "joined" and retain_weight == 1.0:
        return {"refusal+retain": nll_term("refusal+retain")}
    return {"refusal": nll_term("refusal"), "retain": nll_term("retain", retain_weight)}


METHOD = Method(
    "po",
    terms,
    pd_weight=1.0,
    settings=PoSettings,
    batches=("refusal+retain",),
    logs=("refusal+retain_nll",),
    paper="Maini et al. 2024, TOFU (IDK fine-tuning), as released by SafeEraser (ACL Findings 2025)",
)
