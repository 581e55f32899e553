"""How a run draws its batches and sets its learning rate: ``BatchPlan`` (batches as a pure function of
(seed, view, micro-step)), the warm-up + cosine schedule and the released one (``released_factor``)."""

from __future__ import annotations

import hashlib
import math

import torch


class BatchPlan:
    """Which examples of a view form micro-batch ``unit``: a fresh permutation per epoch.

    A unit is one process's micro-batch of ``batch_size`` examples, numbered across processes:
    micro-step m of optimizer step s on process r of N, with grad_accum G, is unit
    ``(s * G + m) * N + r``. An optimizer step thus takes the same G x N consecutive units
    whatever N is, and every unit is the same micro-batch: 2 processes with grad_accum 1 see
    exactly the batches 1 process sees with grad_accum 2. (Each loss term is a mean within its
    micro-batch, as the released code computes it, so the per-device batch size is what must
    stay fixed; processes x grad_accum may be traded freely.) With one process this is the
    order the trainer has always used.
    """

    def __init__(self, n: int, batch_size: int, seed: int, view: str, *, shuffle: bool = True):
        self.n, self.batch_size = n, batch_size
        self.batches_per_epoch = math.ceil(n / batch_size)
        self._salt = int.from_bytes(hashlib.sha256(f"{seed}:{view}".encode()).digest()[:6], "little")
        # shuffle=False: the file order every epoch, as the released loader reads (shuffle = False)
        self._perm: tuple[int, torch.Tensor] | None = None if shuffle else (-1, torch.arange(n))

    def epoch(self, unit: int) -> int:
        return unit // self.batches_per_epoch

    def indices(self, unit: int) -> list[int]:
        epoch, b = divmod(unit, self.batches_per_epoch)
        if self._perm is None or self._perm[0] not in (epoch, -1):
            g = torch.Generator().manual_seed(self._salt + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        positions = (torch.arange(self.batch_size) + b * self.batch_size) % self.n  # the last batch wraps round
        return self._perm[1][positions].tolist()


def released_factor(step: int, *, warmup: int, total: int, processes: int) -> float:
    """The learning-rate factor of optimizer step ``step`` (0-based) as the released run stepped it.

    forget.py builds transformers' cosine-with-warmup schedule for ``total`` optimizer steps before
    ``accelerator.prepare``; accelerate's ``AcceleratedScheduler`` then advances it ``processes``
    times per optimizer step (2 in the released accelerate_config.yaml), and transformers' cosine is
    not clamped past its end: warm-up ends at warmup/processes, the rate reaches 0 at
    total/processes and climbs back towards the peak by the last step.
    """
    stepped = step * processes
    if stepped < warmup:
        return stepped / max(1, warmup)
    progress = (stepped - warmup) / max(1, total - warmup)  # past 1 the cosine climbs back: not clamped
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _schedule(optimizer, name: str, warmup: int, total: int, processes: int = 1):
    if name == "released":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: released_factor(step, warmup=warmup, total=total, processes=processes)
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "linear":
            return 1.0 - progress
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
