"""Batched, left-padded generation with the KV cache.

One ``generate`` call answers a whole batch of prompts and, with ``num_return_sequences``, draws
all K samples of each prompt at once. Each batch is seeded from (seed, batch key), so a batch
gives the same answers whether it runs first, last, or after a resume.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from safeeraser.models.codec import Codec


@dataclass(frozen=True)
class Prompt:
    image: Path
    question: str


@dataclass(frozen=True)
class Sampling:
    """How one ``generate`` call decodes; top-k 50 is Hugging Face's default, which the released
    inference leaves in place (0 switches top-k off)."""

    num_samples: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 128

    def generate_kwargs(self) -> dict:
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "num_return_sequences": self.num_samples,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def batch_seed(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@torch.no_grad()
def answer_batch(
    model, codec: Codec, prompts: list[Prompt], sampling: Sampling, *, seed: int, key: str
) -> tuple[list[list[str]], int]:
    """K answers per prompt for one batch, and the number of generated tokens."""
    batch = codec.collate_prompts([codec.encode_prompt(p.image, p.question) for p in prompts])
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    batch = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in batch.items()}
    torch.manual_seed(batch_seed(seed, key))
    out = model.generate(
        **batch,
        **sampling.generate_kwargs(),
        pad_token_id=codec.pad_id,
        eos_token_id=codec.eos_id,
    )
    new = out[:, batch["input_ids"].shape[1] :]
    tokens = int(((new != codec.pad_id) & (new != codec.eos_id)).sum())
    texts = [codec.decode(row) for row in new]
    k = sampling.num_samples
    return [texts[i * k : (i + 1) * k] for i in range(len(prompts))], tokens


def answer_all(model, codec: Codec, prompts: list[Prompt], sampling: Sampling, *, batch_size: int) -> list[list[str]]:
    """Answers for a list of prompts, batched (a convenience for small in-process evaluations)."""
    answers: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        got, _ = answer_batch(model, codec, prompts[start : start + batch_size], sampling, seed=0, key=f"b{start}")
        answers.extend(got)
    return answers
