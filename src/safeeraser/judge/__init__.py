"""Judges behind one interface (see ``base.Judge``); ``make_judge`` builds one by name."""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import Judge, JudgeItem, Verdict

JUDGES = ("keyword", "openai", "hf")


def make_judge(name: str, **options) -> Judge:
    """``keyword`` (offline default), ``openai`` (any OpenAI-compatible endpoint) or ``hf`` (local model)."""
    if name == "keyword":
        from safeeraser.judge.keyword import KeywordJudge

        return KeywordJudge()
    if name == "openai":
        from safeeraser.judge.openai_judge import OpenAIJudge

        return OpenAIJudge(**options)
    if name == "hf":
        from safeeraser.judge.hf_judge import HFJudge

        return HFJudge(**options)
    raise UserError(f"unknown --judge {name!r}: expected one of {', '.join(JUDGES)}")


__all__ = ["Judge", "JudgeItem", "Verdict", "JUDGES", "make_judge"]
