"""A tiny model with the real LLaVA architecture, trained on the spot into "vanilla" behaviour.

No weights can be downloaded here, so ``make-tiny`` builds what the paper starts from: a
CLIP vision tower, LLaVA's projector and a Llama decoder (``LlavaForConditionalGeneration``),
a byte-level BPE tokenizer trained on the dataset's text, a CLIP image processor and LLaVA-1.5's
chat format. It is then fine-tuned to answer the harmful questions with ``model_response``, the
harmless-image questions with ``sd_response``, the benign questions and the general VQA, and
saved with ``save_pretrained``: it loads exactly like ``llava-hf/llava-1.5-7b-hf``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from safeeraser.data.records import GENERAL_FILE, load_general, load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import Example, decouple_examples, forget_examples, retain_examples
from safeeraser.errors import UserError
from safeeraser.formats import example_key
from safeeraser.io import atomic_dir, refuse_foreign_folder
from safeeraser.models.codec import Codec
from safeeraser.models.loading import quiet_transformers
from safeeraser.models.registry import LLAVA_15_TEMPLATE, LLAVA_TRAINING_SYSTEM, VICUNA_SYSTEM

MARKER = "safeeraser.json"
SPECIAL = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "<image>"}


@dataclass(frozen=True)
class TinySize:
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    vocab_size: int
    steps: int
    lr: float
    batch_per_view: int


SIZES = {
    # about 0.75M parameters: trains into vanilla behaviour in under two minutes on 2 CPU cores
    # (600 steps of 4 examples per view: the demo's whole study has to fit in 10 minutes)
    "tiny": TinySize(64, 16, 64, 2, 2, 128, 2, 4, 256, 1024, 600, 1.5e-3, 4),
    # about 100M parameters: for memory and speed measurements; its vanilla training is short
    "small": TinySize(128, 16, 384, 4, 6, 768, 12, 12, 2048, 2048, 40, 5e-4, 4),
}


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (any text encodes) trained on the dataset's own text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id(SPECIAL["bos"])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL['bos']} $A", pair=f"{SPECIAL['bos']} $A $B", special_tokens=[(SPECIAL["bos"], bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        pad_token=SPECIAL["pad"],
        extra_special_tokens={"image_token": SPECIAL["image"]},
        padding_side="left",
    )


def llava_processor_settings(size: TinySize) -> dict:
    """What a LLaVA-1.5 / LLaVA-NeXT processor needs besides its tokenizer and image processor."""
    return dict(patch_size=size.patch_size, vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=LLAVA_15_TEMPLATE)


def build_processor(tokenizer, size: TinySize):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size.image_size}, crop_size={"height": size.image_size, "width": size.image_size}
    )
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, **llava_processor_settings(size))


def clip_vision_config(size: TinySize):
    """The tiny CLIP vision tower (LLaVA-1.5 and LLaVA-NeXT)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 4,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
        projection_dim=size.vision_hidden,
    )


