"""Judges combined per verdict: ``--judge unsafe=openai,refusal=keyword,normal=openai``.

A model judge may carry its own model, ``KIND:MODEL`` (``unsafe=llamaguard:FOLDER_OR_ID,
normal=hf:OTHER_FOLDER``); one named without one takes ``--judge-model``.

Each verdict (``base.VERDICTS``) is given by the one judge named for it; a verdict no judge is
named for is not measured (its metrics are null, with the reason, never 0 or 100). Each judge is
asked only for its own verdicts: an LLM judge serving ``unsafe`` alone pays for no refusal
question. The combination's identity records each verdict's judge, so that ``report`` never
puts its numbers beside another judge's.
"""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import KIND_VERDICTS, VERDICTS, JudgeItem, Verdict, produces


def split_name(name: str) -> tuple[str, str | None]:
    """``KIND:MODEL`` as (kind, model); (name, None) without a colon. The model may hold colons itself."""
    kind, sep, model = name.partition(":")
    return kind.strip(), (model.strip() if sep else None)


def parse_spec(spec: str, names: tuple[str, ...]) -> dict[str, str] | None:
    """``verdict=judge`` pairs as a mapping (a judge: ``KIND`` or ``KIND:MODEL``); None for a plain
    judge name (no ``=``)."""
    if "=" not in spec:
        return None
    out: dict[str, str] = {}
    for part in spec.split(","):
        verdict, sep, name = (x.strip() for x in part.partition("="))
        if not sep or not verdict or not name:
            raise UserError(
                f"--judge {spec!r}: {part.strip()!r} is not VERDICT=JUDGE (e.g. unsafe=openai,refusal=keyword)"
            )
        if verdict not in VERDICTS:
            raise UserError(f"--judge {spec!r}: unknown verdict {verdict!r} (expected {', '.join(VERDICTS)})")
        kind, model = split_name(name)
        if kind not in names:
            raise UserError(f"--judge {spec!r}: unknown judge {kind!r} (expected one of {', '.join(names)})")
        if model is not None and not model:
            raise UserError(f"--judge {spec!r}: {name!r} names no model after the colon (KIND:MODEL)")
        if verdict in out:
            raise UserError(f"--judge {spec!r}: verdict {verdict!r} is given twice")
        out[verdict] = name
    return out


def canonical_spec(assignment: dict[str, str]) -> str:
    return ",".join(f"{v}={assignment[v]}" for v in VERDICTS if v in assignment)


class CombinedJudge:
    """One judge per verdict, behind the one-judge interface."""

    def __init__(self, judges: dict[str, object], name: str | None = None):
        """``judges``: verdict -> judge; one judge object may serve several verdicts. ``name``: the
        ``--judge`` value (default: built from the judges' names)."""
        for verdict, judge in judges.items():
            if verdict not in produces(judge):
                raise UserError(f"the {judge.name} judge gives no {verdict!r} verdict: name another judge for it")
        self.by_verdict = {v: judges[v] for v in VERDICTS if v in judges}
        self.name = name or canonical_spec({v: j.name for v, j in self.by_verdict.items()})
        self.verdicts = tuple(self.by_verdict)
        self.reads_images = all(j.reads_images for j in self.by_verdict.values())
        self._judges = list({id(j): j for j in self.by_verdict.values()}.values())
        self.limits = tuple(
            f"{', '.join(self._served(j))} ({j.name}): {limit}"
            for j in self._judges
            for limit in getattr(j, "limits", ())
        )

    def _served(self, judge) -> list[str]:
        return [v for v, j in self.by_verdict.items() if j is judge]

    def judge_for(self, verdict: str):
        return self.by_verdict.get(verdict)

    def missing(self, verdict: str) -> str:
        """Why ``verdict`` is not measured."""
        return f"--judge {self.name} names no judge for the {verdict!r} verdict"

    @property
    def stats(self):
        """The request counts of the judges that send requests, summed (None if none does)."""
        from safeeraser.openai_api import RequestStats

        sending = [j.stats for j in self._judges if getattr(j, "stats", None) is not None]
        return RequestStats(sum(s.sent for s in sending), sum(s.retried for s in sending)) if sending else None

    def identity(self) -> dict:
        return {"kind": "combined", "by_verdict": {v: j.identity() for v, j in self.by_verdict.items()}}

    def judge(self, items: list[JudgeItem], *, progress: bool = False) -> list[Verdict]:
        values: list[dict] = [{} for _ in items]
        errors: list[dict] = [{} for _ in items]
        notes: list[list[str]] = [[] for _ in items]
        cached: list[list[bool]] = [[] for _ in items]
        for judge in self._judges:
            mine = self._served(judge)
            asked = [i for i, item in enumerate(items) if set(KIND_VERDICTS[item.kind]) & set(mine)]
            if not asked:
                continue
            for i, verdict in zip(asked, judge.judge([items[i] for i in asked], progress=progress)):
                for field in (f for f in KIND_VERDICTS[items[i].kind] if f in mine):
                    value = getattr(verdict, field) if verdict.ok else None
                    if value is None:
                        errors[i][field] = (
                            verdict.errors.get(field) or verdict.error or f"the {judge.name} judge gave no {field!r}"
                        )
                    else:
                        values[i][field] = value
                if verdict.note:
                    notes[i].append(verdict.note)
                if getattr(judge, "cache", None) is not None:  # only a judge that could have paid counts
                    cached[i].append(verdict.cached)
        out = []
        for i in range(len(items)):
            error = (
                None
                if values[i]
                else ("; ".join(f"{f}: {why}" for f, why in errors[i].items()) or "no judge gives this item's verdicts")
            )
            out.append(
                Verdict(
                    **values[i],
                    error=error,
                    errors=errors[i],
                    note="; ".join(notes[i]),
                    cached=bool(cached[i]) and all(cached[i]),
                )
            )
        return out
