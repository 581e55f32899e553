"""`safeeraser generate`: answers for every prompt of a split, in the published prediction shape.

For each harmful question: K sampled answers on the harmful image (``model_response1..K``) and
one answer on the harmless image (``sd_response``); for each UnharmPair, one answer
(``Prediction``). Single answers are greedy; the K samples use T / top-p (published: 1.0 / 0.9).

Finished batches are appended to ``PRED.partial.jsonl`` as they complete; a rerun of the same
command skips them, and the final file is written atomically. Because each batch is seeded from
its own key, a resumed run ends with exactly the output of an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from safeeraser.data.checks import check_split_images
from safeeraser.data.images import open_rgb
from safeeraser.data.records import UNHARM_KEYS, Split, load_general, load_split
from safeeraser.errors import UserError
from safeeraser.generate.sampling import Prompt, Sampling, answer_batch
from safeeraser.io import JsonlLog, atomic_write_json, check_output_file, read_jsonl
from safeeraser.models.codec import Codec
from safeeraser.models.loading import adapter_folder, attach_adapter, load_model

SPLITS = ("train", "val", "general")


@dataclass(frozen=True)
class Task:
    key: str
    prompt: Prompt
    sampled: bool  # K samples with temperature, or one greedy answer


@dataclass(frozen=True)
class GenerationSettings:
    num_samples: int = 3
    max_new_tokens: int = 128
    batch_size: int = 16  # sequences per generate call
    temperature: float = 1.0
    top_p: float = 0.9
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_samples", "max_new_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.temperature <= 0:
            raise UserError(f"--temperature must be positive (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1] (got {self.top_p})")


def split_tasks(split: Split) -> list[Task]:
    tasks = []
    for i, record in enumerate(split):
        image, sd_image = split.image(i), split.sd_image(i)
        for j, pair in enumerate(record.unsafe_pairs):
            tasks.append(Task(f"r{i}/p{j}", Prompt(image, pair.question), sampled=True))
            tasks.append(Task(f"r{i}/p{j}/sd", Prompt(sd_image, pair.question), sampled=False))
        for key, qa in record.unharm_pairs():
            tasks.append(Task(f"r{i}/{key}", Prompt(image, qa.question), sampled=False))
    return tasks


def general_tasks(data: Path, allow_outside_root: bool) -> tuple[list[Task], list[dict]]:
    resolver, items = load_general(data, allow_outside_root=allow_outside_root)
    tasks = []
    for i, it in enumerate(items):
        where = f"general_vqa.json: record {i}: field 'image_path'"
        image = resolver.resolve(it.image_path, where)
        open_rgb(image, where=where)  # a bad image stops the run before it starts
        tasks.append(Task(f"g{i}", Prompt(image, it.question), sampled=False))
    return tasks, [it.model_dump() for it in items]


def batches(tasks: list[Task], settings: GenerationSettings) -> list[tuple[str, list[Task]]]:
    """Sampled and greedy tasks in separate batches of about ``batch_size`` sequences each."""
    out = []
    for sampled in (True, False):
        group = [t for t in tasks if t.sampled == sampled]
        per_batch = max(1, settings.batch_size // settings.num_samples) if sampled else settings.batch_size
        for start in range(0, len(group), per_batch):
            chunk = group[start : start + per_batch]
            out.append((f"{'s' if sampled else 'g'}:{chunk[0].key}:{len(chunk)}", chunk))
    return out


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
            for k, text in enumerate(answers[f"r{i}/p{j}"], start=1):
                pair[f"model_response{k}"] = text
            pair["sd_response"] = answers[f"r{i}/p{j}/sd"][0]
        for key in UNHARM_KEYS:
            if key in row:
                row[key]["Prediction"] = answers[f"r{i}/{key}"][0]
        out.append(row)
    return out


def generate_predictions(
    model: str,
    data: str | Path,
    split: str,
    out: str | Path,
    settings: GenerationSettings = GenerationSettings(),
    *,
    adapter: str | Path | None = None,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> dict:
    """Generate, resumably, and write ``out``; returns throughput and counts."""
    from safeeraser.progress import bar as progress_bar

    settings.validate()
    if split not in SPLITS:
        raise UserError(f"unknown --split {split!r}: expected one of {', '.join(SPLITS)}")
    out = Path(out)
    data = Path(data)
    check_output_file(out)
    if split == "general":
        tasks, general_items = general_tasks(data, allow_outside_root)
        source = data / "general_vqa.json" if data.is_dir() else data
        the_split = None
    else:
        the_split = load_split(data, split, allow_outside_root=allow_outside_root)
        check_split_images(the_split)
        tasks, source = split_tasks(the_split), the_split.path
    adapter_dir = adapter_folder(Path(adapter)) if adapter else None
    header = {
        "model": str(model),
        "adapter": str(adapter_dir) if adapter_dir else None,
        "adapter_digest": _file_digest(adapter_dir / "adapter_model.safetensors") if adapter_dir else None,
        "data": str(source),
        "data_digest": _file_digest(source),
        "split": split,
        **asdict(settings),
    }
    partial = out.with_name(out.name + ".partial.jsonl")
    done: dict[str, list[str]] = {}
    finished_batches: set[str] = set()
    rows = read_jsonl(partial, repair=True)
    if rows:
        if rows[0].get("header") != header:
            raise UserError(f"{partial}: left by a run with other settings, model or data; delete it to start over")
        for row in rows[1:]:
            finished_batches.add(row["batch"])
            done.update(row["answers"])

    plan = batches(tasks, settings)
    todo = [(key, chunk) for key, chunk in plan if key not in finished_batches]
    stats = {"prompts": len(tasks), "resumed_prompts": len(tasks) - sum(len(c) for _, c in todo), "generated_tokens": 0}
    began = time.perf_counter()
    if todo:
        loaded = load_model(model)
        if adapter_dir:
            attach_adapter(loaded, adapter_dir)
        codec = Codec(loaded.processor)
        log = JsonlLog(partial)
        if not rows:
            log.append({"header": header})
        greedy = Sampling(max_new_tokens=settings.max_new_tokens)
        sampled = Sampling(
            num_samples=settings.num_samples, do_sample=True, temperature=settings.temperature,
            top_p=settings.top_p, max_new_tokens=settings.max_new_tokens,
        )
        bar = progress_bar(total=len(tasks), initial=stats["resumed_prompts"], desc=f"generate {split}", unit="prompt", enabled=progress)
        try:
            for key, chunk in todo:
                got, tokens = answer_batch(
                    loaded.model, codec, [t.prompt for t in chunk], sampled if chunk[0].sampled else greedy,
                    seed=settings.seed, key=key,
                )
                answers = {t.key: a for t, a in zip(chunk, got)}
                log.append({"batch": key, "answers": answers})
                done.update(answers)
                stats["generated_tokens"] += tokens
                bar.update(len(chunk))
                elapsed = max(time.perf_counter() - began, 1e-9)
                bar.set_postfix(tok_s=f"{stats['generated_tokens'] / elapsed:.0f}")
        finally:
            bar.close()
            log.close()
    seconds = time.perf_counter() - began
    if the_split is None:
        predictions = [{**item, "prediction": done[f"g{i}"][0]} for i, item in enumerate(general_items)]
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
    }
    atomic_write_json(out.with_name(out.stem + ".meta.json"), meta)
    partial.unlink(missing_ok=True)
    return meta
