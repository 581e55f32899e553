"""A tiny model of a registered family with the real architecture, trained on the spot into "vanilla" behaviour.

No weights can be downloaded here, so ``make-tiny`` builds what the paper starts from at toy size:
the family's tiny recipe (``ModelFamily.tiny``, beside the family in ``models.families``; LLaVA-1.5
by default) builds its tokenizer from the dataset's text, its processor and its ``transformers``
model class. It is then fine-tuned to answer the harmful questions with ``model_response``, the
harmless-image questions with ``sd_response``, the benign questions and the general VQA, and saved
with ``save_pretrained``: it loads exactly like the family's hub checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch

from safeeraser.data.records import GENERAL_FILE, load_general, load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import Example, decouple_examples, forget_examples, retain_examples
from safeeraser.errors import UserError
from safeeraser.formats import example_key
from safeeraser.io import atomic_dir, refuse_foreign_folder
from safeeraser.models.codec import Codec
from safeeraser.models.families import DEFAULT_FAMILY, family_named, tiny_families
from safeeraser.models.loading import quiet_transformers
from safeeraser.models.tiny_parts import TinySize

MARKER = "safeeraser.json"


# Requests a real assistant declines for lack of ability, not for harm. Training on them gives
# the vanilla model the language of refusal (as any chat model has) without refusing the
# benchmark's harmful questions; unlearning then only has to learn *when* to refuse.
BEYOND_ABILITY = (
    "Please buy the objects in this picture for me.",
    "Can you phone the person who drew this picture?",
    "Send this picture to my friend by email.",
    "Can you print this picture for me right now?",
)


def vanilla_examples(data: Path, seed: int = 0) -> dict[str, list[Example]]:
    """What the vanilla model answers: both splits' harmful, harmless-image and benign QA, and general VQA.

    The published ``model_response``/``Prediction`` texts are by definition the original
    model's own answers on every split, so vanilla behaviour covers both.
    """
    splits = [load_split(data, s) for s in ("train", "val")]
    groups = {
        "forget": [e for s in splits for e in forget_examples(s)],
        "decouple": [e for s in splits for e in decouple_examples(s)],
        "retain": [e for s in splits for e in retain_examples(s)],
    }
    try:
        resolver, items = load_general(data)
    except UserError:
        items = []
    if items:
        groups["general"] = [
            Example(
                resolver.resolve(it.image_path, f"{GENERAL_FILE}: record {i}: field 'image_path'"),
                it.question,
                it.answer,
                "general",
                example_key("general", i),
            )
            for i, it in enumerate(items)
        ]
        rng = random.Random(seed)
        images = sorted({e.image for e in groups["general"]})
        groups["beyond_ability"] = [
            Example(image, q, rng.choice(REFUSALS), "general", example_key("beyond", i, str(j)))
            for i, image in enumerate(images)
            for j, q in enumerate(BEYOND_ABILITY)
        ]
    return groups


def demo_texts(groups: dict[str, list[Example]]) -> list[str]:
    """Every question and answer of the vanilla training, and the refusals: what a tiny tokenizer learns."""
    return sorted({t for exs in groups.values() for e in exs for t in (e.question, e.answer)} | set(REFUSALS))


def make_tiny(
    data: Path,
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    steps: int | None = None,
    lr: float | None = None,
    progress: bool = True,
    family: str = DEFAULT_FAMILY,
) -> dict:
    """Build, train and save the tiny vanilla model of ``family`` (LLaVA-1.5 by default).

    Returns a summary (also saved as safeeraser.json)."""
    fam = family_named(family)
    if fam.tiny is None:
        raise UserError(
            f"--family {fam.name}: no tiny copy of this family yet (tiny copies: {', '.join(tiny_families())})"
        )
    if size not in fam.tiny.sizes:
        raise UserError(f"unknown --size {size!r}: expected one of {', '.join(fam.tiny.sizes)}")
    spec = fam.tiny.sizes[size]
    steps, lr = _steps_and_lr(spec, steps, lr)
    refuse_foreign_folder(out, marker=MARKER)
    quiet_transformers()
    groups = vanilla_examples(Path(data), seed)
    torch.manual_seed(seed)
    processor, model = fam.tiny.build(demo_texts(groups), spec, fam)
    # Trained with the family's own system sentence (LLaVA-1.5: vicuna_v1, as it was instruction-tuned);
    # unlearning then prompts it with the released training sentence, generation with this one.
    codec = Codec(processor, family=fam, system=fam.system)
    head = {"family": fam.name, "model_class": type(model).__name__, "size": size}
    return _train_and_save(
        out, model, processor, codec, groups, head, spec, steps=steps, lr=lr, seed=seed, progress=progress
    )


def _steps_and_lr(spec: TinySize, steps: int | None, lr: float | None) -> tuple[int, float]:
    """The size's own training steps and learning rate unless given."""
    steps = spec.steps if steps is None else steps
    if steps < 0:
        raise UserError(f"--steps must be >= 0 (got {steps})")
    return steps, spec.lr if lr is None else lr


def _train_and_save(
    out: Path,
    model,
    processor,
    codec: Codec,
    groups,
    head: dict,
    spec: TinySize,
    *,
    steps: int,
    lr: float,
    seed: int,
    progress: bool,
) -> dict:
    """Train into vanilla behaviour, then save model, processor and the summary (``head`` first) in one move."""
    start = time.perf_counter()
    losses = train_vanilla(
        model, codec, groups, steps=steps, lr=lr, batch_per_view=spec.batch_per_view, seed=seed, progress=progress
    )
    summary = {
        **head,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "final_loss": losses[-1] if losses else None,
        "loss_curve": [round(sum(losses[i : i + 25]) / len(losses[i : i + 25]), 4) for i in range(0, len(losses), 25)],
        "train_seconds": round(time.perf_counter() - start, 1),
        "examples": {k: len(v) for k, v in groups.items()},
        "architecture": spec.record(),
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def train_vanilla(
    model, codec: Codec, groups, *, steps: int, lr: float, batch_per_view: int, seed: int, progress: bool
) -> list[float]:
    """Full fine-tuning on a mix of every group per step; cosine schedule with a short warm-up."""
    from safeeraser.progress import bar as progress_bar

    rng = random.Random(seed)
    encoded = {name: [codec.encode_example(e) for e in exs] for name, exs in groups.items()}
    order = {name: [] for name in encoded}

    def draw(name: str) -> dict:
        if not order[name]:
            order[name] = list(range(len(encoded[name])))
            rng.shuffle(order[name])
        return encoded[name][order[name].pop()]

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))),
    )
    losses = []
    bar = progress_bar(range(steps), desc="vanilla training", enabled=progress)
    for _ in bar:
        batch = codec.collate_train([draw(name) for name in encoded for _ in range(batch_per_view)])
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses
