"""`safeeraser generate`: answers for every prompt of a split, in the published prediction shape.

For each harmful question: K answers on the harmful image (``model_response1..K``) and one
answer on the harmless image (``sd_response``); for each UnharmPair, one answer
(``Prediction``). How they are decoded is a named protocol (``PROTOCOLS``): ``published``
samples every answer as the released inference does (T 1.0, top-p 0.9, top-k 50, 512 new
tokens, the family's system sentence); ``fast`` answers the single prompts greedily, with
shorter answers and no system sentence. Explicit settings override the protocol's, and the
file's metadata records what was used.

Finished batches are appended to ``PRED.partial.jsonl`` as they complete; a rerun of the same
command skips them, and the final file is written atomically. Because each batch is seeded from
its own key, a resumed run ends with exactly the output of an uninterrupted one. The answers come
from a backend (``generate.backends``: ``hf`` in this process, ``openai`` from a serving engine);
the resume file records which, and a run with the other backend refuses to continue it.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from safeeraser.data.checks import check_split_images
from safeeraser.data.images import open_rgb
from safeeraser.data.records import GENERAL_FILE, UNHARM_KEYS, Split, load_general, load_split
from safeeraser.environment import manifest
from safeeraser.errors import UserError
from safeeraser.formats import benign_task_key, general_task_key, meta_path, sd_task_key, task_key
from safeeraser.generate import GENERATION_BATCH_SIZE
from safeeraser.generate.backends import BACKENDS, Backend, HFBackend, Job, OpenAIBackend, batches  # noqa: F401  (batches: its home before)
from safeeraser.generate.sampling import Prompt, Sampling
from safeeraser.io import JsonlLog, atomic_write_json, check_output_file, read_jsonl
from safeeraser.models.loading import adapter_folder

SPLITS = ("train", "val", "general")


@dataclass(frozen=True)
class Task:
    key: str
    prompt: Prompt
    multi: bool  # K answers (a harmful question on its harmful image), or one


@dataclass(frozen=True)
class GenerationSettings:
    """A generation protocol: how many answers, how they are decoded, and the prompt format."""

    protocol: str = "published"  # the named protocol these settings started from
    num_samples: int = 3  # answers per harmful question on the harmful image
    sample_single: bool = True  # the single answers (harmless image, UnharmPairs) sampled too, or greedy
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 512
    system_prompt: bool = True  # the model family's system sentence (LLaVA-1.5: vicuna_v1's)
    batch_size: int = GENERATION_BATCH_SIZE  # sequences per generate call (speed only)
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_samples", "max_new_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.temperature <= 0:
            raise UserError(f"--temperature must be positive (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.top_k < 0:
            raise UserError(f"--top-k must be 0 (off) or positive (got {self.top_k})")

    def label(self) -> str:
        """The protocol's name and every setting that departs from it, e.g. ``published (max_new_tokens=48)``.

        Runs whose labels differ were generated differently and do not belong in one table.
        """
        base = PROTOCOLS.get(self.protocol)
        if base is None:
            return self.protocol
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in _NOT_PROTOCOL and getattr(self, f.name) != getattr(base, f.name)
        ]
        return self.protocol + (f" ({', '.join(changed)})" if changed else "")

    def record(self) -> dict:
        return {**asdict(self), "label": self.label()}


_NOT_PROTOCOL = {"protocol", "batch_size", "seed"}  # settings that do not change what is measured

PROTOCOLS = {
    # As the released inference (ckpt_infer.py): every answer sampled, 3 per harmful question.
    "published": GenerationSettings(),
    # Quicker and steadier, not comparable with the paper: greedy single answers, shorter, no system sentence.
    "fast": GenerationSettings(protocol="fast", sample_single=False, max_new_tokens=128, system_prompt=False),
}


def protocol_settings(name: str, **overrides) -> GenerationSettings:
    """The named protocol with the given settings replaced (None leaves a setting as the protocol has it)."""
    if name not in PROTOCOLS:
        raise UserError(f"unknown --protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    return replace(PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})


def split_tasks(split: Split) -> list[Task]:
    tasks = []
    for i, record in enumerate(split):
        image, sd_image = split.image(i), split.sd_image(i)
        for j, pair in enumerate(record.unsafe_pairs):
            tasks.append(Task(task_key(i, j), Prompt(image, pair.question), multi=True))
            tasks.append(Task(sd_task_key(i, j), Prompt(sd_image, pair.question), multi=False))
        for key, qa in record.unharm_pairs():
            tasks.append(Task(benign_task_key(i, key), Prompt(image, qa.question), multi=False))
    return tasks


def general_tasks(data: Path, allow_outside_root: bool) -> tuple[list[Task], list[dict]]:
    resolver, items = load_general(data, allow_outside_root=allow_outside_root)
    tasks = []
    for i, it in enumerate(items):
        where = f"{GENERAL_FILE}: record {i}: field 'image_path'"
        image = resolver.resolve(it.image_path, where)
        open_rgb(image, where=where)  # a bad image stops the run before it starts
        tasks.append(Task(general_task_key(i), Prompt(image, it.question), multi=False))
    return tasks, [it.model_dump() for it in items]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fill_predictions(split: Split, answers: dict[str, list[str]]) -> list[dict]:
    """The records in the published shape with the model's answers in place."""
    out = []
    for i, record in enumerate(split):
        row = copy.deepcopy(record.to_json())
        for j, pair in enumerate(row["unsafe_pairs"]):
            for k, text in enumerate(answers[task_key(i, j)], start=1):
                pair[f"model_response{k}"] = text
            pair["sd_response"] = answers[sd_task_key(i, j)][0]
        for key in UNHARM_KEYS:
            if key in row:
                row[key]["Prediction"] = answers[benign_task_key(i, key)][0]
        out.append(row)
    return out


