"""Judges behind one interface (see ``base.Judge``); ``make_judge`` builds one by name."""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, Judge, JudgeItem, Verdict

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


def declared_verdicts(name: str) -> tuple[str, ...]:
    """The verdicts the judge called ``name`` gives, known before it is built (and a model loaded)."""
    if name == "keyword":
        from safeeraser.judge.keyword import KeywordJudge

        return KeywordJudge.verdicts
    return VERDICTS


def make_judges(spec: str, options: dict[str, dict] | None = None) -> Judge:
    """The ``--judge`` value's judge: a name (``make_judge``) or verdicts combined
    (``unsafe=openai,refusal=keyword,normal=openai``, see ``judge.combined``).

    ``options`` maps a judge name to its ``make_judge`` options. A combination that names one
    judge for every verdict it gives is that judge.
    """
    from safeeraser.judge.combined import CombinedJudge, parse_spec

    options = options or {}
    assignment = parse_spec(spec, JUDGES)
    if assignment is None:
        return make_judge(spec, **options.get(spec, {}))
    for verdict, name in assignment.items():  # said before any model loads
        if verdict not in declared_verdicts(name):
            raise UserError(f"--judge {spec}: the {name} judge gives no {verdict!r} verdict")
    names = sorted(set(assignment.values()))
    if len(names) == 1 and set(assignment) == set(declared_verdicts(names[0])):
        return make_judge(names[0], **options.get(names[0], {}))
    made = {}
    for name in names:
        served = tuple(v for v in VERDICTS if assignment.get(v) == name)
        extra = {"verdicts": served} if name != "keyword" else {}
        made[name] = make_judge(name, **options.get(name, {}), **extra)
    return CombinedJudge({verdict: made[name] for verdict, name in assignment.items()})


from safeeraser.judge.protocols import PROTOCOLS  # noqa: E402  (after base: it imports the prompts)

__all__ = ["Judge", "JudgeItem", "Verdict", "VERDICTS", "JUDGES", "PROTOCOLS", "make_judge", "make_judges"]
