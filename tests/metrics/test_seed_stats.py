"""Across-seed statistics pinned on numbers computed by hand, and the Pareto front of cells."""

from __future__ import annotations

import math

import pytest

from safeeraser.metrics.stats import across_seeds, t_quantile_975

# Student's t 0.975 quantiles from the printed table
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 10: 2.2281, 29: 2.0452}


@pytest.mark.parametrize("df, value", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df, value):
    assert t_quantile_975(df) == pytest.approx(value, abs=6e-5)


def test_two_seeds():
    # 0.1 and 0.3: mean 0.2; std sqrt((0.01 + 0.01) / 1) = 0.141421; half = 12.7062 * 0.141421 / sqrt(2) = 1.27062
    got = across_seeds([0.1, 0.3])
    assert got["n"] == 2 and got["mean"] == pytest.approx(0.2) and got["std"] == pytest.approx(0.1414213562)
    assert got["ci95"] == pytest.approx([0.2 - 1.2706204736, 0.2 + 1.2706204736], abs=1e-9)  # not clipped to [0, 1]


def test_three_seeds():
    # 0.2, 0.4, 0.9: mean 0.5; squares 0.09 + 0.01 + 0.16 = 0.26; variance 0.13; std 0.3605551;
    # half = 4.3026527 * 0.3605551 / sqrt(3) = 0.8956683
    got = across_seeds([0.2, 0.4, 0.9])
    assert got["mean"] == pytest.approx(0.5) and got["std"] == pytest.approx(math.sqrt(0.13))
    assert got["ci95"] == pytest.approx([0.5 - 0.8956683, 0.5 + 0.8956683], abs=1e-6)


def test_equal_values_and_too_few():
    assert across_seeds([0.25, 0.25, 0.25])["ci95"] == pytest.approx([0.25, 0.25])
    one = across_seeds([0.7])
    assert one["mean"] == 0.7 and one["std"] is None and one["ci95"] is None
    assert across_seeds([])["mean"] is None


def _cell(name, asr, sarr, rouge):
    return {
        "cell": name,
        "metrics": {"asr_generality": {"mean": asr}, "sarr": {"mean": sarr}, "rouge_l": {"mean": rouge}},
    }


def test_pareto_front():
    from safeeraser.study.summary import mark_pareto

    cells = [
        _cell("a", 0.1, 0.5, 0.3),  # best ASR
        _cell("b", 0.3, 0.1, 0.3),  # best SARR
        _cell("c", 0.3, 0.5, 0.3),  # dominated by a and b
        _cell("d", 0.5, 0.5, 0.9),  # worst ASR and SARR, best ROUGE-L: on the front
        _cell("e", 0.1, 0.5, 0.2),  # a is as good everywhere and better in ROUGE-L
        _cell("f", None, 0.0, 1.0),  # not measured: not placed
    ]
    mark_pareto(cells)
    assert {c["cell"]: c["pareto"] for c in cells} == {
        "a": True,
        "b": True,
        "c": False,
        "d": True,
        "e": False,
        "f": None,
    }