def samplings(settings: GenerationSettings) -> tuple[Sampling, Sampling]:
    """How the K-answer and the single-answer prompts are decoded under ``settings``."""
    sampled = Sampling(
        do_sample=True,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=settings.top_k,
        max_new_tokens=settings.max_new_tokens,
    )
    multi = replace(sampled, num_samples=settings.num_samples)
    single = sampled if settings.sample_single else Sampling(max_new_tokens=settings.max_new_tokens)
    return multi, single


def generate_predictions(
    model: str,
    data: str | Path,
    split: str,
    out: str | Path,
    settings: GenerationSettings = GenerationSettings(),
    *,
    adapter: str | Path | None = None,
    backend: Backend | None = None,
    revision: str | None = None,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> dict:
    """Generate, resumably, and write ``out``; returns throughput and counts.

    ``backend`` defaults to Hugging Face ``generate`` on ``model`` (+ ``adapter``; a hub id at
    ``revision``); with an ``OpenAIBackend``, ``model`` is the name the server serves and the
    adapter is the server's.
    """
    from safeeraser.progress import bar as progress_bar

    settings.validate()
    if split not in SPLITS:
        raise UserError(f"unknown --split {split!r}: expected one of {', '.join(SPLITS)}")
    served = backend is not None and not BACKENDS[backend.name].loads_adapters
    if adapter and served:
        raise UserError(
            "--adapter is not used by --backend openai: the server serves the adapter (vllm serve --lora-modules NAME=RUN_DIR/adapter); pass NAME as --model"
        )
    if revision and served:
        raise UserError(
            "--revision is not used by --backend openai: the server loads the model (vllm serve MODEL --revision REV)"
        )
    out = Path(out)
    data = Path(data)
    check_output_file(out)
    if split == "general":
        tasks, general_items = general_tasks(data, allow_outside_root)
        source = data / GENERAL_FILE if data.is_dir() else data
        the_split = None
    else:
        the_split = load_split(data, split, allow_outside_root=allow_outside_root)
        check_split_images(the_split)
        tasks, source = split_tasks(the_split), the_split.path
    adapter_dir = adapter_folder(Path(adapter)) if adapter else None
    if backend is None:
        backend = HFBackend(
            model, adapter_dir, batch_size=settings.batch_size, system_prompt=settings.system_prompt, revision=revision
        )
    header = {
        "model": str(model),
        **({"revision": revision} if revision else {}),
        "adapter": str(adapter_dir) if adapter_dir else None,
        "adapter_digest": _file_digest(adapter_dir / "adapter_model.safetensors") if adapter_dir else None,
        "data": str(source),
        "data_digest": _file_digest(source),
        "split": split,
        "generation": settings.record(),
        "backend": backend.identity(),
    }
    partial = out.with_name(out.name + ".partial.jsonl")
    done: dict[str, list[str]] = {}
    finished_batches: set[str] = set()
    rows = read_jsonl(partial, repair=True)
    if rows:
        began_with = (rows[0].get("header") or {}).get("backend", {}).get("kind", "hf")
        if began_with != backend.name:
            raise UserError(
                f"{partial}: begun with --backend {began_with}; one file never mixes backends: rerun with --backend {began_with}, or delete it to start over"
            )
        if rows[0].get("header") != header:
            raise UserError(f"{partial}: left by a run with other settings, model or data; delete it to start over")
        for row in rows[1:]:
            finished_batches.add(row["batch"])
            done.update(row["answers"])

    multi, single = samplings(settings)
    plan = backend.plan(tasks, settings)
    todo = [
        Job(key, [t.prompt for t in chunk], multi if chunk[0].multi else single, [t.key for t in chunk])
        for key, chunk in plan
        if key not in finished_batches
    ]
    stats = {
        "prompts": len(tasks),
        "resumed_prompts": len(tasks) - sum(len(j.prompts) for j in todo),
        "generated_tokens": 0,
    }
    began = time.perf_counter()
    if todo:
        log = JsonlLog(partial)
        fresh = not rows  # the header goes in with the first answers: a run that fails to start leaves no file
        bar = progress_bar(
            total=len(tasks),
            initial=stats["resumed_prompts"],
            desc=f"generate {split} ({backend.name})",
            unit="prompt",
            enabled=progress,
        )
        try:
            for job, got, tokens in backend.run(todo, settings.seed):
                answers = dict(zip(job.task_keys, got))
                if fresh:
                    log.append({"header": header})
                    fresh = False
                log.append({"batch": job.key, "answers": answers})
                done.update(answers)
                stats["generated_tokens"] += tokens
                bar.update(len(job.prompts))
                elapsed = max(time.perf_counter() - began, 1e-9)
                bar.set_postfix(tok_s=f"{stats['generated_tokens'] / elapsed:.0f}")
        finally:
            bar.close()
            log.close()
    seconds = time.perf_counter() - began
    if the_split is None:
        predictions = [{**item, "prediction": done[general_task_key(i)][0]} for i, item in enumerate(general_items)]
    else:
        predictions = fill_predictions(the_split, done)
    atomic_write_json(out, predictions)
    generated = len(tasks) - stats["resumed_prompts"]
    meta = {
        **header,
        "seconds": round(seconds, 3),
        **stats,
        "prompts_per_second": round(generated / seconds, 3) if seconds > 0 and generated else None,
        "tokens_per_second": round(stats["generated_tokens"] / seconds, 3) if seconds > 0 and generated else None,
        **(backend.report() if todo else {}),
        "environment": manifest(),
    }
    atomic_write_json(meta_path(out), meta)
    partial.unlink(missing_ok=True)
    return meta
