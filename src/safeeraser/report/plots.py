"""Plots: training curves, and the forgetting / over-forgetting trade-off across methods.

Each cross-run plot takes the report's rows (see ``table``) or ``(label, log rows)`` pairs, draws
one PNG and returns its path, or None when there is nothing to draw. A method keeps its colour
(``method_colours`` of all the report's labels) in every plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from safeeraser.formats import LOSS_PLOT, RUN_LOG  # noqa: E402
from safeeraser.io import atomic_path, read_jsonl  # noqa: E402
from safeeraser.unlearn.methods import VANILLA  # noqa: E402

TERM_ORDER = (
    "loss",
    "forget_nll",
    "refusal_nll",
    "retain_nll",
    "refusal+retain_nll",
    "retain_kl",
    "npo",
    "decouple_nll",
)
# The dynamics probe's keys (see unlearn.dynamics) and what they show.
EVAL_KEYS = (
    ("forget_rr", "refusal on forget prompts"),
    ("forget_asr", "ASR on forget prompts"),
    ("sarr", "SARR (unseen harmless images)"),
)
# One colour per loss term, the same in every panel.
TERM_COLOURS = {term: plt.get_cmap("tab10")(i) for i, term in enumerate(TERM_ORDER)}


def _save(fig, path: Path, dpi: int) -> None:
    """Draw the PNG beside ``path`` and rename it over: a kill never leaves half a picture."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def _plot_terms(ax, rows: list[dict]) -> None:
    steps = [r["step"] for r in rows]
    for term in TERM_ORDER:
        if term in rows[0]:
            ax.plot(steps, [r.get(term) for r in rows], label=term, lw=1.4, color=TERM_COLOURS[term])
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)


