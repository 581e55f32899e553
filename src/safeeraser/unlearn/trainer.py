"""The unlearning loop: LoRA on the language model, a method's loss over named batches, accelerate.

The loop knows no method by name. Each optimizer step draws ``grad_accum`` micro-batches from
every view the method asks for, back-propagates the method's term for each view in turn (one
batch's activations in memory at a time), and steps AdamW with a warm-up + cosine schedule and
gradient clipping. Batches are a pure function of (seed, view, micro-step), so a
resumed run sees exactly the batches an uninterrupted one would. The same code runs on one CPU,
one GPU, or several processes under ``accelerate launch``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from safeeraser.data.checks import check_split_images
from safeeraser.data.records import load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import read_refusals, view_data
from safeeraser.environment import config_hash, manifest
from safeeraser.errors import TrainingStopped, UserError
from safeeraser.io import JsonlLog, atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from safeeraser.models.codec import Codec
from safeeraser.models.loading import load_model
from safeeraser.report.plots import plot_training
from safeeraser.unlearn.config import UnlearnConfig, dump_config
from safeeraser.unlearn.launch import lone_cpu_launch
from safeeraser.unlearn.methods import Forward, Objective, canonical_name, get_method
from safeeraser.unlearn.methods.base import batch_views

CHECKPOINT = "checkpoint"
LOG = "log.jsonl"
SUMMARY = "run.json"


@dataclass
class RunResult:
    out: Path
    method: str
    steps: int
    total_steps: int
    seconds: float
    stopped: str | None  # why training ended early, if it did
    main_process: bool = True  # False in the other processes of a multi-process launch
    resumed_from: int = 0  # the checkpoint's step when --resume continued a run


class BatchPlan:
    """Which examples form micro-batch m of a view on this process: a fresh permutation per epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, view: str, world: int = 1, rank: int = 0):
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world, rank
        self.per_step = batch_size * world
        self.batches_per_epoch = math.ceil(n / self.per_step)
        self._salt = int.from_bytes(hashlib.sha256(f"{seed}:{view}".encode()).digest()[:6], "little")
        self._perm: tuple[int, torch.Tensor] | None = None

    def epoch(self, micro_step: int) -> int:
        return micro_step // self.batches_per_epoch

    def indices(self, micro_step: int) -> list[int]:
        epoch, b = divmod(micro_step, self.batches_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self._salt + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        positions = (torch.arange(self.per_step) + b * self.per_step) % self.n  # the last batch wraps round
        chosen = self._perm[1][positions]
        return chosen[self.rank :: self.world].tolist()


def _schedule(optimizer, name: str, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "linear":
            return 1.0 - progress
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _lora(model, family, config: UnlearnConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target or family.lora_target,
        modules_to_save=[family.projector] if config.lora.train_projector else None,
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise UserError(f"LoRA target {lora.target_modules!r} matches no module of this model ({e})") from None


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    started = out.is_dir() and any((out / name).exists() for name in (LOG, SUMMARY, CHECKPOINT, "adapter"))
    if started and not (resume or overwrite):
        raise UserError(f"{out}: already holds a run; pass --resume to continue it or --overwrite to start again")
    if out.is_dir() and not started and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not a run folder; choose a new --out")


def unlearn(
    model: str,
    data: str | Path,
    method: str,
    out: str | Path,
    config: UnlearnConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    merge: bool = False,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> RunResult:
    """Unlearn the forget split of ``data`` from ``model`` with ``method``; write RUN_DIR ``out``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from safeeraser.progress import bar as progress_bar

    out = Path(out)
    name = canonical_name(method)
    _check_out(out, resume, overwrite)
    if resume and (out / SUMMARY).exists() and not (out / CHECKPOINT).exists():
        try:
            done = json.loads((out / SUMMARY).read_text())
            steps, total = int(done["steps"]), int(done["total_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{out / SUMMARY}: unreadable run summary of a finished run; pass --overwrite to train again") from None
        return RunResult(out, name, steps, total, 0.0, "already complete")
    the_method = get_method(name, config.method)
    refusals = read_refusals(Path(config.refusals)) if config.refusals else REFUSALS
    # cpu=True lets a multi-process launch without GPUs (torchrun, accelerate --multi_gpu) use gloo
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    if progress and main and lone_cpu_launch():
        tqdm.write(
            "note: accelerate started one CPU process and its --num_processes could not be read; "
            "for N processes on CPU pass `--num_processes N` on the command line, or use torchrun"
        )
    set_seed(config.seed)

    if overwrite and main and out.exists() and not resume:
        import shutil

        shutil.rmtree(out)
    accelerator.wait_for_everyone()

    train = load_split(data, "train", allow_outside_root=allow_outside_root)
    check_split_images(train)
    loaded = load_model(model, device=accelerator.device)
    system = loaded.family.system if config.system_prompt else None
    codec = Codec(loaded.processor, system=system, max_answer_tokens=config.max_answer_tokens)
    views = {}
    for view in the_method.views:
        views[view] = view_data(train, view, codec.encode_example, seed=config.seed, refusals=refusals)
        if not len(views[view]):
            raise UserError(f"{train.name}: method {name} needs {view} examples but the split has none (no UnharmPair_* fields?)")
    plans = {
        v: BatchPlan(len(ds), config.batch_size, config.seed, v, accelerator.num_processes, accelerator.process_index)
        for v, ds in views.items()
    }
    primary = plans[the_method.views[0]]
    steps_per_epoch = math.ceil(primary.batches_per_epoch / config.grad_accum)
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))

    peft_model = _lora(loaded.model, loaded.family, config)
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step
    # it once per process.
    scheduler = _schedule(optimizer, config.optim.schedule, round(config.optim.warmup_ratio * total), total)
    wrapped, optimizer = accelerator.prepare(peft_model, optimizer)
    forward = Forward(wrapped, peft_model)

    start_step = 0
    if resume and (out / CHECKPOINT / "state.json").exists():
        start_step = _load_checkpoint(out / CHECKPOINT, peft_model, optimizer, scheduler, accelerator)
    if main:
        _trim_log(out / LOG, start_step)  # drop what an interrupted attempt logged past the checkpoint

    probe = None
    if config.eval_every and main:
        from safeeraser.unlearn.dynamics import DynamicsProbe

        val = load_split(data, "val", allow_outside_root=allow_outside_root)
        probe = DynamicsProbe(codec, train, val, config.eval_samples)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_config(config))
    log = JsonlLog(out / LOG) if main else None
    stopped = None
    began = time.perf_counter()
    bar = progress_bar(range(start_step, total), initial=start_step, total=total, desc=f"unlearn {name}", enabled=progress and main)
    step = start_step
    try:
        for step in bar:
            terms = _optimizer_step(step, the_method, forward, views, plans, codec, config, accelerator, optimizer, wrapped, trainable)
            lr = scheduler.get_last_lr()[0]
            if "non_finite" in terms:
                bad = terms["non_finite"]
                kept = _keep_last_good(out, step, peft_model, optimizer, scheduler, accelerator)
                raise TrainingStopped(f"step {step + 1}: {bad} became non-finite; stopped. {kept}")
            scheduler.step()
            row = {"step": step + 1, "lr": lr, **terms}
            if probe is not None and main and ((step + 1) % config.eval_every == 0 or step + 1 == total):
                # main process only (the others wait at the next all-reduce); the unwrapped model,
                # as a DDP wrapper has no generate()
                row["eval"] = probe(peft_model)
            if main and ((step + 1) % config.log_every == 0 or "eval" in row or step + 1 == total):
                log.append(row)
            bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
            bound = config.method.forget_nll_bound
            if bound is not None and terms.get("forget_nll", 0.0) > bound:
                stopped = f"forget NLL {terms['forget_nll']:.2f} passed the bound {bound:g} (method.forget_nll_bound) at step {step + 1}"
                step += 1
                break
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                _save_checkpoint(out / CHECKPOINT, step + 1, peft_model, optimizer, scheduler, accelerator)
        else:
            step = total
    finally:
        bar.close()
        if log is not None:
            log.close()

    seconds = time.perf_counter() - began
    if stopped and main:
        bar.write(f"stopped early: {stopped}")
    _finish(out, name, model, data, step, total, seconds, stopped, peft_model, loaded, accelerator, merge, config)
    return RunResult(out, name, step, total, seconds, stopped, main, resumed_from=start_step)


def _optimizer_step(step, method: Objective, forward, views, plans, codec, config, accelerator, optimizer, wrapped, trainable) -> dict:
    """grad_accum micro-batches of every view, one AdamW step. Returns the mean of each loss term.

    Each view's term is back-propagated before the next view's forward pass, so the activations
    of only one batch are alive at a time; the gradients add up to those of the summed loss.
    """
    sums: dict[str, float] = {"loss": 0.0}
    last = len(method.terms) - 1
    for micro in range(config.grad_accum):
        m = step * config.grad_accum + micro
        for i, (name, term) in enumerate(method.terms.items()):
            items = [views[v].item(j, plans[v].epoch(m)) for v in batch_views(name) for j in plans[v].indices(m)]
            batch = codec.collate_train(items)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            sync = micro == config.grad_accum - 1 and i == last
            with (accelerator.no_sync(wrapped) if not sync and accelerator.num_processes > 1 else contextlib.nullcontext()):
                terms = term(forward, batch, config.method)
                # every process must agree to stop, or the others would wait in the next all-reduce
                finite = torch.isfinite(terms["loss"].detach()).float().reshape(1)
                if accelerator.reduce(finite, "sum").item() < accelerator.num_processes:
                    bad = next((k for k, v in terms.items() if k != "loss" and not torch.isfinite(v).item()), "loss")
                    optimizer.zero_grad(set_to_none=True)
                    return {"non_finite": f"the loss term {bad!r}"}
                accelerator.backward(terms["loss"] / config.grad_accum)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(accelerator.reduce(v.detach(), "mean")) / config.grad_accum
    if config.optim.grad_clip is not None:
        norm = accelerator.clip_grad_norm_(trainable, config.optim.grad_clip)
        if norm is not None and not torch.isfinite(torch.as_tensor(norm)).item():
            optimizer.zero_grad(set_to_none=True)
            return {"non_finite": "the gradient norm"}
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sums


def _adapter_state(peft_model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def _save_checkpoint(folder: Path, step: int, peft_model, optimizer, scheduler, accelerator) -> None:
    """Adapter weights, optimizer and scheduler state, RNG state: everything needed to resume."""
    from safetensors.torch import save_file

    accelerator.wait_for_everyone()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    if accelerator.is_main_process:
        with atomic_dir(folder) as tmp:
            save_file(_adapter_state(peft_model), str(tmp / "adapter.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save({"scheduler": scheduler.state_dict(), "rng": rng}, tmp / "trainer.pt")
            atomic_write_json(tmp / "state.json", {"step": step})
    accelerator.wait_for_everyone()


def _load_checkpoint(folder: Path, peft_model, optimizer, scheduler, accelerator) -> int:
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        step = json.loads((folder / "state.json").read_text())["step"]
        set_peft_model_state_dict(peft_model, load_file(str(folder / "adapter.safetensors"), device=str(accelerator.device)))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=accelerator.device, weights_only=True))
        state = torch.load(folder / "trainer.pt", weights_only=True)
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError) as e:
        raise UserError(f"{folder}: unreadable checkpoint ({type(e).__name__}); remove it or pass --overwrite") from None
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    return step


def _keep_last_good(out: Path, step: int, peft_model, optimizer, scheduler, accelerator) -> str:
    """On a non-finite loss the weights are still those of the last good step: keep them."""
    finite = all(torch.isfinite(p).all() for p in peft_model.parameters() if p.requires_grad)
    if finite:
        _save_checkpoint(out / CHECKPOINT, step, peft_model, optimizer, scheduler, accelerator)
        return f"The last good state (after step {step}) is kept in {out / CHECKPOINT}; lower the learning rate or check the data."
    if (out / CHECKPOINT / "state.json").exists():
        return f"The last good checkpoint is kept in {out / CHECKPOINT}."
    return "No good checkpoint exists (set checkpoint_every to keep one)."


def _trim_log(path: Path, step: int) -> None:
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _finish(out, name, model, data, step, total, seconds, stopped, peft_model, loaded, accelerator, merge, config) -> None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    with atomic_dir(out / "adapter") as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
    summary = {
        "method": name,
        "model": str(model),
        "data": str(data),
        "steps": step,
        "total_steps": total,
        "seconds": round(seconds, 2),
        "stopped": stopped,
        "processes": accelerator.num_processes,
        "config_hash": config_hash(config.model_dump()),
        "environment": manifest(),
    }
    plot_training(read_jsonl(out / LOG), out / "loss.png", title=name)
    if merge:
        merged = peft_model.merge_and_unload()
        with atomic_dir(out / "merged") as tmp:
            merged.save_pretrained(tmp, safe_serialization=True)
            loaded.processor.save_pretrained(tmp)
        summary["merged"] = str(out / "merged")
    atomic_write_json(out / SUMMARY, summary)
    if (out / CHECKPOINT).exists():
        import shutil

        shutil.rmtree(out / CHECKPOINT)
