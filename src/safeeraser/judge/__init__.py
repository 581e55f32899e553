"""Judges behind one interface (see ``base.Judge``); ``make_judge`` builds one by name."""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, Judge, JudgeItem, Verdict

JUDGES = ("keyword", "openai", "hf", "llamaguard", "wildguard", "harmbench")
CLASSIFIERS = ("llamaguard", "wildguard", "harmbench")
# Options only an API engine uses: a classifier given none of them (no base_url) runs locally.
API_OPTIONS = ("base_url", "api_key", "concurrency", "timeout", "max_retries")


def make_judge(name: str, **options) -> Judge:
    """``keyword`` (offline default), ``openai`` (any OpenAI-compatible endpoint), ``hf`` (local model),
    or a safety classifier: ``llamaguard``, ``wildguard``, ``harmbench`` (``judge.classifiers``).

    The LLM judges take ``protocol`` ("published", the default, "question-aware" or "strict"),
    ``prompts`` (a YAML file replacing the published templates) and ``score`` ("ours", the
    default, or "released": how the consistency score is asked and read) besides their own options.
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
    if name in ("llamaguard", "wildguard", "harmbench"):
        return _classifier(name, options)
    raise UserError(f"unknown --judge {name!r}: expected one of {', '.join(JUDGES)}")


def _classifier(name: str, options: dict) -> Judge:
    """A safety classifier (``judge.classifiers``) on a local model, or on an OpenAI-compatible
    server when ``base_url`` is given; ``model`` names it either way."""
    from safeeraser.judge.classifiers import make_classifier

    options = dict(options)
    for unused in ("protocol", "prompts", "score"):
        if options.pop(unused, None) is not None:
            raise UserError(f"the {name} judge has its own prompt format: --judge-{unused} is not used by it")
    if not options.get("model"):
        raise UserError(f"--judge {name} needs --judge-model: a local model folder, a cached Hugging Face id, or the name a server (--base-url) serves it under")
    if options.get("base_url"):
        from safeeraser.judge.openai_judge import OpenAIJudge

        judge = OpenAIJudge(**options, protocol=make_classifier(name))
    else:
        given = [k for k in API_OPTIONS if options.get(k) is not None]
        if given:
            raise UserError(f"the {name} judge runs locally without --base-url: {', '.join(given)} not used")
        from safeeraser.judge.hf_judge import HFJudge

        judge = HFJudge(**{k: v for k, v in options.items() if k not in API_OPTIONS}, protocol=make_classifier(name))
    judge.name = name  # (its identity keeps the engine as kind and the classifier as protocol)
    return judge


def declared_verdicts(name: str) -> tuple[str, ...]:
    """The verdicts the judge called ``name`` gives, known before it is built (and a model loaded)."""
    if name == "keyword":
        from safeeraser.judge.keyword import KeywordJudge

        return KeywordJudge.verdicts
    if name in ("llamaguard", "wildguard", "harmbench"):
        from safeeraser.judge.classifiers import make_classifier

        return make_classifier(name).verdicts
    return VERDICTS


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
        if kind == "keyword" and model is not None:
            raise UserError(f"--judge {spec}: the keyword judge takes no model")
        return make_judge(kind, **options.get(kind, {}) | ({"model": model} if model else {}))
    for verdict, name in assignment.items():  # said before any model loads
        kind, model = split_name(name)
        if verdict not in declared_verdicts(kind):
            raise UserError(f"--judge {spec}: the {kind} judge gives no {verdict!r} verdict")
        if kind == "keyword" and model is not None:
            raise UserError(f"--judge {spec}: the keyword judge takes no model ({name!r})")
        if kind in ("hf", *CLASSIFIERS) and model is None and not options.get(kind, {}).get("model"):
            raise UserError(f"--judge {kind} needs --judge-model or {kind}:MODEL: a local model folder, a cached Hugging Face id, or the name a server (--base-url) serves it under")
    names = sorted(set(assignment.values()))
    made = {}
    for name in names:
        kind, model = split_name(name)
        chosen = dict(options.get(kind, {})) | ({"model": model} if model is not None else {})
        served = tuple(v for v in VERDICTS if assignment.get(v) == name)
        if len(names) == 1 and set(served) == set(declared_verdicts(kind)):
            return make_judge(kind, **chosen)
        made[name] = make_judge(kind, **chosen, **({"verdicts": served} if kind != "keyword" else {}))
    return CombinedJudge({verdict: made[name] for verdict, name in assignment.items()}, name=canonical_spec(assignment))


from safeeraser.judge.protocols import PROTOCOLS  # noqa: E402  (after base: it imports the prompts)

__all__ = ["Judge", "JudgeItem", "Verdict", "VERDICTS", "JUDGES", "PROTOCOLS", "make_judge", "make_judges"]
