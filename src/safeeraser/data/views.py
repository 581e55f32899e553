"""The derived training views of a split, as plain examples and a PyTorch dataset.

- forget:   (harmful image, harmful question, original harmful answer)
- refusal:  (harmful image, harmful question, a refusal sentence)           -- PO target;
            the sentence is redrawn every epoch, as the released code draws one per access
- decouple: (harmless image, the same harmful question, its normal answer)  -- PD target
- retain:   (harmful image, benign question, original answer)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from safeeraser.data.records import Split
from safeeraser.data.refusals import REFUSALS
from safeeraser.errors import UserError
from safeeraser.formats import example_key, pair_where, sd_where

VIEWS = ("forget", "refusal", "decouple", "retain")


@dataclass(frozen=True)
class Example:
    image: Path
    question: str
    answer: str
    category: str
    key: str  # stable id (formats.example_key)


def forget_examples(split: Split) -> list[Example]:
    return [
        Example(split.image(i), p.question, p.model_response, r.category, example_key(split.name, i, pair_where(j)))
        for i, r in enumerate(split)
        for j, p in enumerate(r.unsafe_pairs)
    ]


def refusal_for(refusals: Sequence[str], seed: int, epoch: int, key: str) -> str:
    """The refusal an example is trained on in an epoch: a pure function of (seed, epoch, example)."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{key}".encode()).digest()
    return refusals[int.from_bytes(digest[:8], "little") % len(refusals)]


def refusal_examples(split: Split, seed: int = 0, epoch: int = 0, refusals: Sequence[str] = REFUSALS) -> list[Example]:
    return [replace(e, answer=refusal_for(refusals, seed, epoch, e.key)) for e in forget_examples(split)]


def read_refusals(path: Path) -> tuple[str, ...]:
    """A refusal list in the released ``prompt.json`` shape: ``{"idk": ["...", ...]}``."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: refusals file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{where}: unreadable refusals file ({type(e).__name__})") from None
    if not isinstance(data, dict) or "idk" not in data:
        raise UserError(f"{where}: expected a JSON object with an 'idk' list of refusal sentences")
    found = data["idk"]
    if not isinstance(found, list) or not found or not all(isinstance(t, str) and t.strip() for t in found):
        raise UserError(f"{where}: field 'idk': expected a non-empty list of non-empty strings")
    return tuple(t.strip() for t in found)


def decouple_examples(split: Split) -> list[Example]:
    return [
        Example(split.sd_image(i), p.question, p.sd_response, r.category, example_key(split.name, i, sd_where(j)))
        for i, r in enumerate(split)
        for j, p in enumerate(r.unsafe_pairs)
    ]


def retain_examples(split: Split) -> list[Example]:
    return [
        Example(split.image(i), qa.question, qa.prediction, r.category, example_key(split.name, i, key))
        for i, r in enumerate(split)
        for key, qa in r.unharm_pairs()
    ]


def view_examples(split: Split, view: str, seed: int = 0, refusals: Sequence[str] = REFUSALS) -> list[Example]:
    """The examples of one named view (the refusal view as drawn for epoch 0)."""
    if view == "forget":
        return forget_examples(split)
    if view == "refusal":
        return refusal_examples(split, seed, 0, refusals)
    if view == "decouple":
        return decouple_examples(split)
    if view == "retain":
        return retain_examples(split)
    raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")


class ViewData:
    """A view's examples, encoded on demand; ``item(i, epoch)`` redraws what changes per epoch (refusals)."""

    def __init__(
        self,
        examples: list[Example],
        encode: Callable[[Example], dict],
        redraw: Callable[[Example, int], Example] | None = None,
    ):
        self.examples = examples
        self.encode = encode
        self.redraw = redraw

    def __len__(self) -> int:
        return len(self.examples)

    def item(self, index: int, epoch: int) -> dict:
        example = self.examples[index]
        return self.encode(self.redraw(example, epoch) if self.redraw else example)


def view_data(
    split: Split, view: str, encode: Callable[[Example], dict], *, seed: int, refusals: Sequence[str] = REFUSALS
) -> ViewData:
    examples = view_examples(split, view, seed, refusals)
    if view != "refusal":
        return ViewData(examples, encode)
    return ViewData(examples, encode, lambda e, epoch: replace(e, answer=refusal_for(refusals, seed, epoch, e.key)))
