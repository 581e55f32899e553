"""Where the answers come from: one interface, two backends.

A backend takes jobs (prompts with their images, how to decode them, a key that seeds them) and
yields each job's K sampled answers per prompt as soon as it has them, in any order;
``generate_predictions`` logs them for resume and writes the file. ``plan`` says how the tasks
are cut into jobs, so a resume file is only ever continued by the backend that began it.

- ``hf``: Hugging Face ``generate`` in this process, batched (``sampling.answer_batch``), one
  seed per batch. When a batch runs out of device memory the batch size is halved and the batch
  retried, down to one prompt; the final size is reported.
- ``openai``: any OpenAI-compatible Chat Completions server that serves the model (vLLM,
  SGLang, TGI). One request per prompt asks for its K samples at once (``n``) with the prompt's
  own ``seed``; images travel as data URLs; requests run concurrently and are retried as the
  judge's are (``safeeraser.openai_api``).
"""

from __future__ import annotations

import gc
import json
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from safeeraser.errors import UserError
from safeeraser.formats import batch_key
from safeeraser.generate.sampling import Prompt, Sampling, batch_seed
from safeeraser.openai_api import FATAL_STATUS, DataUrls, Endpoint, GaveUp, Refused, Stopped, Transient
from safeeraser.registry import Registry


