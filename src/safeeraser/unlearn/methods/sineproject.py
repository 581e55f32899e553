"""SineProject: any method with the projector frozen and a sinusoidally bounded update added to it.

Garg, Saratchandran and Lucey, *SineProject: Machine Unlearning for Stable Vision-Language
Alignment* (CVPR 2026, arXiv 2511.18444): unlearning drives the projector's Jacobian to be
ill-conditioned; keeping the projector frozen and adding trainable parameters whose update passes
through sin(.) keeps it well conditioned. Its headline runs it on top of PO+PD.

Here ``X+sineproject`` (and ``X+pd+sineproject``) is method X with the projector no longer trained
in full (``lora.train_projector`` is set aside) but reparameterised layer by layer as
W0 + sin(omega * B A) / sqrt(in_features) (``models/sine_projector.py``); the language model keeps
its LoRA. ``sineproject`` alone is the paper's headline, ``po+pd+sineproject``. The rank and the
frequency are this section's settings; the paper's text does not give them (docs/methods.md).
"""

from pydantic import Field

from safeeraser.unlearn.methods.base import Settings

SUFFIX = "+sineproject"
HEADLINE = "po+pd" + SUFFIX  # the paper's headline: SineProject on top of PO+PD
PAPER = (
    "Garg, Saratchandran and Lucey 2026, SineProject: Machine Unlearning for Stable Vision-Language Alignment (CVPR)"
)


class SineProjectSettings(Settings):
    rank: int | None = Field(
        None,
        gt=0,
        description="rank of A and B in each projector layer's update sin(omega*BA)/sqrt(in); null = lora.r (ours: the paper's text gives none)",
    )
    frequency: float = Field(
        100.0, gt=0, description="omega, the frequency inside sin(); ours (the paper's text gives none)"
    )
