"""A study's numbers across seeds: per cell (method and grid settings), every metric's mean,
standard deviation and 95% t-interval over the seeds, from each run's metrics.json; and the
cells on the Pareto front of ASR, SARR and utility.

``study.json`` holds one object per cell: ``cell``, ``method``, ``settings`` (the grid values),
``seeds``, ``runs`` (folders) and ``metrics``: per metric key ``n`` (seeds that measured it),
``mean``, ``std`` (n - 1), ``ci95`` ([low, high], the t-interval of the mean; null below two
seeds) and ``values`` (per seed, in the order of ``seeds``). ``pareto`` says whether the cell is
on the front.
"""

from __future__ import annotations

from safeeraser.metrics.registry import metric_keys
from safeeraser.metrics.stats import across_seeds
from safeeraser.report.table import COLUMNS

# The front's objectives: (metric key, +1 higher is better / -1 lower is better)
PARETO_OBJECTIVES = (("asr_generality", -1), ("sarr", -1), ("rouge_l", +1))


def summarise(runs: list[dict]) -> list[dict]:
    """``runs``: dicts with ``cell``, ``method``, ``settings``, ``seed``, ``run`` and ``metrics`` (a metrics.json).

    Cells keep the order in which they first appear; within a cell, runs are in seed order.
    """
    cells: dict[str, list[dict]] = {}
    for run in runs:
        cells.setdefault(run["cell"], []).append(run)
    rows = []
    for cell, members in cells.items():
        members = sorted(members, key=lambda r: r["seed"])
        metrics = {}
        for key in (*metric_keys(), "rouge_l_f"):
            measured = [r for r in members if r["metrics"].get(key) is not None]
            stats = across_seeds([float(r["metrics"][key]) for r in measured])
            stats["seeds"] = [r["seed"] for r in measured]
            metrics[key] = stats
        rows.append(
            {
                "cell": cell,
                "method": members[0]["method"],
                "settings": dict(members[0]["settings"]),
                "seeds": [r["seed"] for r in members],
                "runs": [r["run"] for r in members],
                "metrics": metrics,
            }
        )
    mark_pareto(rows)
    return rows


def _objectives(row: dict) -> tuple[float, ...] | None:
    """The cell's objectives as values to maximise; None when one is not measured."""
    values = []
    for key, sign in PARETO_OBJECTIVES:
        mean = row["metrics"][key]["mean"]
        if mean is None:
            return None
        values.append(sign * mean)
    return tuple(values)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def mark_pareto(rows: list[dict]) -> None:
    """``pareto``: True when no other cell is at least as good on every objective (mean ASR gen. ↓,
    SARR ↓, ROUGE-L ↑) and better on one; None when the cell lacks one of them."""
    points = {id(r): _objectives(r) for r in rows}
    for row in rows:
        mine = points[id(row)]
        row["pareto"] = None if mine is None else not any(p is not None and dominates(p, mine) for p in points.values())


def several_seeds(rows: list[dict]) -> bool:
    """Whether some cell ran with more than one seed: else there is no spread to show."""
    return any(len(r["seeds"]) > 1 for r in rows)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def cell_text(stats: dict) -> str:
    """``mean ± std [low, high]`` in percent; one seed: the value alone."""
    if stats["mean"] is None:
        return "—"
    if stats["std"] is None:
        return f"{pct(stats['mean'])} (1 seed)"
    low, high = stats["ci95"]
    return f"{pct(stats['mean'])} ± {pct(stats['std'])} [{pct(low)}, {pct(high)}]"


def shown_columns(rows: list[dict]):
    return [c for c in COLUMNS if any(r["metrics"].get(c.key, {}).get("n") for r in rows)]


def to_markdown(rows: list[dict]) -> str:
    columns = shown_columns(rows)
    lines = [
        "Across seeds: mean ± standard deviation [95% t-interval of the mean], in percent, per cell "
        "(method and grid settings). * marks the Pareto front of ASR gen. ↓, SARR ↓ and ROUGE-L ↑.",
        "",
        "| Cell | Seed ids | " + " | ".join(f"{c.header} {c.better}" for c in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for r in rows:
        star = " *" if r["pareto"] else ""
        lines.append(
            f"| {r['cell']}{star} | {', '.join(map(str, r['seeds']))} | "
            + " | ".join(cell_text(r["metrics"][c.key]) for c in columns)
            + " |"
        )
    return "\n".join(lines) + "\n"
