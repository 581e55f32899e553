"""The LLM judge over any OpenAI-compatible Chat Completions endpoint (GPT-4o or a local server).

Requests run in a thread pool, deterministically (temperature 0), through the official client
with its own retries off: the retry loop here retries 429, 408/409, 5xx, timeouts, lost
connections and unreadable bodies with exponential back-off and jitter, honouring
``Retry-After``. An answer that is not what its prompt asked for is not retried (at
temperature 0 it would come back the same) and becomes a failed (sub-)verdict.

What is asked comes from the protocol (``judge.protocols``): ``published`` asks one or two
plain-word questions per item, ``strict`` one JSON question. Each request is one question:
identical ones are asked once per run, and every successful answer goes to the cache at once,
so an interrupted run loses at most the requests in flight and a rerun asks only the rest.
Problems that no retry can fix (bad key, wrong URL or model, endpoint unreachable) stop the
run with a ``UserError``.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import openai

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, JudgeItem, Verdict
from safeeraser.judge.cache import VerdictCache, cache_key
from safeeraser.judge.protocols import LLM_LIMITS, Ask, make_protocol

MAX_WAIT = 60.0  # seconds: the longest back-off or Retry-After we sit out
RETRY_STATUS = (408, 409, 429)  # and every 5xx
FATAL_STATUS = {
    401: "the API key was refused: check --api-key or OPENAI_API_KEY",
    403: "the API key may not use this model or endpoint",
    404: "no such endpoint or model: check --base-url and --judge-model",
}


@dataclass
class JudgeStats:
    """Requests sent (failed and cached items are read off the verdicts themselves)."""

    sent: int = 0  # HTTP requests, retries included
    retried: int = 0  # requests that repeated an earlier one


class _Transient(Exception):
    """A failure worth another try; ``after`` is the server's Retry-After in seconds, if it gave one."""

    def __init__(self, reason: str, after: float | None = None, *, unreachable: bool = False):
        super().__init__(reason)
        self.after = after
        self.unreachable = unreachable


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
        verdicts: tuple[str, ...] = VERDICTS,
    ):
        if concurrency < 1:
            raise UserError(f"openai judge: concurrency must be at least 1 (got {concurrency})")
        if max_retries < 0:
            raise UserError(f"openai judge: max_retries must be at least 0 (got {max_retries})")
        if not timeout > 0:  # (also refuses NaN)
            raise UserError(f"openai judge: timeout must be positive (got {timeout})")
        if not backoff >= 0:
            raise UserError(f"openai judge: backoff must be at least 0 (got {backoff})")
        if not model:
            raise UserError("openai judge: empty --judge-model")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise UserError("openai judge: no API key: pass --api-key or set OPENAI_API_KEY (any value for a local server that needs none)")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"openai judge: --base-url {base_url!r} is not an http(s) URL")
        self.protocol = protocol if not isinstance(protocol, str) else make_protocol(protocol, prompts)
        # a judge serving some verdicts asks no others; a classifier protocol gives only its own
        self.verdicts = tuple(v for v in VERDICTS if v in verdicts and v in getattr(self.protocol, "verdicts", VERDICTS))
        self.limits = getattr(self.protocol, "limits", LLM_LIMITS)
        self.model = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.cache = VerdictCache(cache) if cache is not None else None
        self.stats = JudgeStats()
        self._lock = threading.Lock()  # guards the stats and the cache, used from the worker threads

    def identity(self) -> dict:
        return {
            "kind": "openai",
            "model": self.model,
            "protocol": self.protocol.name,
            "prompt_hash": self.protocol.prompt_hash,
            "decoding": {"temperature": 0, "max_tokens": self.protocol.max_tokens},
        }

    def _cache_identity(self) -> dict:
        """What besides the prompt decides a cached answer: the identity (less the templates' hash:
        the prompt itself is keyed) and the endpoint, since two servers may serve different models
        under one name. Only a hash of it is stored."""
        return {k: v for k, v in self.identity().items() if k != "prompt_hash"} | {"endpoint": self.base_url}

    def judge(self, items: list[JudgeItem], *, progress: bool = False) -> list[Verdict]:
        from safeeraser.progress import bar as progress_bar

        per_item = [self.protocol.asks(item, self.verdicts) for item in items]
        asks = [ask for group in per_item for ask in group]
        identity = self._cache_identity()
        keys = [cache_key(identity, ask.messages) for ask in asks]
        counts = Counter(keys)
        answers = self.cache.get_many(keys) if self.cache is not None else {}
        todo = {}  # prompt key -> the first question that asks it
        for i, key in enumerate(keys):
            if key not in answers:
                todo.setdefault(key, i)

        stop = threading.Event()  # set when the run ends early, so that waiting workers give up
        bar = progress_bar(total=len(asks), initial=len(asks) - sum(counts[k] for k in todo), desc="judging (openai)", enabled=progress)
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(self._ask_and_keep, key, asks[i], stop): key for key, i in todo.items()}
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

    def _ask_and_keep(self, key: str, ask: Ask, stop: threading.Event) -> Verdict:
        """``_ask``, with the answer cached by the worker itself before it takes the next prompt, so
        that a kill loses only the requests in flight."""
        verdict = self._ask(ask, stop)
        if self.cache is not None:
            with self._lock:
                self.cache.put(key, verdict)
        return verdict

    def _ask(self, ask: Ask, stop: threading.Event) -> Verdict:
        """One prompt's (sub-)verdict, retrying transient failures."""
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.stats.sent += 1
                self.stats.retried += int(attempt > 0)
            try:
                return self._request(ask)
            except _Transient as e:
                failure = e
            if attempt < self.max_retries and stop.wait(self._wait(attempt, failure.after)):
                return Verdict(error="stopped before an answer came")
        if failure.unreachable:
            raise UserError(f"openai judge: cannot reach {self.base_url} ({failure}) after {self.max_retries + 1} tries")
        return Verdict(error=f"no answer after {self.max_retries + 1} tries: {failure}")

    def _wait(self, attempt: int, after: float | None) -> float:
        if after is not None:
            return min(after, MAX_WAIT)
        # Exponential back-off with jitter, so that parallel workers do not retry in lockstep.
        return min(MAX_WAIT, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def _request(self, ask: Ask) -> Verdict:
        """One request: a (sub-)verdict, possibly a failed one, or ``_Transient`` when worth repeating."""
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.model, messages=ask.messages, temperature=0, max_tokens=self.protocol.max_tokens
            )
        except openai.APIStatusError as e:
            status = e.status_code
            if status in RETRY_STATUS or status >= 500:
                raise _Transient(f"HTTP {status}", _retry_after(e.response.headers.get("retry-after"))) from None
            if status in FATAL_STATUS:
                raise UserError(f"openai judge: {self.base_url} answered HTTP {status}: {FATAL_STATUS[status]}") from None
            return Verdict(error=f"HTTP {status}: {' '.join(str(e.message).split())[:200]}")
        except openai.APITimeoutError:
            raise _Transient(f"no answer within {self.timeout:g}s") from None
        except openai.APIConnectionError as e:
            raise _Transient(f"connection failed: {e.__cause__ or e}", unreachable=True) from None
        content, finish = _content(raw.text)
        if content is None:
            return Verdict(error="the judge returned no text")
        return self.protocol.read(ask, content, cut_off_at=self.protocol.max_tokens if finish == "length" else None)


def _content(body: str) -> tuple[str | None, str | None]:
    """``choices[0].message.content`` and ``finish_reason`` of a Chat Completions body; ``_Transient``
    when the body is not one."""
    try:
        choice = json.loads(body)["choices"][0]
        content = choice["message"]["content"]
    except (json.JSONDecodeError, LookupError, TypeError):
        raise _Transient(f"unreadable response body: {' '.join(body.split())[:80]!r}") from None
    if content is not None and not isinstance(content, str):
        raise _Transient("unreadable response body: message content is not text")
    return content, choice.get("finish_reason")


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from APIs and is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
