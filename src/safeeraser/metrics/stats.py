"""Metric arithmetic: rates with cluster-bootstrap intervals, ROUGE-L precision, exact match."""

from __future__ import annotations

import re
import string
from functools import lru_cache

import numpy as np

BOOTSTRAP_RESAMPLES = 1000


def rate_with_ci(values: list[float], clusters: list[str] | None = None, *, seed: int = 0) -> tuple[float | None, list[float] | None]:
    """Mean of ``values`` and a 95% percentile-bootstrap interval.

    Resampling is over clusters (e.g. the K samples of one question move together), since
    samples of the same prompt are not independent.
    """
    if not values:
        return None, None
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) == 1:
        return mean, [mean, mean]
    ids = clusters or [str(i) for i in range(len(x))]
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(ids):
        groups.setdefault(c, []).append(i)
    sums = np.array([x[idx].sum() for idx in groups.values()])
    counts = np.array([len(idx) for idx in groups.values()])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(BOOTSTRAP_RESAMPLES, len(sums)))
    boot = sums[picks].sum(1) / counts[picks].sum(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return mean, [float(lo), float(hi)]


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> tuple[float, float]:
    """(precision, F-measure) of ROUGE-L (rougeL, stemming) as the released evaluation computes it.

    The released code calls ``score(answer, reference)``: rouge_score takes the first text as
    the target, so its precision is LCS / length of the *reference* — how much of the reference
    the answer recovers. That is the number the paper's ROUGE-L column holds. The F-measure is
    symmetric in the two texts.
    """
    score = _rouge().score(answer, reference)["rougeL"]
    return float(score.precision), float(score.fmeasure)


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise_answer(text: str) -> str:
    text = _PUNCT.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answer: str) -> bool:
    """VQA-style exact match after lower-casing and removing punctuation and articles."""
    return normalise_answer(prediction) == normalise_answer(answer)
