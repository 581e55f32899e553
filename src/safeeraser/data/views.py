"""The derived training views of a split (SPEC §2), as plain examples and a PyTorch dataset.

- forget:   (harmful image, harmful question, original harmful answer)
- refusal:  (harmful image, harmful question, a refusal sentence)           -- PO target
- decouple: (harmless image, the same harmful question, its normal answer)  -- PD target
- retain:   (harmful image, benign question, original answer)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from safeeraser.data.records import Split
from safeeraser.data.refusals import REFUSALS

VIEWS = ("forget", "refusal", "decouple", "retain")


@dataclass(frozen=True)
class Example:
    image: Path
    question: str
    answer: str
    category: str
    key: str  # stable id: "<file>#<record>/<where>"


def forget_examples(split: Split) -> list[Example]:
    return [
        Example(split.image(i), p.question, p.model_response, r.category, f"{split.name}#{i}/pair{j}")
        for i, r in enumerate(split)
        for j, p in enumerate(r.unsafe_pairs)
    ]


def refusal_examples(split: Split, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    return [
        Example(e.image, e.question, rng.choice(REFUSALS), e.category, e.key) for e in forget_examples(split)
    ]


def decouple_examples(split: Split) -> list[Example]:
    return [
        Example(split.sd_image(i), p.question, p.sd_response, r.category, f"{split.name}#{i}/pair{j}/sd")
        for i, r in enumerate(split)
        for j, p in enumerate(r.unsafe_pairs)
    ]


def retain_examples(split: Split) -> list[Example]:
    return [
        Example(split.image(i), qa.question, qa.prediction, r.category, f"{split.name}#{i}/{key}")
        for i, r in enumerate(split)
        for key, qa in r.unharm_pairs()
    ]


def view_examples(split: Split, view: str, seed: int = 0) -> list[Example]:
    """The examples of one named view."""
    if view == "forget":
        return forget_examples(split)
    if view == "refusal":
        return refusal_examples(split, seed)
    if view == "decouple":
        return decouple_examples(split)
    if view == "retain":
        return retain_examples(split)
    raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")


class ExampleDataset(Dataset):
    """A view as a PyTorch dataset; ``encode`` (from the model's codec) turns examples into tensors."""

    def __init__(self, examples: list[Example], encode: Callable[[Example], dict] | None = None):
        self.examples = examples
        self.encode = encode

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int):
        example = self.examples[index]
        return self.encode(example) if self.encode else example
