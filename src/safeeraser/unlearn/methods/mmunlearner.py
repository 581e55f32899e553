"""MMUnlearner: gradient ascent on forget restricted to the weights salient to the forget set, plus retain.

Huo et al. 2025, *MMUnlearner: Reformulating Multimodal Machine Unlearning in the Era of Multimodal
Large Language Models* (arXiv 2502.11051). Before training, the diagonal Fisher information of
every trainable weight is estimated on the forget set and on the retain set (the mean over
batches of the squared gradient of the answer NLL); the saliency mask keeps the weights with

    (F_forget + eps) / (F_retain + eps) >= threshold

(eps = 1e-15, threshold 1 in the authors' released mask script). Training is gradient descent on
-forget_weight x NLL(forget) + NLL(retain) with the forget term's gradient multiplied by the mask
(the "geometry-constrained" update); the retain term (and the Prompt-Decouple term under +PD)
reaches every trainable weight, as the released training loop steps it unmasked.

The mask is computed once, with the model in eval mode (no dropout, no random numbers drawn), over
the trainable weights of this run: the LoRA matrices and, when trained, the projector. See
docs/methods.md for what the paper leaves open and what is chosen here.
"""

from __future__ import annotations

import contextlib

import torch
from pydantic import Field

from safeeraser.unlearn.methods.base import Forward, Method, Settings, nll_term

EPS = 1e-15  # added to both Fisher estimates, as the authors' mask script adds it


class MmunlearnerSettings(Settings):
    threshold: float = Field(
        1.0,
        gt=0,
        description="gamma: a weight is salient (updated by the forget term) where F_forget/F_retain >= gamma (1, the authors' released mask script)",
    )
    forget_weight: float = Field(
        1.0, gt=0, description="weight of the gradient-ascent term on forget (1, the authors' released forget_alpha)"
    )
    saliency_batches: int | None = Field(
        None,
        gt=0,
        description="batches of each view the Fisher estimates average over; null = one pass over the forget and the retain view",
    )


def fisher(named: list[tuple[str, torch.Tensor]], batches, loss) -> dict[str, torch.Tensor]:
    """Diagonal Fisher estimate per weight: the mean over ``batches`` of the squared gradient of
    ``loss(batch)`` (a scalar) with respect to each named weight (float32, on the weight's device)."""
    params = [p for _, p in named]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    count = 0
    for batch in batches:
        grads = torch.autograd.grad(loss(batch), params, allow_unused=True)
        for total, grad in zip(sums, grads):
            if grad is not None:
                total += grad.detach().float() ** 2
        count += 1
    if not count:
        raise ValueError("no batches to estimate the Fisher information on")
    return {name: total / count for (name, _), total in zip(named, sums)}


def saliency_mask(
    forget: dict[str, torch.Tensor], retain: dict[str, torch.Tensor], threshold: float
) -> dict[str, torch.Tensor]:
    """1.0 where (F_forget + eps) / (F_retain + eps) >= threshold, else 0.0 (float masks, one per weight)."""
    return {name: ((forget[name] + EPS) / (retain[name] + EPS) >= threshold).float() for name in forget}


class GradientMask:
    """Multiplies the gradient reaching each masked weight by its mask, while ``during(batch)`` is
    open for a batch it restricts (the trainer opens it around each term's backward pass)."""

    def __init__(self, params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], batches: tuple[str, ...]):
        self.params, self.masks, self.batches = params, masks, batches

    @property
    def kept(self) -> float:
        """The share of masked weights the forget term may update."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(float(m.sum()) for m in self.masks.values()) / max(1, total)

    @contextlib.contextmanager
    def during(self, batch: str):
        if batch not in self.batches:
            yield
            return
        handles = [
            self.params[name].register_hook(lambda grad, m=mask: grad * m.to(grad.dtype))
            for name, mask in self.masks.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def view_batches(run, view: str, limit: int | None):
    """The view's examples in file order, ``batch_size`` at a time (at most ``limit`` batches), collated on the run's device."""
    data, size = run.views[view], run.config.batch_size
    count = -(-len(data) // size)
    for b in range(count if limit is None else min(limit, count)):
        items = [data.item(j, 0) for j in range(b * size, min(len(data), (b + 1) * size))]
        yield {k: v.to(run.accelerator.device) for k, v in run.codec.collate_train(items).items()}


def prepare(run) -> GradientMask:
    """The saliency mask of ``run``'s trainable weights at the start of training (before any step)."""
    settings = run.config.method.mmunlearner
    model = run.peft_model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    forward = Forward(model, model, family=run.loaded.family)
    was_training = model.training
    model.eval()  # no dropout: the mask is a function of the weights and the data alone
    try:
        forget = fisher(named, view_batches(run, "forget", settings.saliency_batches), forward.nll)
        retain = fisher(named, view_batches(run, "retain", settings.saliency_batches), forward.nll)
    finally:
        model.train(was_training)
    return GradientMask(dict(named), saliency_mask(forget, retain, settings.threshold), ("forget",))


def terms(settings, retain_weight):
    return {
        "forget": nll_term("forget", -settings.mmunlearner.forget_weight),
        "retain": nll_term("retain", retain_weight),
    }


# GD's objective under a mask, so GD's released PD weights: 0.5 decouple, 0.5 retain.
METHOD = Method(
    "mmunlearner",
    terms,
    pd_weight=0.5,
    pd_retain_weight=0.5,
    settings=MmunlearnerSettings,
    batches=("forget", "retain"),
    logs=("forget_nll", "retain_nll"),
    prepare=prepare,
    paper="Huo et al. 2025, MMUnlearner: Reformulating Multimodal Machine Unlearning in the Era of Multimodal Large Language Models",
)