def llama_text_config(tokenizer, size: TinySize):
    """The tiny Llama decoder (LLaVA-1.5 and LLaVA-NeXT)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_heads,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def set_generation_ids(model, *, pad: int, eos, bos: int | None = None):
    """The ids ``generate`` pads with, stops on (one id or a list) and starts from."""
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = eos
    if bos is not None:
        model.generation_config.bos_token_id = bos
    return model


def build_model(tokenizer, size: TinySize):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config=clip_vision_config(size),
        text_config=llama_text_config(tokenizer, size),
        image_token_index=tokenizer.convert_tokens_to_ids(SPECIAL["image"]),
        image_seq_length=(size.image_size // size.patch_size) ** 2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config)
    return set_generation_ids(model, pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id, bos=tokenizer.bos_token_id)


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
            Example(resolver.resolve(it.image_path, f"{GENERAL_FILE}: record {i}: field 'image_path'"), it.question, it.answer, "general", example_key("general", i))
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


def corpus(groups: dict[str, list[Example]]) -> list[str]:
    texts = {t for exs in groups.values() for e in exs for t in (e.question, e.answer)}
    texts.update(REFUSALS)
    texts.update(["USER: ASSISTANT: SYSTEM:", "Sure, I cannot can't won't sorry yes no"])
    # The system sentence opens every prompt: repeated, its words become whole tokens, which
    # keeps the tiny model's prompts short.
    return sorted(texts) + [VICUNA_SYSTEM, LLAVA_TRAINING_SYSTEM] * 500


def make_tiny(
    data: Path,
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    steps: int | None = None,
    lr: float | None = None,
    progress: bool = True,
    family: str = "llava",
) -> dict:
    """Build, train and save the tiny vanilla model of ``family`` (LLaVA-1.5 by default).

    Returns a summary (also saved as safeeraser.json)."""
    if family != "llava":
        return _make_tiny_family(data, out, family=family, size=size, seed=seed, steps=steps, lr=lr, progress=progress)
    if size not in SIZES:
        raise UserError(f"unknown --size {size!r}: expected one of {', '.join(SIZES)}")
    spec = SIZES[size]
    steps, lr = _steps_and_lr(spec, steps, lr)
    refuse_foreign_folder(out, marker=MARKER)
    quiet_transformers()
    groups = vanilla_examples(Path(data), seed)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus(groups), spec.vocab_size)
    processor = build_processor(tokenizer, spec)
    model = build_model(tokenizer, spec)
    # Trained with LLaVA-1.5's own system sentence (vicuna_v1), as LLaVA-1.5 was instruction-tuned;
    # unlearning then prompts it with the released training sentence, generation with this one.
    codec = Codec(processor, system=VICUNA_SYSTEM)
    return _train_and_save(out, model, processor, codec, groups, {"size": size}, spec, steps=steps, lr=lr, seed=seed, progress=progress)


def _make_tiny_family(data: Path, out: Path, *, family: str, size: str, seed: int, steps: int | None, lr: float | None, progress: bool) -> dict:
    """The same recipe for another registered family, from its builder in ``models.tiny_families``."""
    from safeeraser.models.registry import family_named
    from safeeraser.models.tiny_families import BUILDERS

    fam = family_named(family)
    if fam.name not in BUILDERS:
        raise UserError(f"--family {fam.name}: no tiny copy of this family yet (tiny copies: llava, {', '.join(BUILDERS)})")
    refuse_foreign_folder(out, marker=MARKER)
    quiet_transformers()
    groups = vanilla_examples(Path(data), seed)
    torch.manual_seed(seed)
    texts = sorted({t for exs in groups.values() for e in exs for t in (e.question, e.answer)} | set(REFUSALS))
    try:
        processor, model, spec = BUILDERS[fam.name](texts, size, fam)
    except KeyError:
        raise UserError(f"unknown --size {size!r} for family {fam.name}") from None
    steps, lr = _steps_and_lr(spec, steps, lr)
    codec = Codec(processor, family=fam, system=fam.system)
    head = {"family": fam.name, "model_class": type(model).__name__, "size": size}
    return _train_and_save(out, model, processor, codec, groups, head, spec, steps=steps, lr=lr, seed=seed, progress=progress)


def _steps_and_lr(spec, steps: int | None, lr: float | None) -> tuple[int, float]:
    """The size's own training steps and learning rate unless given."""
    steps = spec.steps if steps is None else steps
    if steps < 0:
        raise UserError(f"--steps must be >= 0 (got {steps})")
    return steps, spec.lr if lr is None else lr


def _train_and_save(out: Path, model, processor, codec: Codec, groups, head: dict, spec, *, steps: int, lr: float, seed: int, progress: bool) -> dict:
    """Train into vanilla behaviour, then save model, processor and the summary (``head`` first) in one move."""
    start = time.perf_counter()
    losses = train_vanilla(model, codec, groups, steps=steps, lr=lr, batch_per_view=spec.batch_per_view, seed=seed, progress=progress)
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
        "architecture": asdict(spec),
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def train_vanilla(model, codec: Codec, groups, *, steps: int, lr: float, batch_per_view: int, seed: int, progress: bool) -> list[float]:
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
