"""The unlearning loop: LoRA on the language model, a method's loss over named batches, accelerate.

The loop knows no method by name. Each optimizer step draws ``grad_accum`` micro-batches from
every view the method asks for, back-propagates the method's term for each view in turn (one
batch's activations in memory at a time), and steps AdamW with a warm-up + cosine schedule and
gradient clipping. Batches are a pure function of (seed, view, micro-step), so a
resumed run sees exactly the batches an uninterrupted one would. The same code runs on one CPU,
one GPU, or several processes under ``accelerate launch``. A run is an ``UnlearnRun`` and its
phases; ``unlearn`` is the entry point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import pickle
import shutil
import time
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Callable

import torch

from safeeraser.data.checks import check_split_images
from safeeraser.data.records import load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import read_refusals, view_data
from safeeraser.environment import config_hash, manifest
from safeeraser.errors import TrainingStopped, UserError
from safeeraser.formats import RUN_LOG, RUN_SUMMARY
from safeeraser.io import JsonlLog, atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from safeeraser.models.codec import Codec
from safeeraser.models.loading import load_model
from safeeraser.unlearn.config import UnlearnConfig, dump_config
from safeeraser.unlearn.launch import lone_cpu_launch
from safeeraser.unlearn.methods import Forward, canonical_name, get_method
from safeeraser.unlearn.methods.base import batch_views, is_paired

CHECKPOINT = "checkpoint"
KEPT = "kept"  # under select: the adapter of the best probed step so far (becomes adapter/ at the end)
SELECTION = "selection.json"  # under select: the kept step and why
ALREADY_COMPLETE = "already complete"  # RunResult.stopped of a --resume of a finished run


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

    @property
    def already_complete(self) -> bool:
        return self.stopped == ALREADY_COMPLETE


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


def _checkpoint_activations(model) -> None:
    """Gradient checkpointing that works with LoRA.

    The embeddings are frozen under LoRA, so the hidden states entering the first checkpointed
    block do not require grad; reentrant checkpointing then returns outputs without a graph and
    the adapter silently stops learning. Non-reentrant checkpointing, with the embeddings'
    output made to require grad as well, keeps every adapter gradient. (transformers 5 does the
    latter itself when checkpointing is switched on; the call is kept for models and versions
    that do not.)
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise UserError(f"gradient_checkpointing: {type(model).__name__} does not support it")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name warns there
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    started = out.is_dir() and any((out / name).exists() for name in (RUN_LOG, RUN_SUMMARY, CHECKPOINT, "adapter"))
    if started and not (resume or overwrite):
        raise UserError(f"{out}: already holds a run; pass --resume to continue it or --overwrite to start again")
    if out.is_dir() and not started and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not a run folder; choose a new --out")


def unlearn(*args, **kwargs) -> RunResult:
    """Unlearn the forget split of ``data`` from ``model`` with ``method``; write RUN_DIR ``out``.

    The arguments are ``UnlearnRun``'s: ``unlearn(model, data, method, out, config, *, resume,
    overwrite, merge, progress, allow_outside_root, on_finish, revision)``.
    """
    return UnlearnRun(*args, **kwargs).run()