def plot_training(rows: list[dict], path: Path, *, title: str = "") -> Path | None:
    """Every logged loss term against the step; the dynamics probe (if logged) in a second panel."""
    rows = [r for r in rows if "step" in r]
    if not rows:
        return None
    evals = [r for r in rows if "eval" in r]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 3.8), squeeze=False)
    ax = axes[0][0]
    _plot_terms(ax, rows)
    ax.set_ylabel("value")
    ax.set_title(f"{title} loss terms".strip())
    ax.legend(fontsize=8)
    if evals:
        ax = axes[0][1]
        es = [r["step"] for r in evals]
        for key, label in EVAL_KEYS:
            ax.plot(es, [r["eval"][key] for r in evals], marker="o", ms=3, label=label)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("optimizer step")
        ax.set_title("unlearning dynamics (offline judge)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def plot_run(folder: Path, method: str) -> Path | None:
    """A run folder's loss plot, drawn from its log (``unlearn``'s ``on_finish``)."""
    folder = Path(folder)
    return plot_training(read_jsonl(folder / RUN_LOG), folder / LOSS_PLOT, title=method)


def method_colours(labels: list[str]) -> dict[str, tuple]:
    """A colour pair per method family (light for X, dark for X+pd) so that partners look related."""
    pairs = plt.get_cmap("tab20")
    families: list[str] = []
    colours = {}
    for label in labels:
        if label == VANILLA:
            colours[label] = (0.2, 0.2, 0.2, 1.0)
            continue
        family, _, suffix = label.partition("+")
        if family not in families:
            families.append(family)
        k = families.index(family) % 10
        colours[label] = pairs(2 * k) if suffix else pairs(2 * k + 1)
    return colours


def _percent(value: float | None) -> float:
    return math.nan if value is None else 100 * value


# Two points' labels overlap when the points are closer than this, in percent on both axes (which
# span -5 to 108 in these plots, at 7-8 pt): about a short name's width across, a line's height up.
LABEL_NEAR = (8.0, 4.0)


@dataclass(frozen=True)
class Label:
    text: str  # the names, one per line, top to bottom
    x: float
    y: float
    ha: str  # "left": the text starts right of (x, y); "right": it ends left of it
    va: str  # "bottom": the text sits above (x, y); "top": below it


def point_labels(points: list[tuple[str, float, float]], near: tuple[float, float] = LABEL_NEAR) -> list[Label]:
    """One label per group of points whose labels would overlap, as (name, x, y) in percent.

    Points within ``near`` of one another join one group, and so does a chain of them; the label
    lists the group's names top to bottom beside its outermost point, turned away from the
    right and top edges. The same points give the same labels in the same order (the PNG stays
    byte for byte the same).
    """
    group = list(range(len(points)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, (_, x, y) in enumerate(points):
        for j, (_, x2, y2) in enumerate(points[:i]):
            if abs(x - x2) <= near[0] and abs(y - y2) <= near[1]:
                group[root(i)] = root(j)
    members: dict[int, list[tuple[str, float, float]]] = {}
    for i, point in enumerate(points):
        members.setdefault(root(i), []).append(point)
    labels = []
    for found in members.values():
        found = sorted(found, key=lambda p: (-p[2], p[1]))  # top to bottom; a stable sort keeps ties in order
        xs, ys = [p[1] for p in found], [p[2] for p in found]
        right, top = max(xs) > 60, max(ys) > 90  # the label would run off the axes there
        labels.append(
            Label(
                "\n".join(p[0] for p in found),
                min(xs) if right else max(xs),
                min(ys) if top else max(ys),
                "right" if right else "left",
                "top" if top else "bottom",
            )
        )
    return labels


def _draw_labels(ax, points: list[tuple[str, float, float]], fontsize: float) -> None:
    for label in point_labels(points):
        offset = (-6 if label.ha == "right" else 6, -4 if label.va == "top" else 4)
        ax.annotate(
            label.text,
            (label.x, label.y),
            xytext=offset,
            textcoords="offset points",
            ha=label.ha,
            va=label.va,
            fontsize=fontsize,
        )


def plot_forgetting_bars(rows: list[dict], path: Path) -> Path | None:
    """Per method: forget quality (ASR, RR on the forget split) beside over-forgetting (SARR)."""
    bars = (
        ("asr_efficacy", "ASR efficacy ↓", "#d62728"),
        ("rr_efficacy", "RR efficacy ↑", "#1f77b4"),
        ("sarr", "SARR ↓", "#ff7f0e"),
    )
    if not any(r[key] is not None for r in rows for key, _, _ in bars):
        return None
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.0))
    for b, (key, name, colour) in enumerate(bars):
        xs = [i + (b - (len(bars) - 1) / 2) * width for i in range(len(rows))]
        heights = [_percent(r[key]) for r in rows]
        ax.bar(xs, [0 if math.isnan(h) else h for h in heights], width, label=name, color=colour)
        # Values on the bars, so that a 0 reads as 0 and a missing metric as n/a.
        for x, h in zip(xs, heights):
            ax.text(
                x,
                1 if math.isnan(h) else h + 1,
                "n/a" if math.isnan(h) else f"{h:.1f}",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
                color="0.3",
            )
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(0, 115)
    ax.set_ylabel("percent")
    ax.set_title("Forgetting (ASR, RR on the forget split) vs over-forgetting (SARR)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(bars), loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def plot_tradeoff(
    rows: list[dict], pairs: list[tuple[dict, dict]], path: Path, colours: dict[str, tuple]
) -> Path | None:
    """SARR against forgetting on unseen images, one point per method, arrows from X to X+pd."""
    panels = (
        ("rr_generality", "RR generality ↑ (refuses unseen harmful images)", lambda v: v),
        ("asr_generality", "1 − ASR generality ↑", lambda v: 1 - v),
    )
    drawable = [p for p in panels if any(r["sarr"] is not None and r[p[0]] is not None for r in rows)]
    if not drawable:
        return None
    fig, axes = plt.subplots(1, len(drawable), figsize=(6.2 * len(drawable), 4.8), squeeze=False)
    for ax, (key, ylabel, transform) in zip(axes[0], drawable):
        points = {
            r["label"]: (_percent(r["sarr"]), _percent(transform(r[key])))
            for r in rows
            if r["sarr"] is not None and r[key] is not None
        }
        for label, (x, y) in points.items():
            ax.scatter(x, y, s=60, color=colours[label], edgecolor="black", linewidth=0.5, zorder=3)
        # Methods often land on or near the same spot (e.g. SARR 0, RR 100): one label per group.
        _draw_labels(ax, [(label, x, y) for label, (x, y) in points.items()], fontsize=8)
        for base, pd in pairs:
            if base["label"] in points and pd["label"] in points:
                ax.annotate(
                    "",
                    xy=points[pd["label"]],
                    xytext=points[base["label"]],
                    arrowprops={
                        "arrowstyle": "->",
                        "color": colours[pd["label"]],
                        "lw": 1.6,
                        "shrinkA": 5,
                        "shrinkB": 5,
                    },
                )
        ax.scatter([0], [100], marker="*", s=160, color="gold", edgecolor="black", zorder=2)
        # above the star: the methods' labels near the top edge go below their points
        ax.annotate(
            "ideal",
            (0, 100),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
        ax.set_xlim(-5, 108)
        ax.set_ylim(-5, 108)
        ax.set_xlabel("SARR ↓ (refuses harmless images: over-forgetting)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle("Over-forgetting trade-off (arrows: X → X+PD)")
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def _grid(n: int, width: float, height: float):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_loss_curves(logs: list[tuple[str, list[dict]]], path: Path) -> Path | None:
    """One panel per run with every logged loss term; the scales differ too much (GA runs away) to share one axis."""
    logs = [(label, [r for r in rows if "step" in r]) for label, rows in logs]
    logs = [(label, rows) for label, rows in logs if rows]
    if not logs:
        return None
    fig, axes = _grid(len(logs), 3.6, 2.8)
    for ax, (label, rows) in zip(axes, logs):
        _plot_terms(ax, rows)
        ax.set_title(label, fontsize=10)
    terms = [t for t in TERM_ORDER if any(t in rows[0] for _, rows in logs)]
    handles = [plt.Line2D([], [], color=TERM_COLOURS[t], lw=1.6) for t in terms]
    fig.legend(handles, terms, loc="lower center", ncol=len(terms), fontsize=8)
    fig.suptitle("Loss terms per run")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path, dpi=100)
    return path


def plot_dynamics(logs: list[tuple[str, list[dict]]], path: Path, colours: dict[str, tuple]) -> Path | None:
    """The dynamics probe over training, one line per run: how fast forgetting and over-forgetting set in."""
    logs = [(label, [r for r in rows if "step" in r and isinstance(r.get("eval"), dict)]) for label, rows in logs]
    logs = [(label, rows) for label, rows in logs if rows]
    if not logs:
        return None
    fig, axes = plt.subplots(1, len(EVAL_KEYS), figsize=(5 * len(EVAL_KEYS), 3.8), squeeze=False)
    for ax, (key, title) in zip(axes[0], EVAL_KEYS):
        for label, rows in logs:
            ax.plot(
                [r["step"] for r in rows],
                [_percent(r["eval"].get(key)) for r in rows],
                marker="o",
                ms=3,
                label=label,
                color=colours[label],
            )
        ax.set_ylim(-3, 103)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("percent")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Unlearning dynamics (greedy answers on a fixed probe, offline judge)")
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def plot_pareto(cells: list[dict], path: Path) -> Path | None:
    """A study's cells, mean over seeds: ASR gen. against SARR, coloured by ROUGE-L, with one
    standard deviation as bars and the Pareto front (``study.summary.mark_pareto``) ringed and joined."""
    from safeeraser.report.seeds import several_seeds

    def mean(cell: dict, key: str) -> float:
        return _percent(cell["metrics"][key]["mean"])

    def std(cell: dict, key: str) -> float:
        value = cell["metrics"][key]["std"]
        return 0.0 if value is None else 100 * value

    points = [c for c in cells if not math.isnan(mean(c, "asr_generality")) and not math.isnan(mean(c, "sarr"))]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.4, 5.4))
    xs, ys = [mean(c, "asr_generality") for c in points], [mean(c, "sarr") for c in points]
    ax.errorbar(
        xs,
        ys,
        xerr=[std(c, "asr_generality") for c in points],
        yerr=[std(c, "sarr") for c in points],
        fmt="none",
        ecolor="0.6",
        elinewidth=1,
        capsize=2,
        zorder=1,
    )
    utility = [mean(c, "rouge_l") for c in points]
    known = [u for u in utility if not math.isnan(u)]
    dots = ax.scatter(
        xs,
        ys,
        c=[u if not math.isnan(u) else 0 for u in utility],
        cmap="viridis",
        vmin=0,
        vmax=max(known + [1.0]),
        s=70,
        edgecolor="black",
        linewidth=0.5,
        zorder=3,
    )
    over = "mean over seeds" if several_seeds(cells) else "one seed"
    fig.colorbar(dots, ax=ax, label=f"ROUGE-L ↑ (percent, {over})")
    front = sorted((x, y) for c, x, y in zip(points, xs, ys) if c.get("pareto"))
    if front:
        ax.scatter(
            *zip(*front),
            s=220,
            facecolor="none",
            edgecolor="crimson",
            linewidth=1.6,
            zorder=4,
            label="Pareto front (ASR, SARR, ROUGE-L)",
        )
        ax.plot(*zip(*front), color="crimson", lw=1, ls="--", zorder=2)
        ax.legend(fontsize=8, loc="upper right")
    _draw_labels(ax, [(c["cell"], x, y) for c, x, y in zip(points, xs, ys)], fontsize=7)
    ax.set_xlim(-5, 108)
    ax.set_ylim(-5, 108)
    ax.set_xlabel("ASR generality ↓ (unsafe answers on unseen harmful images, percent)")
    ax.set_ylabel("SARR ↓ (refuses harmless images: over-forgetting, percent)")
    ax.set_title(f"Study: forgetting vs over-forgetting vs utility, {over}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def plot_relearn(curves: list[tuple[str, list[dict], float | None]], path: Path) -> Path | None:
    """Per audit: ASR on the held-out harmful pairs against the relearning steps, the vanilla model's as a dotted ceiling."""
    curves = [(label, points, ceiling) for label, points, ceiling in curves if points]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.get_cmap("tab10")
    for k, (label, points, ceiling) in enumerate(curves):
        colour = colours(k % 10)
        ax.plot(
            [p["steps"] for p in points],
            [_percent(p["asr_efficacy"]) for p in points],
            marker="o",
            color=colour,
            label=label,
        )
        if ceiling is not None:
            ax.axhline(_percent(ceiling), color=colour, ls=":", lw=1)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("relearning steps")
    ax.set_ylabel("ASR on the held-out harmful pairs, percent")
    ax.set_title("Relearning: how much of the forgotten comes back (dotted: vanilla)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path
