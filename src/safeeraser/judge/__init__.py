"""Judges behind one interface (see ``base.Judge``), registered by name in ``judge.registry``;
``make_judges`` builds the one a ``--judge`` value names."""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, Judge, JudgeItem, Verdict
from safeeraser.judge.registry import JUDGES, JudgeKind, judge_options


def make_judge(name: str, **options) -> Judge:
    """The judge registered as ``name`` (``judge.registry.JUDGES``: ``keyword``, the offline
    default; ``openai``, any OpenAI-compatible endpoint; ``hf``, a local model; the safety
    classifiers ``llamaguard``, ``wildguard``, ``harmbench``; and any plugin's), built with
    ``options``, which its entry checks first.

    The LLM judges take ``protocol`` ("published", the default, "question-aware" or "strict"),
    ``prompts`` (a YAML file replacing the published templates) and ``score`` ("ours", the
    default, or "released": how the consistency score is asked and read) besides their own options.
    """
    if name not in JUDGES:
        raise UserError(f"unknown --judge {name!r}: expected one of {', '.join(JUDGES)}")
    return JUDGES[name].make(**options)


def declared_verdicts(name: str) -> tuple[str, ...]:
    """The verdicts the judge called ``name`` gives, known before it is built (and a model loaded)."""
    return JUDGES[name].verdicts()


def make_judges(spec: str, options: dict[str, dict] | None = None) -> Judge:
    """The ``--judge`` value's judge: a name (``make_judge``) or verdicts combined
    (``unsafe=openai,refusal=keyword,normal=openai``, see ``judge.combined``).

    ``options`` maps a judge kind to its ``make_judge`` options; in a combination a judge named
    ``KIND:MODEL`` takes that model instead of the options' one, so that each verdict's model
    judge may be a different model. A combination that names one judge for every verdict it
    gives is that judge.
    """
    from safeeraser.judge.combined import CombinedJudge, canonical_spec, parse_spec, split_name

    options = options or {}
    assignment = parse_spec(spec, JUDGES)
    if assignment is None:
        kind, model = split_name(spec)
        if model is not None and kind in JUDGES and not JUDGES[kind].takes_model:
            raise UserError(f"--judge {spec}: the {kind} judge takes no model")
        return make_judge(kind, **options.get(kind, {}) | ({"model": model} if model else {}))
    for verdict, name in assignment.items():  # said before any model loads
        kind, model = split_name(name)
        if verdict not in declared_verdicts(kind):
            raise UserError(f"--judge {spec}: the {kind} judge gives no {verdict!r} verdict")
        if model is not None and not JUDGES[kind].takes_model:
            raise UserError(f"--judge {spec}: the {kind} judge takes no model ({name!r})")
        if JUDGES[kind].needs_model and model is None and not options.get(kind, {}).get("model"):
            raise UserError(
                f"--judge {kind} needs --judge-model or {kind}:MODEL: a local model folder, a cached Hugging Face id, or the name a server (--base-url) serves it under"
            )
    names = sorted(set(assignment.values()))
    made = {}
    for name in names:
        kind, model = split_name(name)
        chosen = dict(options.get(kind, {})) | ({"model": model} if model is not None else {})
        served = tuple(v for v in VERDICTS if assignment.get(v) == name)
        if len(names) == 1 and set(served) == set(declared_verdicts(kind)):
            return make_judge(kind, **chosen)
        made[name] = make_judge(
            kind, **chosen, **({"verdicts": served} if "verdicts" in JUDGES[kind].options.model_fields else {})
        )
    return CombinedJudge({verdict: made[name] for verdict, name in assignment.items()}, name=canonical_spec(assignment))


from safeeraser.judge.protocols import PROTOCOLS  # noqa: E402  (after base: it imports the prompts)

__all__ = [
    "Judge",
    "JudgeItem",
    "JudgeKind",
    "Verdict",
    "VERDICTS",
    "JUDGES",
    "PROTOCOLS",
    "judge_options",
    "make_judge",
    "make_judges",
]