@dataclass(eq=False)
class UnlearnRun:
    """One run of ``unlearn``, in the phases ``run`` calls in turn:

    setup (method, accelerator, seed) -> load (data, model, views, batch plans) -> build (LoRA,
    optimizer, schedule) -> restore (from a checkpoint) -> open (probe, config.yaml) -> train
    (optimizer steps, with probe, log and checkpoints) -> finish (adapter, run.json).

    Each phase sets what the next ones read. Random numbers are drawn in phase order (the seed,
    then LoRA's initial weights), so the same order gives the same adapter, byte for byte.
    """

    model: str  # model folder or Hugging Face id
    data: str | Path  # dataset folder; its train split is the forget split
    method: str  # method name (any alias); self.name is its canonical spelling
    out: str | Path  # the run folder
    config: UnlearnConfig
    _: KW_ONLY
    resume: bool = False
    overwrite: bool = False
    merge: bool = False
    progress: bool = True
    allow_outside_root: bool = False
    # called on the main process once the log is complete and before run.json marks the run
    # finished: the CLI and the demo draw loss.png there
    on_finish: Callable[[Path, str], object] | None = None
    revision: str | None = None  # of a hub id: branch, tag or commit (None: its default branch)

    def __post_init__(self):
        self.out = Path(self.out)
        self.name = canonical_name(self.method)

    def run(self) -> RunResult:
        _check_out(self.out, self.resume, self.overwrite)
        done = self.finished_before()
        if done is not None:
            return done
        self.setup()
        self.load()
        self.build()
        self.restore()
        self.open()
        self.train()
        return self.finish()

    def finished_before(self) -> RunResult | None:
        """Under --resume, the result of a run that already finished (run.json and no checkpoint)."""
        out = self.out
        if not (self.resume and (out / RUN_SUMMARY).exists() and not (out / CHECKPOINT).exists()):
            return None
        try:
            done = json.loads((out / RUN_SUMMARY).read_text())
            steps, total = int(done["steps"]), int(done["total_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{out / RUN_SUMMARY}: unreadable run summary of a finished run; pass --overwrite to train again") from None
        return RunResult(out, self.name, steps, total, 0.0, ALREADY_COMPLETE)

    def setup(self) -> None:
        """The method's objective, the accelerator, the seed; under --overwrite, the old run removed."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        self.objective = get_method(self.name, self.config.method)
        self.rule = None
        if self.config.select or self.config.early_stop:
            from safeeraser.unlearn.selection import parse_rule

            if not self.config.select:
                raise UserError("early_stop needs a selection rule: pass --select RULE (e.g. 'min sarr subject to forget_asr<=0.05')")
            if not self.config.eval_every:
                raise UserError("--select reads the dynamics probe: set eval_every (e.g. --set eval_every=25)")
            self.rule = parse_rule(self.config.select, self.objective.logs)
        self.refusals = read_refusals(Path(self.config.refusals)) if self.config.refusals else REFUSALS
        # cpu=True lets a multi-process launch without GPUs (torchrun, accelerate --multi_gpu) use gloo
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.main = self.accelerator.is_main_process
        if self.progress and self.main and lone_cpu_launch():
            tqdm.write(
                "note: accelerate started one CPU process and its --num_processes could not be read; "
                "for N processes on CPU pass `--num_processes N` on the command line, or use torchrun"
            )
        set_seed(self.config.seed)
        if self.overwrite and self.main and self.out.exists() and not self.resume:
            shutil.rmtree(self.out)
        self.accelerator.wait_for_everyone()

    def load(self) -> None:
        """The forget split, the model and its codec, the views the method trains on and their batch plans."""
        config, accelerator = self.config, self.accelerator
        self.train_split = load_split(self.data, "train", allow_outside_root=self.allow_outside_root)
        check_split_images(self.train_split)
        self.loaded = load_model(self.model, revision=self.revision, device=accelerator.device)
        system = self.loaded.family.system if config.system_prompt else None
        self.codec = Codec(self.loaded.processor, family=self.loaded.family, system=system, max_answer_tokens=config.max_answer_tokens)
        self.views = {}
        for view in self.objective.views:
            self.views[view] = view_data(self.train_split, view, self.codec.encode_example, seed=config.seed, refusals=self.refusals)
            if not len(self.views[view]):
                raise UserError(f"{self.train_split.name}: method {self.name} needs {view} examples but the split has none (no UnharmPair_* fields?)")
        self.plans = {
            v: BatchPlan(len(ds), config.batch_size, config.seed, v, accelerator.num_processes, accelerator.process_index)
            for v, ds in self.views.items()
        }
        primary = self.plans[self.objective.views[0]]
        steps_per_epoch = math.ceil(primary.batches_per_epoch / config.grad_accum)
        self.total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))

    def build(self) -> None:
        """LoRA on the language model, AdamW over its trainable weights and the learning-rate schedule."""
        config = self.config
        self.peft_model = _lora(self.loaded.model, self.loaded.family, config)
        if config.gradient_checkpointing:
            _checkpoint_activations(self.loaded.model)
        self.peft_model.train()
        self.trainable = [p for p in self.peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step
        # it once per process.
        self.scheduler = _schedule(optimizer, config.optim.schedule, round(config.optim.warmup_ratio * self.total), self.total)
        self.wrapped, self.optimizer = self.accelerator.prepare(self.peft_model, optimizer)
        self.forward = Forward(self.wrapped, self.peft_model, family=self.loaded.family)

    def restore(self) -> None:
        """Under --resume, the checkpoint's state; the log cut back to the step it continues from."""
        self.start_step = 0
        if self.resume and (self.out / CHECKPOINT / "state.json").exists():
            self.start_step = self.load_checkpoint()
        if self.main:
            _trim_log(self.out / RUN_LOG, self.start_step)  # drop what an interrupted attempt logged past the checkpoint

    def open(self) -> None:
        """The dynamics probe (main process only), the selection rule, and the run folder with its config.yaml."""
        self.probe = None
        self.rows: list[dict] = read_jsonl(self.out / RUN_LOG) if self.main and self.rule and self.start_step else []
        self.select_from = self.kept_before() if self.main and self.rule else 0
        if self.config.eval_every and self.main:
            from safeeraser.unlearn.dynamics import DynamicsProbe

            val = load_split(self.data, "val", allow_outside_root=self.allow_outside_root)
            self.probe = DynamicsProbe(self.codec, self.train_split, val, self.config.eval_samples)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", dump_config(self.config))

    def train(self) -> None:
        """Optimizer steps up to the total, each logged, probed and checkpointed as the config says.

        Sets ``steps`` (done when training ended), ``stopped`` (why it ended early) and ``seconds``.
        """
        from safeeraser.progress import bar as progress_bar

        config, main, total = self.config, self.main, self.total
        log = JsonlLog(self.out / RUN_LOG) if main else None
        self.stopped = None
        began = time.perf_counter()
        bar = progress_bar(range(self.start_step, total), initial=self.start_step, total=total, desc=f"unlearn {self.name}", enabled=self.progress and main)
        step = self.start_step
        try:
            for step in bar:
                terms = self.step(step)
                lr = self.scheduler.get_last_lr()[0]
                if "non_finite" in terms:
                    bad = terms["non_finite"]
                    kept = self.keep_last_good(step)
                    raise TrainingStopped(f"step {step + 1}: {bad} became non-finite; stopped. {kept}")
                self.scheduler.step()
                row = {"step": step + 1, "lr": lr, **terms}
                if self.probe is not None and main and ((step + 1) % config.eval_every == 0 or step + 1 == total):
                    # main process only (the others wait at the next all-reduce); the unwrapped model,
                    # as a DDP wrapper has no generate()
                    row["eval"] = self.probe(self.peft_model)
                if main and ((step + 1) % config.log_every == 0 or "eval" in row or step + 1 == total):
                    log.append(row)
                if self.rule is not None and self.probed(step + 1, row):
                    step += 1
                    break
                bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
                bound = config.method.forget_nll_bound
                if bound is not None and terms.get("forget_nll", 0.0) > bound:
                    self.stopped = f"forget NLL {terms['forget_nll']:.2f} passed the bound {bound:g} (method.forget_nll_bound) at step {step + 1}"
                    step += 1
                    break
                if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                    self.save_checkpoint(step + 1)
            else:
                step = total
        finally:
            bar.close()
            if log is not None:
                log.close()
        self.steps = step
        self.seconds = time.perf_counter() - began
        if self.stopped and main:
            bar.write(f"stopped early: {self.stopped}")

    def probed(self, done: int, row: dict) -> bool:
        """Under --select, after a probe: keep the adapter if this step is the best so far; whether
        --early-stop ends training now (decided on the main process, which alone probes, and shared)."""
        from safeeraser.unlearn.selection import select, stale_probes

        if done % self.config.eval_every and done != self.total:
            return False
        stop = False
        if self.main:
            self.rows.append(row)
            rows = [r for r in self.rows if r["step"] > self.select_from]
            if select(self.rule, rows)["step"] == done:
                with atomic_dir(self.out / KEPT) as tmp:
                    self.peft_model.save_pretrained(tmp, safe_serialization=True)
                    atomic_write_json(tmp / "step.json", {"step": done})
            patience = self.config.early_stop
            stop = bool(patience) and stale_probes(self.rule, rows) >= patience and done < self.total
            if stop:
                self.stopped = f"early stop: {patience} probes without a better step under '{self.rule.text}' (step {done})"
        if self.accelerator.num_processes > 1 and self.config.early_stop:
            flag = torch.tensor([float(stop)], device=self.accelerator.device)
            stop = self.accelerator.reduce(flag, "sum").item() > 0
            if stop and not self.main:
                self.stopped = "early stop (decided on the main process)"
        return stop

    def kept_before(self) -> int:
        """On --resume under --select: the step after which candidates count.

        The kept adapter of an interrupted attempt is used if it is still the log's best step up to
        the checkpoint; otherwise (it was lost or is from past the checkpoint) only steps probed
        after resuming are candidates, and selection.json says so.
        """
        from safeeraser.unlearn.selection import select

        if not self.start_step:
            return 0
        try:
            kept = json.loads((self.out / KEPT / "step.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            kept = None
        if kept is not None and select(self.rule, self.rows)["step"] == kept:
            return 0
        return self.start_step

    def step(self, step: int) -> dict:
        """grad_accum micro-batches of every view, one AdamW step. Returns the mean of each loss term.

        Each view's term is back-propagated before the next view's forward pass, so the activations
        of only one batch are alive at a time; the gradients add up to those of the summed loss.
        """
        config, accelerator, optimizer = self.config, self.accelerator, self.optimizer
        sums: dict[str, float] = {"loss": 0.0}
        last = len(self.objective.terms) - 1
        for micro in range(config.grad_accum):
            m = step * config.grad_accum + micro
            for i, (name, term) in enumerate(self.objective.terms.items()):
                items = [self.views[v].item(j, plan.epoch(m)) for v, plan in self.sources(name) for j in plan.indices(m)]
                batch = self.codec.collate_train(items)
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                sync = micro == config.grad_accum - 1 and i == last
                with (accelerator.no_sync(self.wrapped) if not sync and accelerator.num_processes > 1 else contextlib.nullcontext()):
                    terms = term(self.forward, batch, config.method)
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
            norm = accelerator.clip_grad_norm_(self.trainable, config.optim.grad_clip)
            if norm is not None and not torch.isfinite(torch.as_tensor(norm)).item():
                optimizer.zero_grad(set_to_none=True)
                return {"non_finite": "the gradient norm"}
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return sums

    def sources(self, batch: str) -> list[tuple[str, BatchPlan]]:
        """Each view of a named batch with the plan that picks its examples: its own, or for a
        paired batch ("refusal&forget") the first view's, so that row i of each view is one prompt."""
        views = batch_views(batch)
        if is_paired(batch):
            return [(v, self.plans[views[0]]) for v in views]
        return [(v, self.plans[v]) for v in views]

    def save_checkpoint(self, step: int) -> None:
        """Adapter weights, optimizer and scheduler state, RNG state: everything needed to resume."""
        from safetensors.torch import save_file

        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        if accelerator.is_main_process:
            with atomic_dir(self.out / CHECKPOINT) as tmp:
                save_file(_adapter_state(self.peft_model), str(tmp / "adapter.safetensors"))
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save({"scheduler": self.scheduler.state_dict(), "rng": rng}, tmp / "trainer.pt")
                atomic_write_json(tmp / "state.json", {"step": step})
        accelerator.wait_for_everyone()

    def load_checkpoint(self) -> int:
        """The checkpoint's state put back; returns its step."""
        from peft import set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder, device = self.out / CHECKPOINT, self.accelerator.device
        try:
            step = json.loads((folder / "state.json").read_text())["step"]
            set_peft_model_state_dict(self.peft_model, load_file(str(folder / "adapter.safetensors"), device=str(device)))
            self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
            state = torch.load(folder / "trainer.pt", weights_only=True)
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError) as e:
            raise UserError(f"{folder}: unreadable checkpoint ({type(e).__name__}); remove it or pass --overwrite") from None
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        return step

    def keep_last_good(self, step: int) -> str:
        """On a non-finite loss the weights are still those of the last good step: keep them."""
        folder = self.out / CHECKPOINT
        finite = all(torch.isfinite(p).all() for p in self.peft_model.parameters() if p.requires_grad)
        if finite:
            self.save_checkpoint(step)
            return f"The last good state (after step {step}) is kept in {folder}; lower the learning rate or check the data."
        if (folder / "state.json").exists():
            return f"The last good checkpoint is kept in {folder}."
        return "No good checkpoint exists (set checkpoint_every to keep one)."

    def finish(self) -> RunResult:
        """The adapter (and merged model), run.json, which marks the run complete; the checkpoint removed."""
        self.accelerator.wait_for_everyone()
        if self.main:
            self.write_outputs()
        return RunResult(self.out, self.name, self.steps, self.total, self.seconds, self.stopped, self.main, resumed_from=self.start_step)

    def write_outputs(self) -> None:
        out = self.out
        with atomic_dir(out / "adapter") as tmp:
            self.peft_model.save_pretrained(tmp, safe_serialization=True)
        selection = self.keep_selected() if self.rule is not None else None
        summary = {
            "method": self.name,
            "model": str(self.model),
            **({"revision": self.revision} if self.revision else {}),
            "data": str(self.data),
            "steps": self.steps,
            "total_steps": self.total,
            "seconds": round(self.seconds, 2),
            "stopped": self.stopped,
            "processes": self.accelerator.num_processes,
            "config_hash": config_hash(self.config.model_dump()),
            "environment": manifest(),
        }
        if selection is not None:
            summary["selected"] = {"step": selection["step"], "rule": selection["rule"], "why": selection["why"]}
        if self.on_finish is not None:
            self.on_finish(out, self.name)
        if self.merge:
            merged = self.peft_model.merge_and_unload()
            with atomic_dir(out / "merged") as tmp:
                merged.save_pretrained(tmp, safe_serialization=True)
                self.loaded.processor.save_pretrained(tmp)
            summary["merged"] = str(out / "merged")
        atomic_write_json(out / RUN_SUMMARY, summary)
        if (out / CHECKPOINT).exists():
            shutil.rmtree(out / CHECKPOINT)


    def keep_selected(self) -> dict:
        """adapter/ becomes the kept step's adapter (the last one moves to adapter-last/); selection.json says which and why."""
        from safeeraser.unlearn.selection import select

        out = self.out
        rows = [r for r in read_jsonl(out / RUN_LOG) if r.get("step", 0) > self.select_from]
        selection = select(self.rule, rows)
        selection["candidates_after_step"] = self.select_from
        if self.select_from:
            selection["why"] += f" (candidates: steps probed after resuming at step {self.select_from}; the earlier kept adapter was lost)"
        kept = out / KEPT
        if selection["met"] and selection["step"] != self.steps and (kept / "step.json").exists():
            if (out / "adapter-last").exists():
                shutil.rmtree(out / "adapter-last")
            (out / "adapter").rename(out / "adapter-last")
            (kept / "step.json").unlink()
            kept.rename(out / "adapter")
        else:
            selection["step"] = self.steps if not selection["met"] else selection["step"]
        if kept.exists():
            shutil.rmtree(kept)
        selection["adapter"] = "adapter"
        atomic_write_json(out / SELECTION, selection)
        return selection


def _adapter_state(peft_model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def _trim_log(path: Path, step: int) -> None:
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
