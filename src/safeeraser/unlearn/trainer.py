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
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import torch

from safeeraser.data.checks import check_split_images
from safeeraser.data.records import load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import read_refusals, view_data
from safeeraser.errors import TrainingStopped, UserError
from safeeraser.formats import CHECKPOINT, RUN_CONFIG, RUN_LOG, RUN_SUMMARY
from safeeraser.io import JsonlLog, atomic_write_text, read_jsonl
from safeeraser.models.codec import Codec
from safeeraser.models.loading import load_model
from safeeraser.unlearn import trackers
from safeeraser.unlearn.adapters import (  # noqa: F401
    SNAPSHOTS,
    _capitalized,
    _continued,
    _lora,
    capitalized,
    snapshot_folder,
    training_codec,
)
from safeeraser.unlearn.checkpoint import (  # noqa: F401
    FULL_OPTIMIZER,
    FULL_WEIGHTS,
    RESUME_FREE,
    CheckpointMixin,
    _trim_log,
)
from safeeraser.unlearn.config import UnlearnConfig, dump_config
from safeeraser.unlearn.distributed import (  # noqa: F401
    _accelerator,
    _adapter_state,
    _checkpoint_activations,
    _fill_deepspeed,
    _fill_fsdp,
    _full_trainable_state,
    _gathered_root,
    _set_full_trainable_state,
    _sharding,
)
from safeeraser.unlearn.keeping import KEPT, SELECTION, SelectionMixin  # noqa: F401
from safeeraser.unlearn.launch import lone_cpu_launch
from safeeraser.unlearn.methods import Forward, canonical_name, get_method
from safeeraser.unlearn.methods.base import batch_views, is_paired
from safeeraser.unlearn.outputs import ALREADY_COMPLETE, OutputsMixin, RunResult  # noqa: F401
from safeeraser.unlearn.precision import trainable_in_float32  # noqa: F401
from safeeraser.unlearn.schedule import BatchPlan, _schedule, released_factor  # noqa: F401


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
    overwrite, merge, progress, allow_outside_root, on_finish, revision, preset)``.
    """
    return UnlearnRun(*args, **kwargs).run()


@dataclass(eq=False)
class UnlearnRun(CheckpointMixin, SelectionMixin, OutputsMixin):
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
    preset: str | None = (
        None  # the packaged config the settings started from, recorded in run.json (and the model card)
    )
    # a trained adapter (run folder or adapter folder) to continue instead of a fresh LoRA (config.lora
    # is then the adapter's own): the audit's relearning starts from the unlearned model this way
    adapter: str | Path | None = None
    # optimizer steps after which the adapter is also saved, to snapshots/step-N (one run gives
    # every budget of the relearning curve); a resumed run writes again those past its checkpoint
    snapshots: tuple[int, ...] = ()

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
        try:
            self.train()
            return self.finish()
        finally:
            if self.accelerator.trackers:  # trackers flushed and closed (also when training failed)
                self.accelerator.end_training()

    def finished_before(self) -> RunResult | None:
        """Under --resume, the result of a run that already finished (run.json and no checkpoint)."""
        out = self.out
        if not (self.resume and (out / RUN_SUMMARY).exists() and not (out / CHECKPOINT).exists()):
            return None
        try:
            done = json.loads((out / RUN_SUMMARY).read_text())
            steps, total = int(done["steps"]), int(done["total_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(
                f"{out / RUN_SUMMARY}: unreadable run summary of a finished run; pass --overwrite to train again"
            ) from None
        return RunResult(out, self.name, steps, total, 0.0, ALREADY_COMPLETE)

    def setup(self) -> None:
        """The method's objective, the accelerator, the seed; under --overwrite, the old run removed."""
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        self.objective = get_method(self.name, self.config.method)
        self.rule = None
        if self.config.select or self.config.early_stop:
            from safeeraser.unlearn.selection import parse_rule

            if not self.config.select:
                raise UserError(
                    "early_stop needs a selection rule: pass --select RULE (e.g. 'min sarr subject to forget_asr<=0.05')"
                )
            if not self.config.eval_every:
                raise UserError("--select reads the dynamics probe: set eval_every (e.g. --set eval_every=25)")
            self.rule = parse_rule(self.config.select, self.objective.logs)
        self.refusals = read_refusals(Path(self.config.refusals)) if self.config.refusals else REFUSALS
        trackers.check_installed(self.config.report_to)
        self.accelerator = _accelerator(self.config, self.out)
        self.main = self.accelerator.is_main_process
        self.sharded, self.deepspeed = _sharding(self.accelerator)
        if self.sharded:
            if self.deepspeed and (self.config.checkpoint_every or self.resume):
                raise UserError(
                    "checkpoints (checkpoint_every, --resume) are not kept under DeepSpeed: set checkpoint_every=0, or train with configs/accelerate/fsdp.yaml, whose checkpoints resume"
                )
        if self.progress and self.main and lone_cpu_launch():
            tqdm.write(
                "note: accelerate started one CPU process and its --num_processes could not be read; "
                "for N processes on CPU pass `--num_processes N` on the command line, or use torchrun"
            )
        asked = [
            name
            for name, var in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
            if os.environ.get(var, "").lower() == "true"
        ]
        if asked and not self.sharded and self.progress and self.main:
            tqdm.write(
                f"note: accelerate runs {asked[0]} on GPUs only: these {self.accelerator.num_processes} CPU process(es) train "
                "data-parallel (gloo), each holding the whole model"
            )
        set_seed(self.config.seed)
        if self.overwrite and self.main and self.out.exists() and not self.resume:
            shutil.rmtree(self.out)
        self.accelerator.wait_for_everyone()

    def load(self) -> None:
        """The forget split, the model and its codec, the views the method trains on and their batch plans."""
        self.check_resumable()
        config, accelerator = self.config, self.accelerator
        self.train_split = load_split(self.data, "train", allow_outside_root=self.allow_outside_root)
        check_split_images(self.train_split)
        dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
        self.loaded = load_model(
            self.model, revision=self.revision, device=accelerator.device, dtype=dtype, load_in_4bit=config.load_in_4bit
        )
        self.codec = training_codec(self.loaded, config)
        encode = self.codec.encode_example
        if config.text.capitalize:  # as the released data module reads question, answer and refusal
            encode = _capitalized(encode)
        self.views = {}
        for view in self.objective.views:
            self.views[view] = view_data(self.train_split, view, encode, seed=config.seed, refusals=self.refusals)
            if not len(self.views[view]):
                raise UserError(
                    f"{self.train_split.name}: method {self.name} needs {view} examples but the split has none (no UnharmPair_* fields?)"
                )
        # order=file: the forget-side views in file order; the retain view stays shuffled, as the
        # released code draws a random retain example at every access
        self.plans = {
            v: BatchPlan(
                len(ds), config.batch_size, config.seed, v, shuffle=config.order == "shuffled" or v == "retain"
            )
            for v, ds in self.views.items()
        }
        primary = self.plans[self.objective.views[0]]
        steps_per_epoch = math.ceil(primary.batches_per_epoch / (config.grad_accum * accelerator.num_processes))
        self.total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))

    def build(self) -> None:
        """LoRA on the language model, AdamW over its trainable weights and the learning-rate schedule."""
        from accelerate.utils import set_seed

        config = self.config
        if config.load_in_4bit:  # QLoRA: norms in float32, inputs that carry gradients into the 4-bit layers
            from peft import prepare_model_for_kbit_training

            prepare_model_for_kbit_training(self.loaded.model, use_gradient_checkpointing=False)
        # LoRA's initial weights from the run's seed, whatever loading drew: a plain load draws
        # nothing (so this changes no one-process run), but under DeepSpeed ZeRO-3 transformers
        # loads the model through DeepSpeed, which draws random numbers, and the adapter would
        # start elsewhere than on one process.
        set_seed(config.seed)
        if self.adapter is not None:
            self.peft_model = _continued(self.loaded.model, Path(self.adapter))
        else:
            self.peft_model = _lora(self.loaded.model, self.loaded.family, config, self.objective.projector)
        if config.gradient_checkpointing:
            _checkpoint_activations(self.loaded.model)
        self.peft_model.train()
        # DeepSpeed keeps float32 master weights itself; FSDP flattens weights of one dtype per unit
        # (load in float32 there, with mixed_precision=bf16); 4-bit QLoRA has its own casts
        if not (config.load_in_4bit or self.sharded):
            trainable_in_float32(self.peft_model)
        named = [(n, p) for n, p in self.peft_model.named_parameters() if p.requires_grad]
        self.trainable = [p for _, p in named]
        # weight decay on weights, none on biases, as the released optimizer groups them (forget.py:106-112)
        groups = [
            {"params": [p for n, p in named if not n.endswith("bias")], "weight_decay": config.optim.weight_decay},
            {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.optim.lr)
        # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step
        # it once per process (schedule=released reproduces that on purpose).
        optim = config.optim
        self.scheduler = _schedule(
            optimizer, optim.schedule, round(optim.warmup_ratio * self.total), self.total, optim.released_processes
        )
        if self.deepspeed:
            _fill_deepspeed(self.accelerator, config)
        elif self.sharded:
            _fill_fsdp(self.accelerator, self.peft_model)
        self.wrapped, self.optimizer = self.accelerator.prepare(self.peft_model, optimizer)
        if self.sharded:  # FSDP2 puts sharded parameters in the model's place: clip those, not the originals
            self.trainable = [p for p in self.wrapped.parameters() if p.requires_grad]
        self.forward = Forward(self.wrapped, self.peft_model, family=self.loaded.family)
        # a method's once-before-training step (MMUnlearner's saliency mask): a filter of each term's gradient
        self.gradient_filter = self.objective.prepare(self) if self.objective.prepare is not None else None

    def open(self) -> None:
        """The dynamics probe (main process only), the selection rule, and the run folder with its config.yaml."""
        self.probe = None
        self.rows: list[dict] = read_jsonl(self.out / RUN_LOG) if self.main and self.rule and self.start_step else []
        self.select_from = self.kept_before() if self.main and self.rule else 0
        if self.config.eval_every and (self.main or self.sharded):
            from safeeraser.unlearn.dynamics import DynamicsProbe

            val = load_split(self.data, "val", allow_outside_root=self.allow_outside_root)
            # the probe generates as `generate` does: with the family's inference sentence
            probe_system = self.loaded.family.system_sentence("inference") if self.config.system_prompt else None
            probe_codec = (
                self.codec
                if probe_system == self.codec.system
                else Codec(self.loaded.processor, family=self.loaded.family, system=probe_system)
            )
            self.probe = DynamicsProbe(probe_codec, self.train_split, val, self.config.eval_samples)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / RUN_CONFIG, dump_config(self.config))
        trackers.start(self.accelerator, self.out, self.config.model_dump())

    def train(self) -> None:
        """Optimizer steps up to the total, each logged, probed and checkpointed as the config says.

        Sets ``steps`` (done when training ended), ``stopped`` (why it ended early) and ``seconds``.
        """
        from safeeraser.progress import bar as progress_bar

        config, main, total = self.config, self.main, self.total
        log = JsonlLog(self.out / RUN_LOG) if main else None
        self.stopped = None
        began = time.perf_counter()
        bar = progress_bar(
            range(self.start_step, total),
            initial=self.start_step,
            total=total,
            desc=f"unlearn {self.name}",
            enabled=self.progress and main,
        )
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
                if config.log_examples:
                    row["examples"] = self.examples_drawn()
                if self.probe is not None and ((step + 1) % config.eval_every == 0 or step + 1 == total):
                    # main process only (the others wait at the next all-reduce), except when the
                    # weights are sharded: then every process generates, as each forward pass gathers
                    # the weights from all of them. The unwrapped model, as a DDP wrapper has no generate()
                    with _gathered_root(self.peft_model):
                        answer = self.probe(self.peft_model)
                    if main:
                        row["eval"] = answer
                if main and ((step + 1) % config.log_every == 0 or "eval" in row or step + 1 == total):
                    log.append(row)
                if self.accelerator.trackers:  # every step, whatever log_every keeps in log.jsonl
                    self.accelerator.log(trackers.step_values(row), step=step + 1)
                if self.rule is not None and self.probed(step + 1, row):
                    step += 1
                    break
                bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
                bound = config.method.forget_nll_bound
                if bound is not None and terms.get("forget_nll", 0.0) > bound:
                    self.stopped = f"forget NLL {terms['forget_nll']:.2f} passed the bound {bound:g} (method.forget_nll_bound) at step {step + 1}"
                    step += 1
                    break
                if step + 1 in self.snapshots:
                    self.save_snapshot(step + 1)
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

    def step(self, step: int) -> dict:
        """grad_accum micro-batches of every view, one AdamW step. Returns the mean of each loss term.

        Each view's term is back-propagated before the next view's forward pass, so the activations
        of only one batch are alive at a time; the gradients add up to those of the summed loss.
        """
        config, accelerator, optimizer = self.config, self.accelerator, self.optimizer
        sums: dict[str, float] = {"loss": 0.0}
        last = len(self.objective.terms) - 1
        self.drawn = []  # (unit, view, example indices) of this process's micro-batches
        for micro in range(config.grad_accum):
            unit = (step * config.grad_accum + micro) * accelerator.num_processes + accelerator.process_index
            for i, (name, term) in enumerate(self.objective.terms.items()):
                picks = [(v, plan.epoch(unit), plan.indices(unit)) for v, plan in self.sources(name)]
                self.drawn += [(unit, v, idx) for v, _, idx in picks]
                items = [self.views[v].item(j, epoch) for v, epoch, idx in picks for j in idx]
                batch = self.codec.collate_train(items)
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                sync = micro == config.grad_accum - 1 and i == last
                if self.deepspeed:  # the engine steps inside backward() unless told this is not the step's last
                    accelerator.gradient_state._set_sync_gradients(sync)
                with (
                    accelerator.no_sync(self.wrapped)
                    if not sync and accelerator.num_processes > 1
                    else contextlib.nullcontext()
                ):
                    terms = term(self.forward, batch, config.method)
                    # every process must agree to stop, or the others would wait in the next all-reduce
                    finite = torch.isfinite(terms["loss"].detach()).float().reshape(1)
                    if accelerator.reduce(finite, "sum").item() < accelerator.num_processes:
                        bad = next(
                            (k for k, v in terms.items() if k != "loss" and not torch.isfinite(v).item()), "loss"
                        )
                        optimizer.zero_grad(set_to_none=True)
                        return {"non_finite": f"the loss term {bad!r}"}
                    with (
                        self.gradient_filter.during(name)
                        if self.gradient_filter is not None
                        else contextlib.nullcontext()
                    ):
                        accelerator.backward(terms["loss"] / config.grad_accum)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(accelerator.reduce(v.detach(), "mean")) / config.grad_accum
        if config.optim.grad_clip is not None:
            norm = accelerator.clip_grad_norm_(self.trainable, config.optim.grad_clip)
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor
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
