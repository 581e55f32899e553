"""The LLM judge over any OpenAI-compatible Chat Completions endpoint (GPT-4o or a local server).

Requests run in a thread pool, deterministically (temperature 0), retried as every request to
an OpenAI-compatible server is (``safeeraser.openai_api``). An answer that is not what its prompt asked for is not retried (at
temperature 0 it would come back the same) and becomes a failed (sub-)verdict.

What is asked comes from the protocol (``judge.protocols``): ``published`` (and
``question-aware``) asks one or two plain-word questions per item, ``strict`` one JSON
question. Each request is one question: identical ones are asked once per run, and every successful answer goes to the cache at once,
so an interrupted run loses at most the requests in flight and a rerun asks only the rest.
Problems that no retry can fix (bad key, wrong URL or model, endpoint unreachable) stop the
run with a ``UserError``.

With ``images=True`` (``evaluate --judge-images``) each question also shows the item's image, as
a data URL before the question's text, to a judge model that reads images (GPT-4o, a served
vision model): the image's hash is then part of the cache key, and an item without an image is a
failed verdict. The published evaluation shows the judge text only, which stays the default.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, JudgeItem, Verdict
from safeeraser.judge.cache import VerdictCache, cache_key
from safeeraser.judge.protocols import LLM_LIMITS, Ask, make_protocol
from safeeraser.openai_api import FATAL_STATUS, DataUrls, Endpoint, GaveUp, Refused, Stopped, Transient

NAMES = {k: f"openai judge: {k}" for k in ("concurrency", "max_retries", "timeout", "backoff")} | {
    "base_url": "openai judge: --base-url"
}


class OpenAIJudge:
    name = "openai"
    reads_images = False
    limits = LLM_LIMITS

    def __init__(
        self,
        model: str = "gpt-4o",
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        cache: Path | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        protocol: str = "published",
        prompts: str | Path | None = None,
        score: str = "ours",
        verdicts: tuple[str, ...] = VERDICTS,
        images: bool = False,
    ):
        if not model:
            raise UserError("openai judge: empty --judge-model")
        self.reads_images = images
        self.data_url = DataUrls()
        self._image_hashes: dict[Path, str] = {}
        self.endpoint = Endpoint(
            base_url=base_url,
            api_key=api_key,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            names=NAMES,
            default_url="https://api.openai.com/v1",
            default_key=None,
            missing_key="openai judge: no API key: pass --api-key or set OPENAI_API_KEY (any value for a local server that needs none)",
        )
        self.protocol = protocol if not isinstance(protocol, str) else make_protocol(protocol, prompts, score)
        # a judge serving some verdicts asks no others; a classifier protocol gives only its own
        self.verdicts = tuple(
            v for v in VERDICTS if v in verdicts and v in getattr(self.protocol, "verdicts", VERDICTS)
        )
        self.limits = getattr(self.protocol, "limits", LLM_LIMITS)
        if images:
            self.limits = tuple(line for line in self.limits if not line.startswith("reads the text only"))
        self.model = model
        self.base_url = self.endpoint.base_url
        self.concurrency = concurrency
        self.cache = VerdictCache(cache) if cache is not None else None
        self.stats = self.endpoint.stats
        self._lock = threading.Lock()  # guards the cache, used from the worker threads

    def identity(self) -> dict:
        return (
            {
                "kind": "openai",
                "model": self.model,
                "protocol": self.protocol.name,
                "prompt_hash": self.protocol.prompt_hash,
                "decoding": {"temperature": 0, "max_tokens": self.protocol.max_tokens},
            }
            | ({"reads_images": True} if self.reads_images else {})
            | getattr(self.protocol, "identity_extra", dict)()
        )

    def _cache_identity(self) -> dict:
        """What besides the prompt decides a cached answer: the identity (less the templates' hash:
        the prompt itself is keyed) and the endpoint, since two servers may serve different models
        under one name. Only a hash of it is stored."""
        return {k: v for k, v in self.identity().items() if k != "prompt_hash"} | {"endpoint": self.base_url}

    def judge(self, items: list[JudgeItem], *, progress: bool = False) -> list[Verdict]:
        from safeeraser.progress import bar as progress_bar

        per_item = [self.protocol.asks(item, self.verdicts) for item in items]
        asks = [ask for group in per_item for ask in group]
        images = [item.image if self.reads_images else None for item, group in zip(items, per_item) for _ in group]
        identity = self._cache_identity()
        # one request = the prompt and, for a judge shown the image, the image's hash
        keys = [
            cache_key(identity, ask.messages if image is None else [ask.messages, self.image_hash(image)])
            for ask, image in zip(asks, images)
        ]
        counts = Counter(keys)
        answers = self.cache.get_many(keys) if self.cache is not None else {}
        todo = {}  # prompt key -> the first question that asks it
        for i, key in enumerate(keys):
            if self.reads_images and images[i] is None:
                answers[key] = Verdict(error="no image to show a judge that reads images")
            elif key not in answers:
                todo.setdefault(key, i)

        stop = threading.Event()  # set when the run ends early, so that waiting workers give up
        bar = progress_bar(
            total=len(asks), initial=len(asks) - sum(counts[k] for k in todo), desc="judging (openai)", enabled=progress
        )
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(self._ask_and_keep, key, asks[i], images[i], stop): key for key, i in todo.items()}
            for future in as_completed(futures):
                key = futures[future]
                answers[key] = future.result()
                bar.update(counts[key])
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            bar.close()
        out, at = [], 0
        for group in per_item:
            # copies: items (or questions) with one prompt share no object
            out.append(self.protocol.combine([(ask, replace(answers[keys[at + j]])) for j, ask in enumerate(group)]))
            at += len(group)
        return out

    def image_hash(self, image: Path) -> str:
        if image not in self._image_hashes:
            with open(image, "rb") as f:
                self._image_hashes[image] = hashlib.file_digest(f, "sha256").hexdigest()
        return self._image_hashes[image]

    def _ask_and_keep(self, key: str, ask: Ask, image: Path | None, stop: threading.Event) -> Verdict:
        """``_ask``, with the answer cached by the worker itself before it takes the next prompt, so
        that a kill loses only the requests in flight."""
        verdict = self._ask(ask, image, stop)
        if self.cache is not None:
            with self._lock:
                self.cache.put(key, verdict)
        return verdict

    def _ask(self, ask: Ask, image: Path | None, stop: threading.Event) -> Verdict:
        """One prompt's (sub-)verdict, retrying transient failures."""
        messages = ask.messages if image is None else self.with_image(ask.messages, image)
        try:
            return self.endpoint.call(lambda: self._request(ask, messages), stop)
        except Stopped:
            return Verdict(error="stopped before an answer came")
        except GaveUp as e:
            if e.failure.unreachable:
                raise UserError(
                    f"openai judge: cannot reach {self.base_url} ({e.failure}) after {e.tries} tries"
                ) from None
            return Verdict(error=f"no answer {e}")

    def with_image(self, messages: list[dict], image: Path) -> list[dict]:
        """The chat with the image before the text of its first user message."""
        out, shown = [], False
        for message in messages:
            if message["role"] == "user" and not shown:
                message = {
                    **message,
                    "content": [
                        {"type": "image_url", "image_url": {"url": self.data_url(image)}},
                        {"type": "text", "text": message["content"]},
                    ],
                }
                shown = True
            out.append(message)
        return out

    def _request(self, ask: Ask, messages: list[dict]) -> Verdict:
        """One request: a (sub-)verdict, possibly a failed one, or ``Transient`` when worth repeating."""
        try:
            body = self.endpoint.post(
                model=self.model, messages=messages, temperature=0, max_tokens=self.protocol.max_tokens
            )
        except Refused as e:
            if e.status in FATAL_STATUS:
                raise UserError(
                    f"openai judge: {self.base_url} answered HTTP {e.status}: {FATAL_STATUS[e.status]}"
                ) from None
            return Verdict(error=str(e))
        content, finish = _content(body)
        if content is None:
            return Verdict(error="the judge returned no text")
        return self.protocol.read(ask, content, cut_off_at=self.protocol.max_tokens if finish == "length" else None)


def _content(body: str) -> tuple[str | None, str | None]:
    """``choices[0].message.content`` and ``finish_reason`` of a Chat Completions body; ``Transient``
    when the body is not one."""
    try:
        choice = json.loads(body)["choices"][0]
        content = choice["message"]["content"]
    except (json.JSONDecodeError, LookupError, TypeError):
        raise Transient(f"unreadable response body: {' '.join(body.split())[:80]!r}") from None
    if content is not None and not isinstance(content, str):
        raise Transient("unreadable response body: message content is not text")
    return content, choice.get("finish_reason")
