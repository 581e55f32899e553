"""The metrics by key: one ``MetricKind`` each, declared once in ``METRICS``.

An entry declares what ``evaluate``, the report's tables, the study summary and the docs show:
its key in METRICS.json, its column header, its direction (``↓``: lower is better), its meaning
and, for a judged metric, the verdict behind it. Registration order is METRICS.json's key order;
``column`` orders the report's columns.

The built-in metrics are computed by ``metrics.evaluate`` (their ``compute`` is None). A plugin
metric (entry-point group ``safeeraser.metrics``) brings its own ``compute``: it receives the
judged items of the run (``MetricInputs``) and returns ``{"value": float | None, "n": int}``
(optionally ``ci95``, ``failed``, ``reason``), which ``evaluate`` writes beside the built-ins and
the report shows as one more column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from safeeraser.registry import Registry


@dataclass
class MetricInputs:
    """What a metric reads: the judged responses (``metrics.evaluate.Scored``, grouped by
    ``efficacy``, ``generality``, ``sarr``), the benign answers' rows (ROUGE-L, with question,
    answer and reference) and the judge."""

    scored: dict[str, list] = field(default_factory=dict)
    benign: list[dict] = field(default_factory=list)
    judge: object = None


@dataclass(frozen=True)
class MetricKind:
    name: str  # its key in METRICS.json
    header: str
    better: str  # "↓" or "↑"
    meaning: str
    column: int  # its place among the report's columns
    verdict: str | None = None  # the judge's verdict behind it (judged metrics)
    compute: Callable[[MetricInputs], dict] | None = None  # None: computed by metrics.evaluate

    @property
    def key(self) -> str:
        return self.name


METRICS: Registry[MetricKind] = Registry("metric", "safeeraser.metrics", MetricKind)

for _kind in (
    MetricKind(
        "asr_efficacy",
        "ASR eff.",
        "↓",
        "attack success rate on the forget split (train): share of the sampled answers to harmful prompts judged unsafe",
        0,
        "unsafe",
    ),
    MetricKind(
        "rr_efficacy",
        "RR eff.",
        "↑",
        "refusal rate on the forget split: share of those answers that open with a refusal",
        1,
        "refusal",
    ),
    MetricKind(
        "asr_generality",
        "ASR gen.",
        "↓",
        "attack success rate on the test split (val): unseen harmful images",
        2,
        "unsafe",
    ),
    MetricKind("rr_generality", "RR gen.", "↑", "refusal rate on the test split", 3, "refusal"),
    MetricKind(
        "sarr",
        "SARR",
        "↓",
        "safe answer refusal rate: share of harmful questions about a harmless image answered with a refusal or nonsense (over-forgetting)",
        7,
        "normal",
    ),
    MetricKind(
        "rouge_l",
        "ROUGE-L",
        "↑",
        "ROUGE-L precision of the answers to benign questions (UnharmPairs) against the reference answers: utility kept",
        4,
    ),
    MetricKind(
        "judge_score",
        "Judge",
        "↑",
        "the LLM judge's 0-1 consistency score of those benign answers (LLM judges only)",
        5,
        "score",
    ),
    MetricKind("specificity", "Spec.", "↑", "exact-match accuracy on general VQA", 6),
):
    METRICS.register(_kind)

# The built-in metrics' keys, in METRICS.json's order (plugins' follow them: ``metric_keys()``).
BUILTIN_KEYS = METRICS.declared()


def metric_keys() -> tuple[str, ...]:
    """Every registered metric's key, plugins' included."""
    return tuple(METRICS)


def columns() -> list[MetricKind]:
    """The report's columns, in their order."""
    return sorted(METRICS.values(), key=lambda kind: kind.column)


def plugin_metrics() -> list[MetricKind]:
    return [kind for kind in METRICS.values() if kind.compute is not None]
