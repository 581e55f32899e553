"""The judges by name: one ``JudgeKind`` each, declared once in ``JUDGES``.

An entry says what the command line, the study runner, the report and the docs need to know
before any model loads: the verdicts it gives, the options it takes (a pydantic model, so that a
misspelt or wrongly typed option is a one-line error), which groups of command-line options
reach it (``OPTION_GROUPS``), whether it reads images, and its meaning. ``judge_options`` routes
the ``--judge*`` options of ``evaluate`` (and of a study's evaluation section) to the judges a
``--judge`` value names, and refuses an option none of them would use.

A plugin adds a judge through the entry-point group ``safeeraser.judges``: one ``JudgeKind``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, Judge
from safeeraser.registry import Registry

# The groups of command-line options a judge may take, each with the flags that carry it (as
# ``evaluate`` names them) and the build options they become.
OPTION_GROUPS: dict[str, dict[str, str]] = {
    "api": {
        "--base-url": "base_url",
        "--api-key": "api_key",
        "--concurrency": "concurrency",
        "--judge-timeout": "timeout",
        "--judge-retries": "max_retries",
    },
    "model": {"--judge-model": "model"},
    "prompts": {"--judge-protocol": "protocol", "--judge-prompts": "prompts", "--judge-score": "score"},
    "cache": {"--cache": "cache", "--no-cache": "cache"},
    "images": {"--judge-images": "images"},
}
API_OPTIONS = tuple(OPTION_GROUPS["api"].values())


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class NoOptions(_Options):
    """A judge that takes no options (rules, not prompts)."""


class LLMOptions(_Options):
    """What every model judge reads: which model, which verdicts, the prompts and the verdict cache."""

    model: str | None = None
    verdicts: tuple[str, ...] | None = None
    protocol: Any = None  # a protocol name ("published", "question-aware", "strict") or a protocol object
    prompts: str | Path | None = None
    score: str | None = None
    cache: Path | None = None


class APIOptions(LLMOptions):
    """An engine behind an OpenAI-compatible endpoint."""

    base_url: str | None = None
    api_key: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    backoff: float | None = None
    images: bool | None = None


class LocalOptions(LLMOptions):
    """A model run in this process through transformers."""

    batch_size: int | None = None
    max_new_tokens: int | None = None


class ClassifierOptions(LLMOptions):
    """A safety classifier: a local model, or served (``base_url``) under the API options."""

    base_url: str | None = None
    api_key: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    backoff: float | None = None
    batch_size: int | None = None
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class JudgeKind:
    name: str
    meaning: str  # one line, for the report and the docs
    build: Callable[..., Judge]  # (**options) -> the judge
    options: type[BaseModel] = NoOptions
    verdicts: Callable[[], tuple[str, ...]] = lambda: VERDICTS  # given before the judge is built
    groups: tuple[str, ...] = ()  # OPTION_GROUPS that reach it from the command line
    api_first: bool = False  # in a combination, the API options are its own (not a classifier's)
    needs_model: bool = False  # built without a model is an error
    reads_images: str = "no"  # "no", "yes" or "optional" (an option or the model decides)
    limits: tuple[str, ...] = field(default=())

    @property
    def takes_model(self) -> bool:
        return "model" in self.groups

    def make(self, **options) -> Judge:
        """The judge, its options checked against ``options`` first."""
        if (
            options and not self.options.model_fields
        ):  # rules, not prompts: an LLM judge's option would be silently ignored
            raise UserError(f"the {self.name} judge takes no options (got {', '.join(sorted(options))})")
        try:
            self.options.model_validate(options)
        except ValidationError as e:
            problem = e.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "options"
            if problem["type"] == "extra_forbidden":
                raise UserError(
                    f"the {self.name} judge takes no option {where!r} (it takes: {', '.join(self.options.model_fields) or 'none'})"
                ) from None
            raise UserError(f"the {self.name} judge's option {where}: {problem['msg']}") from None
        return self.build(**options)


JUDGES: Registry[JudgeKind] = Registry("judge", "safeeraser.judges", JudgeKind)


def _keyword(**options) -> Judge:
    from safeeraser.judge.keyword import KeywordJudge

    return KeywordJudge()


def _keyword_verdicts() -> tuple[str, ...]:
    from safeeraser.judge.keyword import KeywordJudge

    return KeywordJudge.verdicts


def _openai(**options) -> Judge:
    from safeeraser.judge.openai_judge import OpenAIJudge

    return OpenAIJudge(**options)


def _hf(**options) -> Judge:
    from safeeraser.judge.hf_judge import HFJudge

    if not options.get("model"):
        raise UserError(
            "--judge hf needs --judge-model (or hf:MODEL): a local model folder or a cached Hugging Face id"
        )

    return HFJudge(**options)


def _classifier(name: str) -> Callable[..., Judge]:
    def build(**options) -> Judge:
        """A safety classifier (``judge.classifiers``) on a local model, or on an OpenAI-compatible
        server when ``base_url`` is given; ``model`` names it either way."""
        from safeeraser.judge.classifiers import make_classifier

        options = dict(options)
        for unused in ("protocol", "prompts", "score"):
            if options.pop(unused, None) is not None:
                raise UserError(f"the {name} judge has its own prompt format: --judge-{unused} is not used by it")
        if not options.get("model"):
            raise UserError(
                f"--judge {name} needs --judge-model: a local model folder, a cached Hugging Face id, or the name a server (--base-url) serves it under"
            )
        if options.get("base_url"):
            from safeeraser.judge.openai_judge import OpenAIJudge

            judge = OpenAIJudge(**options, protocol=make_classifier(name))
        else:
            given = [k for k in API_OPTIONS if options.get(k) is not None]
            if given:
                raise UserError(f"the {name} judge runs locally without --base-url: {', '.join(given)} not used")
            from safeeraser.judge.hf_judge import HFJudge

            judge = HFJudge(
                **{k: v for k, v in options.items() if k not in API_OPTIONS}, protocol=make_classifier(name)
            )
        judge.name = name  # (its identity keeps the engine as kind and the classifier as protocol)
        return judge

    return build


def _classifier_verdicts(name: str) -> Callable[[], tuple[str, ...]]:
    def verdicts() -> tuple[str, ...]:
        from safeeraser.judge.classifiers import make_classifier

        return make_classifier(name).verdicts

    return verdicts


JUDGES.register(
    JudgeKind(
        "keyword",
        "the offline keyword judge (refusal phrases + degenerate-text detection; any other answer to a harmful prompt counts as unsafe)",
        _keyword,
        verdicts=_keyword_verdicts,
    )
)
JUDGES.register(
    JudgeKind(
        "openai",
        "an LLM judge over an OpenAI-compatible endpoint",
        _openai,
        APIOptions,
        groups=("model", "api", "prompts", "cache", "images"),
        api_first=True,
        reads_images="optional",
    )
)
JUDGES.register(
    JudgeKind(
        "hf",
        "a local Hugging Face model as judge",
        _hf,
        LocalOptions,
        groups=("model", "prompts", "cache"),
        needs_model=True,
        reads_images="optional",
    )
)
for _name, _meaning in (
    ("llamaguard", "the Llama Guard safety classifier (unsafe only)"),
    ("wildguard", "the WildGuard safety classifier (unsafe and refusal)"),
    ("harmbench", "the HarmBench classifier (unsafe only)"),
):
    JUDGES.register(
        JudgeKind(
            _name,
            _meaning,
            _classifier(_name),
            ClassifierOptions,
            verdicts=_classifier_verdicts(_name),
            groups=("model", "api", "cache"),
            needs_model=True,
            reads_images="optional",
        )
    )


def judge_options(spec: str, flags: dict[str, Any], default_cache: Path | None = None) -> dict[str, dict]:
    """The build options of each judge kind ``spec`` names, from the ``--judge*`` flags given
    (``{"--judge-model": ..., "--base-url": ..., ...}``; None = not given; ``--no-cache`` True
    means no cache, else ``--cache`` or ``default_cache``). A flag that no judge named would use
    is an error, as is a ``--judge-model`` that could belong to two of them.
    """
    from safeeraser.judge.combined import parse_spec, split_name

    assignment = parse_spec(spec, JUDGES)
    named = set(assignment.values()) if assignment is not None else {spec}
    kinds = {split_name(n)[0] for n in named}
    if not kinds <= set(JUDGES):
        raise UserError(f"unknown --judge {spec!r}: expected one of {', '.join(JUDGES)}")
    entries = {kind: JUDGES[kind] for kind in kinds}
    model_kinds = {k for k, e in entries.items() if e.takes_model}
    # model judges named without their own model (KIND:MODEL) take --judge-model
    unnamed = {split_name(n)[0] for n in named if split_name(n)[1] is None} & model_kinds
    if len(unnamed) > 1:
        raise UserError(
            f"--judge {spec}: --judge-model would name the model of {' and '.join(sorted(unnamed))}: give each its own, e.g. unsafe=llamaguard:FOLDER,normal=openai:gpt-4o"
        )
    # Which kinds each group reaches. The API options are the API-first judge's in a combination
    # with one (classifiers then run locally); the prompt options reach the judges that read
    # prompts, or, where none does, the model judges, which then say they have their own format.
    api = {k for k, e in entries.items() if "api" in e.groups}
    reach = {
        "model": unnamed,
        "api": {k for k in api if entries[k].api_first} or api,
        "prompts": {k for k, e in entries.items() if "prompts" in e.groups} or model_kinds,
        "cache": model_kinds,
        "images": {k for k, e in entries.items() if "images" in e.groups},
    }
    given = {flag: value for flag, value in flags.items() if value is not None and value is not False}
    unused = [
        flag for group, members in OPTION_GROUPS.items() for flag in members if flag in given and not reach[group]
    ]
    if unused:
        raise UserError(f"{', '.join(unused)}: not used by --judge {spec}")
    options: dict[str, dict] = {}
    for group, members in OPTION_GROUPS.items():
        for kind in reach[group]:
            chosen = options.setdefault(kind, {})
            if group == "cache":
                chosen["cache"] = None if given.get("--no-cache") else (given.get("--cache") or default_cache)
                continue
            for flag, option in members.items():
                if flag in given:
                    chosen[option] = given[flag]
    return options
