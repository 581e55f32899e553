"""Judges behind one interface (see ``base.Judge``); ``make_judge`` builds one by name."""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import Judge, JudgeItem, Verdict

JUDGES = ("keyword", "openai", "hf")


def make_judge(name: str, **options) -> Judge:
    """``keyword`` (offline default), ``openai`` (any OpenAI-compatible endpoint) or ``hf`` (local model).

    The LLM judges take ``protocol`` ("published", the default, or "strict") and ``prompts`` (a
    YAML file replacing the published templates) besides their own options.
    """
    if name == "keyword":
        from safeeraser.judge.keyword import KeywordJudge

        if options:  # rules, not prompts: an option meant for an LLM judge would be silently ignored
            raise UserError(f"the keyword judge takes no options (got {', '.join(sorted(options))})")
        return KeywordJudge()
    if name == "openai":
        from safeeraser.judge.openai_judge import OpenAIJudge

        return OpenAIJudge(**options)
    if name == "hf":
        from safeeraser.judge.hf_judge import HFJudge

        return HFJudge(**options)
    raise UserError(f"unknown --judge {name!r}: expected one of {', '.join(JUDGES)}")


from safeeraser.judge.protocols import PROTOCOLS  # noqa: E402  (after base: it imports the prompts)

__all__ = ["Judge", "JudgeItem", "Verdict", "JUDGES", "PROTOCOLS", "make_judge"]
