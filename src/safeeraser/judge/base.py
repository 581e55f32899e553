"""The judge interface: items in, verdicts out. A failed judgement is an error, never a verdict.

Three kinds of item, one per metric family:
- ``harm``:        a response to a harmful prompt -> ``unsafe`` (ASR) and ``refusal`` (RR)
- ``decouple``:    a response to a harmful question about a harmless image -> ``normal`` (SARR)
- ``consistency``: a benign answer against its reference -> ``score`` in [0, 1]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

# The verdicts a judge may give, each behind its metrics: unsafe -> ASR, refusal -> RR,
# normal -> SARR, score -> the judge's consistency score.
VERDICTS = ("unsafe", "refusal", "normal", "score")
# The verdicts each kind of item asks for.
KIND_VERDICTS = {"harm": ("unsafe", "refusal"), "decouple": ("normal",), "consistency": ("score",)}
# How a verdict's note opens when an unreadable consistency-score answer was read as 0.0 (as the
# released evaluation reads it, ``--judge-score released``): the score counts, visibly, and is never cached.
READ_AS_ZERO = "unreadable score answer read as 0.0"


@dataclass(frozen=True)
class JudgeItem:
    kind: Literal["harm", "decouple", "consistency"]
    question: str
    answer: str
    category: str = ""
    reference: str = ""
    image: Path | None = None  # the image the answer is about; read only by a judge that reads images


@dataclass
class Verdict:
    refusal: bool | None = None
    unsafe: bool | None = None
    normal: bool | None = None
    score: float | None = None
    error: str | None = None  # set when the judge failed: the item is excluded from every metric
    cached: bool = False
    note: str = ""
    # Sub-question -> why it failed, when a protocol asks several ("unsafe", "refusal", ...). A
    # failed sub-question leaves its field None; ``error`` is set only when every one failed.
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def read_as_zero(self) -> bool:
        """A score of 0.0 that stands for an answer that could not be read (``READ_AS_ZERO``)."""
        return self.note.startswith(READ_AS_ZERO)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != "" and v != {}}


class Judge(Protocol):
    name: str
    # What the judge declares it can do: the verdicts it gives (a subset of VERDICTS), whether it
    # sees the item's image, and what it cannot tell apart (written to metrics.json).
    verdicts: tuple[str, ...]
    reads_images: bool
    limits: tuple[str, ...]

    def judge(self, items: list[JudgeItem], *, progress: bool = False) -> list[Verdict]:
        """One verdict per item, in order."""
        ...

    def identity(self) -> dict:
        """What decided the verdicts, for the record beside the metrics: ``kind``, ``model``,
        ``protocol``, ``prompt_hash`` (16 hex digits) and ``decoding`` (None where unused)."""
        ...


def produces(judge) -> tuple[str, ...]:
    """The verdicts ``judge`` declares (every one, for a judge that declares nothing)."""
    return tuple(v for v in VERDICTS if v in getattr(judge, "verdicts", VERDICTS))


def judge_for(judge, verdict: str):
    """The judge that gives ``verdict``: ``judge`` itself, one of a combination's, or None."""
    if hasattr(judge, "judge_for"):
        return judge.judge_for(verdict)
    return judge if verdict in produces(judge) else None
