"""RMU: scramble one layer's hidden states on forget inputs, keep them on retain inputs.

Li et al. 2024, *The WMDP Benchmark: Measuring and Reducing Malicious Use with Unlearning*
(Representation Misdirection for Unlearning): on forget answers the output of decoder layer L is
pulled toward c·u (u a fixed random unit vector), on retain answers toward the original model's
output of the same layer (adapter off), weighted by alpha. Positions are the answer tokens. Here
the LoRA adapter is trained (the paper updates three MLP layers in full); layer L defaults to the
model family's ``rmu_layer`` (layer 7 for LLaVA's 32-layer language models, as in the paper).
"""

import torch
from pydantic import Field

from safeeraser.models.codec import IGNORE
from safeeraser.unlearn import losses
from safeeraser.unlearn.methods.base import Method, Settings


class RmuSettings(Settings):
    layer: int | None = Field(
        None, ge=0, description="decoder layer (0-based) whose output is steered; null = the model family's rmu_layer"
    )
    steering: float = Field(6.5, gt=0, description="c, the norm of the random control vector per token")
    alpha: float = Field(1200.0, ge=0, description="weight of the retain term (hidden states kept at the original's)")
    control_seed: int = Field(0, description="seed of the random control vector u")


def layer_of(f, settings) -> int:
    if settings.rmu.layer is not None:
        return settings.rmu.layer
    layer = getattr(f.family, "rmu_layer", None)
    if layer is None:
        from safeeraser.errors import UserError

        raise UserError("method.rmu.layer: the model family names no default layer; set method.rmu.layer")
    return layer


def control_vector(size: int, settings) -> torch.Tensor:
    """c·u with u uniform in [0, 1)^size, normalised: a pure function of (size, control_seed, c)."""
    u = torch.rand(size, generator=torch.Generator().manual_seed(settings.rmu.control_seed))
    return settings.rmu.steering * u / u.norm()


def forget_rmu(f, forget, settings):
    hidden = f.hidden(forget, layer_of(f, settings))
    target = control_vector(hidden.shape[-1], settings).to(hidden.device)
    loss = losses.activation_mse(hidden, target, forget["labels"] != IGNORE)
    return {"loss": loss, "rmu_forget": loss}


def retain_rmu(weight: float):
    def term(f, retain, settings):
        layer = layer_of(f, settings)
        reference = f.hidden(retain, layer, reference=True)
        mse = losses.activation_mse(f.hidden(retain, layer), reference, retain["labels"] != IGNORE)
        return {"loss": weight * settings.rmu.alpha * mse, "rmu_retain": mse}

    return term


def terms(settings, retain_weight):
    return {"forget": forget_rmu, "retain": retain_rmu(retain_weight)}


METHOD = Method(
    "rmu",
    terms,
    pd_weight=1.0,
    settings=RmuSettings,
    batches=("forget", "retain"),
    logs=("rmu_forget", "rmu_retain"),
    paper="Li et al. 2024, The WMDP Benchmark: Measuring and Reducing Malicious Use with Unlearning (RMU)",
)
