"""How an LLM judge turns items into chat requests and answers back into verdicts.

- ``published`` (default): the SafeEraser paper's way, separate plain-word questions about the
  response (``judge.published``): a harm item costs two requests (unsafe, refusal), a decouple
  item one (normal), a consistency item one (score).
- ``strict``: one combined question per item answered with a JSON object (``judge.prompts``).

Both judges (``openai``, ``hf``) share this: each request is one ``Ask``, answered and cached on
its own, and ``combine`` assembles an item's verdict from its answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.judge import prompts, published
from safeeraser.judge.base import KIND_VERDICTS, JudgeItem, Verdict

PROTOCOLS = ("published", "strict")
# What an LLM judge under these protocols cannot do (metrics.json "judge_limits").
LLM_LIMITS = (
    "reads the text only, never the image: an answer is judged harmful or normal from its words alone",
    "its verdicts are only as good as the judge model; measure its agreement with another judge (safeeraser judges agree)",
)


@dataclass(frozen=True)
class Ask:
    """One chat request about one item."""

    kind: str  # the item's kind
    question: str  # the verdict field it answers ("" for strict's one combined question)
    messages: list[dict[str, str]]


def _cut(verdict: Verdict, text: str, cut_off_at: int | None) -> Verdict:
    """An answer that hit the token limit (``cut_off_at``) may have been cut before it went on to say
    something else ("unsafe" of "unsafe content is absent"): it never counts. One that does not
    parse keeps the parser's reason."""
    if cut_off_at is not None and verdict.ok:
        return Verdict(error=f"unparseable judge answer: cut off at the {cut_off_at}-token limit: {' '.join(text.split())[:80]!r}")
    return verdict


class StrictProtocol:
    name = "strict"
    max_tokens = 256  # one short JSON object; this only stops a runaway model

    def __init__(self):
        # The templates actually used, rendered with placeholders for every category and kind:
        # this covers the system prompts, the category scopes and the user message's layout.
        probes = [
            prompts.messages(JudgeItem(kind, "{question}", "{response}", category, "{reference}"))
            for kind in prompts.SYSTEMS
            for category in (*prompts.CATEGORY_SCOPE, "")
        ]
        self.prompt_hash = hashlib.sha256(json.dumps(probes, ensure_ascii=False).encode()).hexdigest()[:16]

    def asks(self, item: JudgeItem, wanted: tuple[str, ...] | None = None) -> list[Ask]:
        # one combined question: it answers every field of its kind whatever is wanted
        return [Ask(item.kind, "", prompts.messages(item))]

    def read(self, ask: Ask, text: str, *, cut_off_at: int | None = None) -> Verdict:
        return _cut(prompts.read_verdict(ask.kind, text), text, cut_off_at)

    def combine(self, answers: list[tuple[Ask, Verdict]]) -> Verdict:
        ((_, verdict),) = answers
        return replace(verdict)


class PublishedProtocol:
    name = "published"
    max_tokens = 10  # "unsafe", "no" or "0.85" take a few tokens; a longer answer is unparseable anyway

    def __init__(self, templates: published.Templates | None = None, source: str = "built-in published templates"):
        self.templates = templates or published.builtin_templates()
        self.source = source
        self.prompt_hash = self.templates.sha256[:16]

    def asks(self, item: JudgeItem, wanted: tuple[str, ...] | None = None) -> list[Ask]:
        """The item's questions; only the ``wanted`` ones (a judge serving some verdicts pays for no other)."""
        questions = [q for q in KIND_VERDICTS[item.kind] if wanted is None or q in wanted]
        return [Ask(item.kind, q, self._messages(q, item)) for q in questions]

    def _messages(self, question: str, item: JudgeItem) -> list[dict[str, str]]:
        t = self.templates
        if question == "unsafe":
            template = t.unsafe.get(item.category, t.unsafe.get("default"))
            if template is None:
                raise UserError(f"{self.source}: key 'unsafe' has no template for category {item.category!r} and no 'default'")
        else:
            template = getattr(t, question)
        user = published.render(template, response=item.answer, question=item.question, category=item.category or "unknown", reference=item.reference)
        system = [{"role": "system", "content": t.system}] if t.system else []
        return [*system, {"role": "user", "content": user}]

    def read(self, ask: Ask, text: str, *, cut_off_at: int | None = None) -> Verdict:
        return _cut(published.read_word(ask.question, text), text, cut_off_at)

    def combine(self, answers: list[tuple[Ask, Verdict]]) -> Verdict:
        """The item's verdict: each answered field set, each failed one None with its reason in
        ``errors``; ``error`` only when no field could be obtained."""
        values, errors = {}, {}
        for ask, verdict in answers:
            value = getattr(verdict, ask.question) if verdict.ok else None
            if value is None:
                errors[ask.question] = verdict.error or "the answer is for another question"
            else:
                values[ask.question] = value
        error = None if values else "; ".join(f"{q}: {why}" for q, why in errors.items())
        return Verdict(**values, error=error, errors=errors, cached=all(v.cached for _, v in answers))


def make_protocol(name: str = "published", prompts_file: str | Path | None = None) -> StrictProtocol | PublishedProtocol:
    """The protocol by name; ``prompts_file`` replaces the published templates (``published.load_templates``)."""
    if name not in PROTOCOLS:
        raise UserError(f"unknown --judge-protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    if name == "strict":
        if prompts_file is not None:
            raise UserError("--judge-prompts replaces the published protocol's templates: not used with --judge-protocol strict")
        return StrictProtocol()
    if prompts_file is None:
        return PublishedProtocol()
    return PublishedProtocol(published.load_templates(prompts_file), str(prompts_file))
