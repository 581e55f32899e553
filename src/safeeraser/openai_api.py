"""One OpenAI-compatible Chat Completions endpoint, as the openai generation backend and the
openai judge both use it: the base URL and key (from the arguments or the environment), the
timeout, the number of requests held at once, and the retry loop.

The official client's own retries are off: ``Endpoint.call`` retries 429, 408/409, 5xx,
timeouts, lost connections and unreadable bodies with exponential back-off and jitter,
honouring ``Retry-After``, and counts every request it sends.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from safeeraser.errors import UserError

MAX_WAIT = 60.0  # seconds: the longest back-off or Retry-After we sit out
RETRY_STATUS = (408, 409, 429)  # and every 5xx
FATAL_STATUS = {
    401: "the API key was refused: check --api-key or OPENAI_API_KEY",
    403: "the API key may not use this model or endpoint",
    404: "no such endpoint or model: check --base-url and --judge-model",
}

T = TypeVar("T")


class Transient(Exception):
    """A failure worth another try; ``after`` is the server's Retry-After in seconds, if it gave one."""

    def __init__(self, reason: str, after: float | None = None, *, unreachable: bool = False):
        super().__init__(reason)
        self.after = after
        self.unreachable = unreachable


class Refused(Exception):
    """The server answered with a status no retry changes (4xx other than ``RETRY_STATUS``)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Stopped(Exception):
    """The caller's stop event was set while a request waited for its next try."""


class GaveUp(Exception):
    """Every try failed; ``failure`` is the last ``Transient``."""

    def __init__(self, failure: Transient, tries: int):
        super().__init__(f"after {tries} tries: {failure}")
        self.failure = failure
        self.tries = tries


@dataclass
class RequestStats:
    sent: int = 0  # HTTP requests, retries included
    retried: int = 0  # requests that repeated an earlier one


class Endpoint:
    """A client for one server with the settings both callers share.

    ``names`` gives each setting's name in error messages (an option flag, say); ``default_url``
    is used when neither ``base_url`` nor ``$OPENAI_BASE_URL`` is given (None: one is required,
    and ``missing_url`` says so); ``default_key`` likewise for the key (None: one is required).
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        concurrency: int,
        timeout: float,
        max_retries: int,
        backoff: float,
        names: dict[str, str],
        default_url: str | None,
        missing_url: str = "",
        default_key: str | None,
        missing_key: str = "",
    ):
        if concurrency < 1:
            raise UserError(f"{names['concurrency']} must be at least 1 (got {concurrency})")
        if max_retries < 0:
            raise UserError(f"{names['max_retries']} must be at least 0 (got {max_retries})")
        if not timeout > 0:  # (also refuses NaN)
            raise UserError(f"{names['timeout']} must be positive (got {timeout})")
        if not backoff >= 0:
            raise UserError(f"{names['backoff']} must be at least 0 (got {backoff})")
        key = api_key or os.environ.get("OPENAI_API_KEY") or default_key
        if not key:
            raise UserError(missing_key)
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or default_url
        if not base_url:
            raise UserError(missing_url)
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"{names['base_url']} {base_url!r} is not an http(s) URL")
        import openai

        self.base_url = base_url
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.stats = RequestStats()
        self._lock = threading.Lock()

    def call(self, send: Callable[[], T], stop: threading.Event) -> T:
        """``send()``'s result, retrying it while it raises ``Transient``: ``Stopped`` once ``stop``
        is set, ``GaveUp`` after ``max_retries`` retries."""
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise Stopped
            with self._lock:
                self.stats.sent += 1
                self.stats.retried += int(attempt > 0)
            try:
                return send()
            except Transient as e:
                failure = e
            if attempt < self.max_retries and stop.wait(self.wait(attempt, failure.after)):
                raise Stopped
        raise GaveUp(failure, self.max_retries + 1)

    def wait(self, attempt: int, after: float | None) -> float:
        if after is not None:
            return min(after, MAX_WAIT)
        # Exponential back-off with jitter, so that parallel workers do not retry in lockstep.
        return min(MAX_WAIT, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def post(self, **body) -> str:
        """One Chat Completions request's response body: ``Transient`` when worth repeating,
        ``Refused`` for any other error status."""
        import openai

        try:
            return self.client.chat.completions.with_raw_response.create(**body).text
        except openai.APIStatusError as e:
            status = e.status_code
            if status in RETRY_STATUS or status >= 500:
                raise Transient(f"HTTP {status}", retry_after(e.response.headers.get("retry-after"))) from None
            raise Refused(status, " ".join(str(e.message).split())[:200]) from None
        except openai.APITimeoutError:
            raise Transient(f"no answer within {self.timeout:g}s") from None
        except openai.APIConnectionError as e:
            raise Transient(f"connection failed: {e.__cause__ or e}", unreachable=True) from None


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from APIs and is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class DataUrls:
    """Image files as data URLs (``data:image/png;base64,...``), the way Chat Completions servers take
    images; the last 256 are kept, as each image serves several requests. Thread-safe."""

    def __init__(self, keep: int = 256):
        self.keep = keep
        self._urls: OrderedDict[Path, str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, image: Path) -> str:
        image = Path(image)
        with self._lock:
            if image in self._urls:
                self._urls.move_to_end(image)
                return self._urls[image]
        mime = mimetypes.guess_type(image.name)[0] or "image/png"
        url = f"data:{mime};base64," + base64.b64encode(image.read_bytes()).decode("ascii")
        with self._lock:
            self._urls[image] = url
            if len(self._urls) > self.keep:
                self._urls.popitem(last=False)
        return url
