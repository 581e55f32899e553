"""Metric arithmetic: rates with cluster-bootstrap intervals, ROUGE-L precision, exact match."""

from __future__ import annotations

import math
import re
import string
from functools import lru_cache

import numpy as np

BOOTSTRAP_RESAMPLES = 1000


def rate_with_ci(
    values: list[float], clusters: list[str] | None = None, *, seed: int = 0
) -> tuple[float | None, list[float] | None]:
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


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95%).

    From the closed form of P(|T| < t) for integer df (Abramowitz & Stegun 26.7.3-4), inverted by
    bisection to 1e-12: no statistics library needed.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1 (got {df})")

    def inside(t: float) -> float:  # P(|T| < t)
        theta = math.atan(t / math.sqrt(df))
        c2, s = math.cos(theta) ** 2, math.sin(theta)
        if df % 2:  # odd: (2/pi)(theta + sin cos (1 + 2/3 cos^2 + (2*4)/(3*5) cos^4 + ...))
            term, total = 1.0, 1.0 if df > 1 else 0.0
            for k in range(1, (df - 1) // 2):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
            return 2 / math.pi * (theta + s * math.cos(theta) * total)
        term, total = 1.0, 1.0  # even: sin (1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ...)
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total

    lo, hi = 0.0, 1.0
    while inside(hi) < 0.95:
        hi *= 2
    while hi - lo > 1e-12:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if inside(mid) < 0.95 else (lo, mid)
    return (lo + hi) / 2


def across_seeds(values: list[float]) -> dict:
    """Mean, sample standard deviation (n - 1) and the 95% t-interval of the mean of ``values``.

    The interval is mean ± t(0.975, n-1) · std / √n, not clipped to [0, 1]: with two or three
    seeds it is wide, and clipping would hide how wide. Fewer than two values: no std, no interval.
    """
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "values": []}
    mean = math.fsum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None, "values": list(values)}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "values": list(values)}
