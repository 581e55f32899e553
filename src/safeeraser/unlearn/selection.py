"""Checkpoint selection from the dynamics probe: which probed step to keep, and when to stop.

A rule reads the probe's numbers (``forget_rr``, ``forget_asr``, ``sarr``; see
``unlearn.dynamics``) and the loss terms the method logs, at each step the probe ran:

    min sarr subject to forget_asr<=0.05
    max forget_rr subject to sarr<=0.2, forget_nll<=8
    min sarr + 2*forget_asr

The kept step is the best probed step that meets every condition (the earliest of equals); when
none does, the last step is kept and the run folder says so. The rule is a pure function of the
rows of ``log.jsonl``, so recounting the log gives the same step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from safeeraser.errors import UserError

PROBE_KEYS = ("forget_rr", "forget_asr", "sarr")
_TERM = re.compile(r"^\s*(?:([0-9.eE+-]+)\s*\*\s*)?([A-Za-z_][\w+]*)\s*$")
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w+]*)\s*(<=|>=)\s*([0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class Rule:
    text: str
    sense: str  # "min" | "max"
    objective: tuple[tuple[float, str], ...]  # weighted sum of quantities
    conditions: tuple[tuple[str, str, float], ...]  # (quantity, "<=" | ">=", bound)

    def quantities(self) -> set[str]:
        return {q for _, q in self.objective} | {q for q, _, _ in self.conditions}

    def value(self, row: dict) -> float:
        return sum(w * quantity(row, q) for w, q in self.objective)

    def meets(self, row: dict) -> bool:
        return all((quantity(row, q) <= b) if op == "<=" else (quantity(row, q) >= b) for q, op, b in self.conditions)

    def better(self, a: float, b: float) -> bool:
        """Whether objective value a beats b (strictly: an equal later step does not replace an earlier one)."""
        return a < b if self.sense == "min" else a > b


def quantity(row: dict, name: str) -> float:
    """A probe number (``row["eval"][name]``) or a logged loss term (``row[name]``)."""
    if name in PROBE_KEYS:
        return float(row["eval"][name])
    return float(row[name])


def parse_rule(text: str, known: tuple[str, ...]) -> Rule:
    """``min|max OBJECTIVE [subject to NAME<=X, NAME>=Y ...]``; ``known`` are the loss terms the method logs."""
    where = f"--select {text!r}"
    head, _, tail = text.strip().partition(" subject to ")
    sense, _, expr = head.strip().partition(" ")
    if sense not in ("min", "max") or not expr.strip():
        raise UserError(
            f"{where}: expected 'min|max QUANTITY [subject to QUANTITY<=X, ...]', e.g. 'min sarr subject to forget_asr<=0.05'"
        )
    objective = []
    for part in expr.split("+"):
        m = _TERM.match(part)
        if not m:
            raise UserError(f"{where}: cannot read {part.strip()!r}; expected QUANTITY or WEIGHT*QUANTITY joined by +")
        objective.append((_number(m.group(1) or "1", where), m.group(2)))
    conditions = []
    for part in tail.split(",") if tail.strip() else []:
        m = _CONDITION.match(part)
        if not m:
            raise UserError(f"{where}: cannot read the condition {part.strip()!r}; expected QUANTITY<=X or QUANTITY>=X")
        conditions.append((m.group(1), m.group(2), _number(m.group(3), where)))
    rule = Rule(text.strip(), sense, tuple(objective), tuple(conditions))
    allowed = set(PROBE_KEYS) | set(known) | {"loss"}
    unknown = sorted(rule.quantities() - allowed)
    if unknown:
        raise UserError(f"{where}: unknown quantity {', '.join(unknown)}; this run has {', '.join(sorted(allowed))}")
    return rule


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a number") from None


def select(rule: Rule, rows: list[dict]) -> dict:
    """The kept step among the probed rows of a log, and why (what ``selection.json`` holds)."""
    probed = [r for r in rows if "eval" in r]
    best = None
    for row in probed:
        if rule.meets(row) and (best is None or rule.better(rule.value(row), rule.value(best))):
            best = row
    if best is None:
        last = rows[-1]["step"] if rows else 0
        return {
            "rule": rule.text,
            "step": last,
            "value": None,
            "met": False,
            "probed_steps": [r["step"] for r in probed],
            "why": f"no probed step met the conditions of '{rule.text}'; the last step ({last}) is kept",
        }
    value = rule.value(best)
    return {
        "rule": rule.text,
        "step": best["step"],
        "value": value,
        "met": True,
        "probed_steps": [r["step"] for r in probed],
        "why": f"step {best['step']} has the {'lowest' if rule.sense == 'min' else 'highest'} {_expr(rule)} ({value:.4g}) "
        f"of the {len(probed)} probed steps" + (f" that meet {_conds(rule)}" if rule.conditions else ""),
    }


def stale_probes(rule: Rule, rows: list[dict]) -> int:
    """How many probes have run since the kept step improved (for --early-stop)."""
    probed = [r["step"] for r in rows if "eval" in r]
    kept = select(rule, rows)
    if not kept["met"]:
        return len(probed)
    return sum(1 for s in probed if s > kept["step"])


def _expr(rule: Rule) -> str:
    return " + ".join(q if w == 1 else f"{w:g}*{q}" for w, q in rule.objective)


def _conds(rule: Rule) -> str:
    return ", ".join(f"{q}{op}{b:g}" for q, op, b in rule.conditions)
