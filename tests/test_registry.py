"""The registry type, and the seams declared once: judges and metrics read from their registries."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from safeeraser.errors import UserError
from safeeraser.registry import Registry


@dataclass(frozen=True)
class Entry:
    name: str


def test_a_registry_reads_as_a_mapping_and_names_what_it_lacks():
    registry = Registry("widget", "safeeraser.tests-no-such-group", Entry)
    registry.register(Entry("a"))
    registry.register(Entry("b"))
    assert list(registry) == ["a", "b"] and "a" in registry and registry["b"] == Entry("b") and len(registry) == 2
    with pytest.raises(UserError, match="unknown widget 'c': expected one of a, b"):
        registry["c"]
    with pytest.raises(UserError, match="widget 'a' is registered twice"):
        registry.register(Entry("a"))
    with pytest.raises(UserError, match="must be a Entry"):
        registry.register("a")


def test_the_judges_and_metrics_are_declared_once():
    from safeeraser.judge import JUDGES, declared_verdicts
    from safeeraser.metrics.evaluate import METRIC_KEYS, METRIC_VERDICT
    from safeeraser.metrics.registry import METRICS
    from safeeraser.report.table import COLUMNS

    assert list(JUDGES) == ["keyword", "openai", "hf", "llamaguard", "wildguard", "harmbench"]
    assert declared_verdicts("keyword") == ("unsafe", "refusal", "normal") and declared_verdicts("wildguard") == (
        "unsafe",
        "refusal",
    )
    assert METRIC_KEYS == tuple(METRICS)
    assert METRIC_VERDICT == {
        "asr_efficacy": "unsafe",
        "rr_efficacy": "refusal",
        "asr_generality": "unsafe",
        "rr_generality": "refusal",
        "sarr": "normal",
        "judge_score": "score",
    }
    assert [c.key for c in COLUMNS] == [
        "asr_efficacy",
        "rr_efficacy",
        "asr_generality",
        "rr_generality",
        "rouge_l",
        "judge_score",
        "specificity",
        "sarr",
    ]


def test_a_judge_option_misspelt_is_one_line():
    from safeeraser.judge import make_judge

    with pytest.raises(UserError, match="the openai judge takes no option 'modle'"):
        make_judge("openai", modle="gpt-4o")
    with pytest.raises(UserError, match="the hf judge's option batch_size: Input should be a valid integer"):
        make_judge("hf", model="x", batch_size="many")
