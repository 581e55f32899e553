"""Plots: training curves, and the forgetting / over-forgetting trade-off across methods."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TERM_ORDER = ("loss", "forget_nll", "refusal_nll", "retain_nll", "retain_kl", "npo", "decouple_nll")


def plot_training(rows: list[dict], path: Path, *, title: str = "") -> Path | None:
    """Every logged loss term against the step; the dynamics probe (if logged) in a second panel."""
    rows = [r for r in rows if "step" in r]
    if not rows:
        return None
    evals = [r for r in rows if "eval" in r]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 3.8), squeeze=False)
    ax = axes[0][0]
    steps = [r["step"] for r in rows]
    for term in TERM_ORDER:
        if term in rows[0]:
            ax.plot(steps, [r.get(term) for r in rows], label=term, lw=1.4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("value")
    ax.set_title(f"{title} loss terms".strip())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if evals:
        ax = axes[0][1]
        es = [r["step"] for r in evals]
        for key, label in (("forget_rr", "refusal on forget prompts"), ("forget_asr", "ASR on forget prompts"), ("sarr", "SARR (unseen harmless images)")):
            ax.plot(es, [r["eval"][key] for r in evals], marker="o", ms=3, label=label)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("optimizer step")
        ax.set_title("unlearning dynamics (offline judge)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
