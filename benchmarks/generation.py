"""Generation throughput: `safeeraser generate` against the published one-answer-per-call loop.

Both sides answer the same prompts (every task of a split) with the same model, sampling
settings, ``max_new_tokens`` and seed, and both include loading the model. Generated tokens are
counted alike: new tokens that are neither end-of-sequence nor padding.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from safeeraser.data.records import UNHARM_KEYS, load_split
from safeeraser.generate.predictions import (
    GenerationSettings,
    Task,
    generate_predictions,
    protocol_settings,
    split_tasks,
)
from safeeraser.generate.sampling import Sampling
from safeeraser.models.loading import load_model

TARGET = 5.0


def count_new_tokens(new: torch.Tensor, pad_id: int, eos_id: int) -> int:
    return int(((new != pad_id) & (new != eos_id)).sum())


@torch.no_grad()
def published_loop(
    model_dir: Path, tasks: list[Task], settings: GenerationSettings
) -> tuple[dict[str, list[str]], int]:
    """What the published evaluation does: per prompt, open and preprocess the image, build the
    inputs with the processor and call ``generate`` for one answer — K times for a harmful question."""
    loaded = load_model(str(model_dir))
    model, processor = loaded.model, loaded.processor
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(settings.seed)
    answers: dict[str, list[str]] = {}
    tokens = 0
    for task in tasks:
        sampling = Sampling(
            num_samples=1,
            do_sample=task.multi,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
        )
        conversation = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": task.prompt.question}]}
        ]
        answers[task.key] = []
        for _ in range(settings.num_samples if task.multi else 1):
            image = Image.open(task.prompt.image).convert("RGB")
            text = processor.apply_chat_template(conversation, add_generation_prompt=True)
            inputs = processor(images=image, text=text, return_tensors="pt")
            out = model.generate(
                **inputs, **sampling.generate_kwargs(), pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id
            )
            new = out[:, inputs["input_ids"].shape[1] :]
            tokens += count_new_tokens(new, pad_id, tokenizer.eos_token_id)
            answers[task.key].append(tokenizer.decode(new[0], skip_special_tokens=True).strip())
    return answers, tokens


def greedy_answers(pred_file: Path) -> dict[str, str]:
    """The single (greedy) answers of a prediction file, under the task keys of ``split_tasks``."""
    out = {}
    for i, row in enumerate(json.loads(pred_file.read_text())):
        for j, pair in enumerate(row["unsafe_pairs"]):
            out[f"r{i}/p{j}/sd"] = pair["sd_response"]
        for key in UNHARM_KEYS:
            if key in row:
                out[f"r{i}/{key}"] = row[key]["Prediction"]
    return out


def run(
    model_dir: Path, data: Path, *, batch_sizes: list[int], max_new_tokens: int, num_samples: int = 3, seed: int = 0
) -> dict:
    split = load_split(data, "val")
    tasks = split_tasks(split)
    # the fast protocol: its single answers are greedy, so the two loops must agree on them
    base = protocol_settings("fast", num_samples=num_samples, max_new_tokens=max_new_tokens, seed=seed)
    calls = sum(num_samples if t.multi else 1 for t in tasks)
    load_model(
        str(model_dir)
    )  # the first load in a process pays transformers' lazy imports: keep them out of both sides
    print(f"  published loop: {len(tasks)} prompts, {calls} generate calls", flush=True)
    began = time.perf_counter()
    reference, ref_tokens = published_loop(model_dir, tasks, base)
    ref_seconds = time.perf_counter() - began
    rows = [{"side": "published loop", "batch_size": 1, "seconds": ref_seconds, "tokens": ref_tokens}]

    agreement = None
    with tempfile.TemporaryDirectory() as tmp:
        for size in batch_sizes:
            print(f"  safeeraser generate, batch size {size}", flush=True)
            out = Path(tmp) / f"pred_{size}.json"
            settings = replace(base, batch_size=size)
            began = time.perf_counter()
            meta = generate_predictions(str(model_dir), data, "val", out, settings, progress=False)
            rows.append(
                {
                    "side": "safeeraser generate",
                    "batch_size": size,
                    "seconds": time.perf_counter() - began,
                    "tokens": meta["generated_tokens"],
                }
            )
            if agreement is None:
                # Same prompts and greedy decoding on both sides must give the same answers:
                # evidence that the two sides do the same work.
                ours = greedy_answers(out)
                agreement = {"greedy_prompts": len(ours), "identical": sum(ours[k] == reference[k][0] for k in ours)}

    for row in rows:
        row["prompts_per_s"] = len(tasks) / row["seconds"]
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
        row["speedup"] = ref_seconds / row["seconds"]  # same prompts on both sides: the prompts/s ratio
        row["tokens_per_s_ratio"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    ours = rows[1:]
    best = max(ours, key=lambda r: r["speedup"])
    meeting = [r["batch_size"] for r in ours if r["speedup"] >= TARGET]
    return {
        "data": str(data),
        "split": "val",
        "prompts": len(tasks),
        "published_generate_calls": calls,
        "num_samples": num_samples,
        "max_new_tokens": max_new_tokens,
        "temperature": base.temperature,
        "top_p": base.top_p,
        "seed": seed,
        "rows": rows,
        "greedy_agreement": agreement,
        "best_batch_size": best["batch_size"],
        "best_speedup": best["speedup"],
        "smallest_batch_size_meeting_target": min(meeting) if meeting else None,
        "target": TARGET,
        "target_met": best["speedup"] >= TARGET,
    }