def batches(tasks: list, settings) -> list[tuple[str, list]]:
    """K-answer and single-answer tasks (``predictions.Task``) in separate batches of about
    ``batch_size`` sequences each (``settings``: the ``GenerationSettings``)."""
    out = []
    for multi in (True, False):
        group = [t for t in tasks if t.multi == multi]
        per_batch = max(1, settings.batch_size // settings.num_samples) if multi else settings.batch_size
        for start in range(0, len(group), per_batch):
            chunk = group[start : start + per_batch]
            out.append((batch_key(multi, chunk[0].key, len(chunk)), chunk))
    return out


@dataclass(frozen=True)
class Job:
    key: str  # the resume file's key for this job; it also seeds the job
    prompts: list[Prompt]
    sampling: Sampling
    task_keys: list[str]


class Backend(Protocol):
    name: str

    def identity(self) -> dict:
        """What the resume file records and a resumed run must match."""

    def plan(self, tasks: list, settings) -> list[tuple[str, list]]:
        """The tasks cut into keyed jobs (``settings``: the run's ``GenerationSettings``)."""

    def run(self, jobs: list[Job], seed: int) -> Iterator[tuple[Job, list[list[str]], int]]:
        """Each job with its answers (K per prompt) and the number of generated tokens, as they finish."""

    def report(self) -> dict:
        """What the run's metadata adds about the backend (sizes, requests)."""


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- hf -----------------------------------------------------------------------------------


class HFBackend:
    """Generation in this process with Hugging Face ``generate``, backing off on out-of-memory."""

    name = "hf"

    def __init__(
        self,
        model: str,
        adapter: Path | None,
        *,
        batch_size: int,
        system_prompt: bool,
        revision: str | None = None,
        warn: Callable[[str], None] = _stderr,
        transform: Callable | None = None,
        transform_identity: dict | None = None,
    ):
        self.model = model
        self.revision = revision
        self.adapter = adapter
        # applied to the loaded model (adapter attached) before any answer: e.g. the audit's quantization,
        # recorded in the identity so that a resume file is only continued by the same transform
        self.transform = transform
        self.transform_identity = transform_identity
        self.system_prompt = system_prompt
        self.batch_size = batch_size  # sequences per generate call; halved on out-of-memory
        self.backoffs = 0
        self.warn = warn

    def identity(self) -> dict:
        return {"kind": "hf", **({"transform": self.transform_identity} if self.transform else {})}

    def plan(self, tasks, settings):
        return batches(tasks, settings)

    def run(self, jobs, seed):
        from safeeraser.models.loading import attach_adapter, load_model

        loaded = load_model(self.model, revision=self.revision)
        if self.adapter:
            attach_adapter(loaded, self.adapter)
        if self.transform:
            loaded = self.transform(loaded)
        codec = self.codec(loaded)
        for job in jobs:
            answers, tokens = self._answer(loaded.model, codec, job, seed)
            yield job, answers, tokens

    def codec(self, loaded):
        """The prompts' codec: the family's inference sentence (LLaVA-1.5: vicuna_v1's, as the released
        ckpt_infer.py prompts), not the one the released training uses."""
        from safeeraser.models.codec import Codec

        return Codec(
            loaded.processor,
            family=loaded.family,
            system=loaded.family.system_sentence("inference") if self.system_prompt else None,
        )

    def _answer(self, model, codec, job: Job, seed: int) -> tuple[list[list[str]], int]:
        """The job in one call, or, after an out-of-memory, in calls of at most ``batch_size`` sequences.

        A job that fits is seeded by its key exactly as before any back-off; the smaller calls of
        a split job by the key and their offset, so a run that backs off the same way gives the
        same answers.
        """
        import torch

        from safeeraser.generate.sampling import answer_batch

        k = job.sampling.num_samples
        while True:
            per_call = max(1, self.batch_size // k)
            try:
                if per_call >= len(job.prompts):
                    return answer_batch(model, codec, job.prompts, job.sampling, seed=seed, key=job.key)
                answers, tokens = [], 0
                for start in range(0, len(job.prompts), per_call):
                    got, n = answer_batch(
                        model,
                        codec,
                        job.prompts[start : start + per_call],
                        job.sampling,
                        seed=seed,
                        key=f"{job.key}@{start}",
                    )
                    answers.extend(got)
                    tokens += n
                return answers, tokens
            except torch.OutOfMemoryError:
                tried = min(per_call, len(job.prompts)) * k
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if min(per_call, len(job.prompts)) <= 1:
                    raise UserError(
                        f"out of memory generating one prompt ({k} sequences of up to {job.sampling.max_new_tokens} new tokens): "
                        "lower --num-samples or --max-new-tokens, or use a device with more memory"
                    ) from None
                self.batch_size = max(1, tried // 2)
                self.backoffs += 1
                self.warn(
                    f"generate: out of memory at {tried} sequences per batch; retrying with batch size {self.batch_size}"
                )

    def report(self) -> dict:
        return {"final_batch_size": self.batch_size, "oom_backoffs": self.backoffs}


# --- openai -------------------------------------------------------------------------------


def request_seed(seed: int, key: str) -> int:
    """The seed one request carries: from (run seed, job key), 31 bits so every server takes it."""
    return batch_seed(seed, key) & 0x7FFF_FFFF


class OpenAIBackend:
    """Generation on an OpenAI-compatible Chat Completions server; one prompt per request."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        system: str | None = None,
        concurrency: int = 32,
        timeout: float = 600.0,
        max_retries: int = 5,
        backoff: float = 1.0,
    ):
        if not model:
            raise UserError("--backend openai: empty --model (the name the server serves the model or adapter under)")
        self.endpoint = Endpoint(
            base_url=base_url,
            api_key=api_key,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            names={
                "concurrency": "--concurrency",
                "max_retries": "--retries",
                "timeout": "--request-timeout",
                "backoff": "backoff",
                "base_url": "--base-url",
            },
            default_url=None,
            missing_url="--backend openai needs --base-url (e.g. http://localhost:8000/v1) or $OPENAI_BASE_URL",
            default_key="EMPTY",  # a local server usually takes any key; the official client insists on one
        )
        self.model = model
        self.base_url = self.endpoint.base_url
        self.system = system
        self.concurrency = concurrency
        self.data_url = DataUrls()  # each image serves several prompts

    def identity(self) -> dict:
        return {"kind": "openai", "system": self.system}

    def plan(self, tasks, settings):
        return [(batch_key(t.multi, t.key, 1), [t]) for t in tasks]

    def run(self, jobs, seed):
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            pending = {pool.submit(self._answer, job, seed, stop): job for job in jobs}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = pending.pop(future)
                    answers, tokens = future.result()
                    yield job, answers, tokens
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def report(self) -> dict:
        stats = self.endpoint.stats
        return {
            "base_url": self.base_url,
            "concurrency": self.concurrency,
            "n_requests": stats.sent,
            "n_retries": stats.retried,
        }

    def request(self, prompt: Prompt, sampling: Sampling, seed: int) -> dict:
        """The Chat Completions body for one prompt: its K samples, its seed, the protocol's decoding."""
        user = [
            {"type": "image_url", "image_url": {"url": self.data_url(prompt.image)}},
            {"type": "text", "text": prompt.question},
        ]
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}
        ]
        body = {
            "model": self.model,
            "messages": messages,
            "n": sampling.num_samples,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
        }
        extra = {}
        if sampling.do_sample:
            body.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.top_k > 0:
                extra["top_k"] = sampling.top_k  # not in OpenAI's API; vLLM, SGLang and TGI read it
        else:
            body.update(temperature=0.0)
        return {**body, "extra_body": extra} if extra else body

    def _answer(self, job: Job, seed: int, stop: threading.Event) -> tuple[list[list[str]], int]:
        (prompt,) = job.prompts
        body = self.request(prompt, job.sampling, request_seed(seed, job.key))
        try:
            texts, tokens = self.endpoint.call(lambda: self._send(body, job), stop)
        except Stopped:
            raise UserError("stopped") from None
        except GaveUp as e:
            raise UserError(f"--backend openai: no answer from {self.base_url} for {job.task_keys[0]} {e}") from None
        return [texts], tokens

    def _send(self, body: dict, job: Job) -> tuple[list[str], int]:
        try:
            text = self.endpoint.post(**body)
        except Refused as e:
            hint = FATAL_STATUS.get(e.status, e.message)
            raise UserError(
                f"--backend openai: {self.base_url} answered HTTP {e.status} for {job.task_keys[0]}: {hint}"
            ) from None
        return _samples(text, body["n"], f"{self.base_url}, {job.task_keys[0]}")


def _samples(text: str, n: int, where: str) -> tuple[list[str], int]:
    """The ``n`` answers of a Chat Completions body in ``index`` order, and its completion tokens."""
    try:
        body = json.loads(text)
        choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
        texts = [c["message"]["content"] or "" for c in choices]
    except (json.JSONDecodeError, LookupError, TypeError, AttributeError):
        raise Transient(f"unreadable response body: {' '.join(text.split())[:80]!r}") from None
    if not all(isinstance(t, str) for t in texts):
        raise Transient("unreadable response body: message content is not text")
    if len(texts) != n:
        raise UserError(
            f"--backend openai: {where}: asked for n={n} answers, got {len(texts)} (a server that ignores n cannot run this protocol)"
        )
    usage = body.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return [t.strip() for t in texts], int(tokens) if isinstance(tokens, int) else 0


@dataclass(frozen=True)
class BackendKind:
    """A generation backend as the command line and the docs see it: the ``generate`` flags it
    takes (flag -> its build option), whether it loads a run's adapter itself (else a server
    serves it under a name), and ``build(model, system, **options)``: the backend, or None for
    the default one that ``generate_predictions`` builds from the run's settings."""

    name: str
    meaning: str
    build: Callable[..., Backend | None]
    flags: dict[str, str] = field(default_factory=dict)
    loads_adapters: bool = True


def _openai(model: str, system: str | None, **options) -> Backend:
    return OpenAIBackend(model, system=system, **options)


def _in_process(model: str, system: str | None, **options) -> None:
    return None  # generate_predictions builds the HFBackend from the run's settings


BACKENDS: Registry[BackendKind] = Registry("backend", "safeeraser.backends", BackendKind)
BACKENDS.register(BackendKind("hf", "Hugging Face generate in this process", _in_process))
BACKENDS.register(
    BackendKind(
        "openai",
        "an OpenAI-compatible server (vLLM, SGLang, TGI); --model is the served name",
        _openai,
        flags={
            "--base-url": "base_url",
            "--api-key": "api_key",
            "--concurrency": "concurrency",
            "--request-timeout": "timeout",
            "--retries": "max_retries",
            "--family": "family",
        },
        loads_adapters=False,
    )
)
