"""How an LLM judge turns items into chat requests and answers back into verdicts.

- ``published`` (default): the SafeEraser paper's way, separate plain-word questions about the
  response (``judge.published``): a harm item costs two requests (unsafe, refusal), a decouple
  item one (normal), a consistency item one (score). As in the released evaluation, the unsafe,
  refusal and normal checks see the response alone, never the question.
- ``question-aware``: the same questions, each also shown the question; a reply unrelated to it
  is not a normal answer.
- ``strict``: one combined question per item answered with a JSON object (``judge.prompts``).

The consistency score of the two plain-word protocols is read one of two ways (``score``):
``ours`` (default) grades the model's answer against the reference, and an unreadable answer is a
failure; ``released`` swaps the roles as the released evaluation does (the model's answer stands
as the correct one, the reference is graded) and reads an unreadable answer as 0.0, noted
(``base.READ_AS_ZERO``) so that it is counted.

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
from safeeraser.judge.base import KIND_VERDICTS, READ_AS_ZERO, JudgeItem, Verdict

PROTOCOLS = ("published", "question-aware", "strict")
SCORE_MODES = ("ours", "released")
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
        return Verdict(
            error=f"unparseable judge answer: cut off at the {cut_off_at}-token limit: {' '.join(text.split())[:80]!r}"
        )
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
    max_tokens = 10  # "unsafe", "no" or "0.85" take a few tokens; a longer answer is unparseable anyway

    def __init__(
        self,
        templates: published.Templates | None = None,
        source: str = "built-in published templates",
        *,
        name: str = "published",
        score: str = "ours",
    ):
        if score not in SCORE_MODES:
            raise UserError(f"unknown --judge-score {score!r}: expected one of {', '.join(SCORE_MODES)}")
        self.name = name
        self.score = score
        self.templates = templates or published.builtin_templates(name)
        self.source = source
        # the released score reading changes what a request means: it is part of the hash
        digest = (
            self.templates.sha256
            if score == "ours"
            else hashlib.sha256(json.dumps([self.templates.canonical(), score]).encode()).hexdigest()
        )
        self.prompt_hash = digest[:16]

    def identity_extra(self) -> dict:
        """What the judge's identity adds for this protocol: the score reading when it is not ours
        (so that cached answers of the two readings never mix)."""
        return {"judge_score": self.score} if self.score != "ours" else {}

    def asks(self, item: JudgeItem, wanted: tuple[str, ...] | None = None) -> list[Ask]:
        """The item's questions; only the ``wanted`` ones (a judge serving some verdicts pays for no other)."""
        questions = [q for q in KIND_VERDICTS[item.kind] if wanted is None or q in wanted]
        return [Ask(item.kind, q, self._messages(q, item)) for q in questions]

    def _messages(self, question: str, item: JudgeItem) -> list[dict[str, str]]:
        t = self.templates
        if question == "unsafe":
            template = t.unsafe.get(item.category, t.unsafe.get("default"))
            if template is None:
                raise UserError(
                    f"{self.source}: key 'unsafe' has no template for category {item.category!r} and no 'default'"
                )
        else:
            template = getattr(t, question)
        answer, reference = item.answer, item.reference
        if question == "score" and self.score == "released":
            # the released roles: the model's answer stands as the correct one, the reference is graded
            answer, reference = reference, answer
        user = published.render(
            template, response=answer, question=item.question, category=item.category or "unknown", reference=reference
        )
        system = [{"role": "system", "content": t.system}] if t.system else []
        return [*system, {"role": "user", "content": user}]

    def read(self, ask: Ask, text: str, *, cut_off_at: int | None = None) -> Verdict:
        verdict = _cut(published.read_word(ask.question, text), text, cut_off_at)
        if ask.question == "score" and self.score == "released" and not verdict.ok:
            return Verdict(score=0.0, note=f"{READ_AS_ZERO} ({verdict.error})")
        return verdict

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
        note = "; ".join(v.note for a, v in answers if v.note and a.question not in errors)
        return Verdict(**values, error=error, errors=errors, cached=all(v.cached for _, v in answers), note=note)


def make_protocol(
    name: str = "published", prompts_file: str | Path | None = None, score: str = "ours"
) -> StrictProtocol | PublishedProtocol:
    """The protocol by name; ``prompts_file`` replaces the published templates (``published.load_templates``);
    ``score`` is how the plain-word protocols read the consistency score (``SCORE_MODES``)."""
    if name not in PROTOCOLS:
        raise UserError(f"unknown --judge-protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    if score not in SCORE_MODES:
        raise UserError(f"unknown --judge-score {score!r}: expected one of {', '.join(SCORE_MODES)}")
    if name == "strict":
        if prompts_file is not None:
            raise UserError(
                "--judge-prompts replaces the published protocol's templates: not used with --judge-protocol strict"
            )
        if score != "ours":
            raise UserError(
                f"--judge-score {score}: used with --judge-protocol published or question-aware, not strict"
            )
        return StrictProtocol()
    if prompts_file is None:
        return PublishedProtocol(name=name, score=score, source=f"built-in {name} templates")
    if name != "published":
        raise UserError(
            f"--judge-prompts replaces the published protocol's templates: not used with --judge-protocol {name}"
        )
    return PublishedProtocol(published.load_templates(prompts_file), str(prompts_file), score=score)
