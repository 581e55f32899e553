"""What METRICS.json and its judgments file record about the judge: each row's judge identity,
which judge gave each verdict, what each judge cannot tell, why a verdict was not measured."""

from __future__ import annotations

import json
from pathlib import Path

from safeeraser.judge.base import KIND_VERDICTS, VERDICTS, Judge, judge_for


def judgments_path(metrics_path: Path) -> Path:
    return metrics_path.with_name(metrics_path.stem + ".judgments.jsonl")


def _str(p) -> str | None:
    return str(Path(p).resolve()) if p else None


def _judgment_row(s, judge: dict) -> dict:
    row = {
        "metric": s.metric,
        "split": s.split,
        "record": s.record,
        "where": s.where,
        "category": s.category,
        "question": s.item.question,
        "answer": s.item.answer,
    }
    if s.item.reference:
        row["reference"] = s.item.reference
    row.update(s.verdict.as_dict() if s.verdict is not None else {"error": "not judged"})
    row["judge"] = judge
    return row


def _identity(judge) -> dict:
    return judge.identity() if hasattr(judge, "identity") else {"kind": judge.name}


def _row_judge(judge: Judge, kind: str) -> dict:
    """The identity of the judge behind an item of ``kind``'s verdicts: the one judge that gave
    them all, or, where a combination's judges shared them, each verdict's (as ``CombinedJudge``
    records itself)."""
    by = {v: _identity(chosen) for v in KIND_VERDICTS[kind] if (chosen := judge_for(judge, v)) is not None}
    distinct = {json.dumps(i, sort_keys=True) for i in by.values()}
    return next(iter(by.values())) if len(distinct) == 1 else {"kind": "combined", "by_verdict": by}


def _why_not(judge: Judge, verdict: str) -> str:
    """Why ``judge`` gives no ``verdict``: said beside the null metric."""
    if hasattr(judge, "missing"):
        return judge.missing(verdict)
    return f"the {judge.name} judge gives no {verdict!r} verdict"


def _judge_by_verdict(judge: Judge) -> dict:
    """verdict -> the identity of the judge that gave it and whether it saw the image (None: not measured)."""
    out = {}
    for verdict in VERDICTS:
        chosen = judge_for(judge, verdict)
        if chosen is None:
            out[verdict] = None
            continue
        out[verdict] = {**_identity(chosen), "reads_images": bool(getattr(chosen, "reads_images", False))}
    return out


def _judge_limits(judge: Judge) -> dict[str, list[str]]:
    """judge name -> what it cannot tell, as it states it."""
    judges = {}
    for verdict in VERDICTS:
        chosen = judge_for(judge, verdict)
        if chosen is not None:
            judges.setdefault(chosen.name, list(getattr(chosen, "limits", ())))
    return judges
