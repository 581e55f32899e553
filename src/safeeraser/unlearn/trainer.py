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
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, replace
from pathlib import Path

import torch

from safeeraser.data.checks import check_split_images
from safeeraser.data.records import load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import read_refusals, view_data
from safeeraser.environment import config_hash, manifest
from safeeraser.errors import TrainingStopped, UserError
from safeeraser.formats import RUN_LOG, RUN_SUMMARY, TRACKING_KEYS
from safeeraser.io import JsonlLog, atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from safeeraser.models.card import refresh_cards
from safeeraser.models.codec import Codec
from safeeraser.models.loading import default_dtype, load_model
from safeeraser.unlearn import trackers
from safeeraser.unlearn.config import RUN_CONFIG, UnlearnConfig, dump_config
from safeeraser.unlearn.launch import lone_cpu_launch
from safeeraser.unlearn.methods import Forward, canonical_name, get_method
from safeeraser.unlearn.methods.base import batch_views, is_paired

CHECKPOINT = "checkpoint"
SNAPSHOTS = "snapshots"  # the adapter after each step the run was asked to keep (snapshots/step-N)
KEPT = "kept"  # under select: the adapter of the best probed step so far (becomes adapter/ at the end)
SELECTION = "selection.json"  # under select: the kept step and why
# settings a resumed run may change: they decide what is written and how, not what is learnt
RESUME_FREE = ("checkpoint_every", "log_every", "log_examples", "gradient_checkpointing", "report_to")
FULL_WEIGHTS = "trainable.safetensors"  # a sharded run's checkpoint: trainable weights by parameter name
FULL_OPTIMIZER = "optimizer-full.pt"  # ... and their optimizer state, by parameter name
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
    """Which examples of a view form micro-batch ``unit``: a fresh permutation per epoch.

    A unit is one process's micro-batch of ``batch_size`` examples, numbered across processes:
    micro-step m of optimizer step s on process r of N, with grad_accum G, is unit
    ``(s * G + m) * N + r``. An optimizer step thus takes the same G x N consecutive units
    whatever N is, and every unit is the same micro-batch: 2 processes with grad_accum 1 see
    exactly the batches 1 process sees with grad_accum 2. (Each loss term is a mean within its
    micro-batch, as the released code computes it, so the per-device batch size is what must
    stay fixed; processes x grad_accum may be traded freely.) With one process this is the
    order the trainer has always used.
    """

    def __init__(self, n: int, batch_size: int, seed: int, view: str, *, shuffle: bool = True):
        self.n, self.batch_size = n, batch_size
        self.batches_per_epoch = math.ceil(n / batch_size)
        self._salt = int.from_bytes(hashlib.sha256(f"{seed}:{view}".encode()).digest()[:6], "little")
        # shuffle=False: the file order every epoch, as the released loader reads (shuffle = False)
        self._perm: tuple[int, torch.Tensor] | None = None if shuffle else (-1, torch.arange(n))

    def epoch(self, unit: int) -> int:
        return unit // self.batches_per_epoch

    def indices(self, unit: int) -> list[int]:
        epoch, b = divmod(unit, self.batches_per_epoch)
        if self._perm is None or self._perm[0] not in (epoch, -1):
            g = torch.Generator().manual_seed(self._salt + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        positions = (torch.arange(self.batch_size) + b * self.batch_size) % self.n  # the last batch wraps round
        return self._perm[1][positions].tolist()


def released_factor(step: int, *, warmup: int, total: int, processes: int) -> float:
    """The learning-rate factor of optimizer step ``step`` (0-based) as the released run stepped it.

    forget.py builds transformers' cosine-with-warmup schedule for ``total`` optimizer steps before
    ``accelerator.prepare``; accelerate's ``AcceleratedScheduler`` then advances it ``processes``
    times per optimizer step (2 in the released accelerate_config.yaml), and transformers' cosine is
    not clamped past its end: warm-up ends at warmup/processes, the rate reaches 0 at
    total/processes and climbs back towards the peak by the last step.
    """
    stepped = step * processes
    if stepped < warmup:
        return stepped / max(1, warmup)
    progress = (stepped - warmup) / max(1, total - warmup)  # past 1 the cosine climbs back: not clamped
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _schedule(optimizer, name: str, warmup: int, total: int, processes: int = 1):
    if name == "released":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: released_factor(step, warmup=warmup, total=total, processes=processes)
        )

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


def trainable_in_float32(model) -> None:
    """Every trainable weight held (and so updated by AdamW) in float32, the frozen ones left in
    their load dtype: a bfloat16 weight rounds away updates below its 8-bit mantissa's step (the
    released DeepSpeed bf16 run kept float32 master weights). PEFT already keeps LoRA's matrices in
    float32; a fully trained module (the projector copy) is cast here, its inputs cast to float32 on
    the way in and its output back to the dtype that came in, so the frozen model around it is
    unchanged."""
    for module in model.modules():
        own = [
            p
            for p in module.parameters(recurse=False)
            if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32
        ]
        if not own:
            continue
        for p in own:
            p.data = p.data.float()
        if not getattr(module, "_float32_hooks", False):
            module.register_forward_pre_hook(_inputs_to_float32, with_kwargs=True)
            module.register_forward_hook(_output_to_input_dtype, with_kwargs=True)
            module._float32_hooks = True


def _inputs_to_float32(module, args, kwargs):
    floating = [a for a in args if torch.is_tensor(a) and a.is_floating_point()]
    module._float32_came_in = floating[0].dtype if floating else None
    return tuple(_float32(a) for a in args), {k: _float32(v) for k, v in kwargs.items()}


def _float32(value):
    return value.float() if torch.is_tensor(value) and value.is_floating_point() else value


def _output_to_input_dtype(module, args, kwargs, output):
    came_in = getattr(module, "_float32_came_in", None)
    if came_in is None or came_in == torch.float32 or not torch.is_tensor(output):
        return output
    return output.to(came_in)


def capitalized(example):
    """The example with question and answer ``.capitalize()``d, as the released data module reads
    them (a refusal is stripped of spaces first, as it is there): ``text.capitalize``."""
    return replace(example, question=example.question.capitalize(), answer=example.answer.strip(" ").capitalize())


def _capitalized(encode):
    """``encode`` of the ``capitalized`` example."""
    return lambda example: encode(capitalized(example))


def training_codec(loaded, config: UnlearnConfig) -> Codec:
    """The codec of training under ``config``: the prompt format (system sentence), the answer's
    cuts and end token (with ``capitalized`` when ``text.capitalize``, what the model is trained on)."""
    family = loaded.family
    system = family.system_sentence(config.system_sentence) if config.system_prompt else None
    return Codec(
        loaded.processor,
        family=family,
        system=system,
        max_answer_tokens=config.max_answer_tokens,
        max_length=config.max_length,
        train_eos=config.text.train_eos,
    )


def snapshot_folder(out: Path, step: int) -> Path:
    """Where a run asked for ``snapshots`` keeps the adapter after optimizer step ``step``."""
    return Path(out) / SNAPSHOTS / f"step-{step}"


def _continued(model, adapter: Path):
    """The model with a trained adapter (its LoRA and projector copy, or SineProject's layers)
    loaded trainable: training continues it rather than starting a fresh LoRA, and saves an
    adapter over the same base."""
    from safeeraser.models.loading import peft_from_adapter

    return peft_from_adapter(model, Path(adapter), trainable=True)


def _lora(model, family, config: UnlearnConfig, projector: str | None = None):
    """LoRA on the language model and the projector trained in full (``lora.train_projector``), or,
    with ``projector="sine"`` (SineProject), the projector frozen with a sine-bounded update on each
    of its linear layers (``models/sine_projector.py``)."""
    from peft import LoraConfig, get_peft_model

    target = config.lora.target or family.lora_target
    extra = {}
    if projector == "sine":
        from safeeraser.models import sine_projector

        names = sine_projector.projector_linears(model, family.projector)
        sine_projector.mark(model, names)
        target = sine_projector.targets(target, names)
        rank = config.method.sineproject.rank or config.lora.r
        extra = {"rank_pattern": {re.escape(n): rank for n in names}}
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=target,
        modules_to_save=[family.projector] if config.lora.train_projector and projector is None else None,
        bias="none",
        **extra,
    )
    if projector == "sine":
        sine_projector.register(lora, config.method.sineproject.frequency)
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise UserError(f"LoRA target {lora.target_modules!r} matches no module of this model ({e})") from None


def _accelerator(config: UnlearnConfig, out: Path):
    """The accelerator as ``accelerate launch`` (or its config file) set it up, with the run's
    mixed precision when the config names one (null: the launcher's, 'no' when launched plainly)
    and its experiment trackers (``report_to``), which write under ``out``."""
    from accelerate import Accelerator

    precision = config.mixed_precision
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("mixed_precision=fp16 needs a GPU; on CPU use bf16 or no")
    if config.load_in_4bit and not torch.cuda.is_available():
        raise UserError("load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes; set load_in_4bit=false on CPU")
    # cpu=True lets a multi-process launch without GPUs (torchrun, accelerate --multi_gpu) use gloo
    kwargs = {"mixed_precision": precision} if precision is not None else {}
    kwargs |= trackers.accelerator_kwargs(config.report_to, out)
    try:
        return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)
    except (ImportError, ValueError) as e:  # e.g. a DeepSpeed config without deepspeed installed
        raise UserError(
            f"accelerate could not start: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def _sharding(accelerator) -> tuple[bool, bool]:
    """(weights sharded across processes, DeepSpeed): FSDP and DeepSpeed ZeRO, where the adapter
    must be gathered to be saved and every process must join each forward pass."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    return kind in (DistributedType.FSDP, DistributedType.DEEPSPEED), kind == DistributedType.DEEPSPEED


def _fill_deepspeed(accelerator, config: UnlearnConfig) -> None:
    """The DeepSpeed settings the run decides: the micro-batch, no accumulation inside the engine
    (the loop accumulates, and tells the engine which backward ends the step), the run's clipping."""
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = config.batch_size
    ds["gradient_accumulation_steps"] = 1
    ds["train_batch_size"] = config.batch_size * accelerator.num_processes
    ds["gradient_clipping"] = config.optim.grad_clip if config.optim.grad_clip is not None else 0.0


def _fill_fsdp(accelerator, model) -> None:
    """FSDP's units by layer class: the model's ``_no_split_modules`` that it has (transformers lists
    classes a model may lack, e.g. LLaVA's CLIPTextEmbeddings, which accelerate refuses); classes the
    accelerate config names are kept as given."""
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = accelerator.state.fsdp_plugin
    if plugin.auto_wrap_policy is transformer_auto_wrap_policy and plugin.transformer_cls_names_to_wrap is None:
        present = {type(m).__name__ for m in model.modules()}
        plugin.transformer_cls_names_to_wrap = [
            c for c in getattr(model, "_no_split_modules", None) or [] if c in present
        ]


@contextlib.contextmanager
def _gathered_root(model):
    """Under FSDP2, the root unit's own weights gathered for generation: ``generate`` calls parts
    of the model (e.g. the image features) without the root's forward, which would gather them.
    The decoder layers' units gather themselves as they run."""
    if not hasattr(model, "unshard"):  # not an FSDP2 module
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


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
    overwrite, merge, progress, allow_outside_root, on_finish, revision, preset)``.
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

    def identity(self) -> dict:
        """What a checkpoint must share with the run that resumes it: method, base model, revision and
        every setting that shapes the trajectory. Settings free to change on resume are left out
        (checkpoint_every, log_every, log_examples, gradient_checkpointing), and grad_accum enters as
        micro_batches_per_step, grad_accum x processes, so that a run may resume on another number
        of processes with grad_accum traded against it."""
        settings = self.config.model_dump()
        for free in RESUME_FREE:
            settings.pop(free, None)
        settings["micro_batches_per_step"] = settings.pop("grad_accum") * self.accelerator.num_processes
        started = {"adapter": str(self.adapter)} if self.adapter is not None else {}
        return {
            "method": self.name,
            "model": str(self.model),
            "revision": self.revision,
            **started,
            "settings": settings,
        }

    def check_resumable(self) -> None:
        """Under --resume, refuse a checkpoint written by another run (one line naming the difference)."""
        folder = self.out / CHECKPOINT
        if not (self.resume and (folder / "state.json").exists()):
            return
        try:
            state = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError):
            raise UserError(f"{folder}: unreadable checkpoint (state.json); remove it or pass --overwrite") from None
        if "settings" not in state:  # written before checkpoints recorded their run
            return
        ours = self.identity()
        theirs, mine = (
            _flat(state["settings"]),
            _flat(json.loads(json.dumps(ours["settings"]))),
        )  # as state.json holds them
        differ = [
            f"{k} {state.get(k)!r} -> {ours.get(k)!r}"
            for k in ("method", "model", "revision", "adapter")
            if state.get(k) != ours.get(k)
        ]
        differ += [
            f"{k} {theirs.get(k)!r} -> {mine.get(k)!r}"
            for k in sorted(set(theirs) | set(mine))
            if theirs.get(k) != mine.get(k)
        ]
        if differ:
            more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
            raise UserError(
                f"{folder}: written by a run with other settings: {', '.join(differ[:3])}{more}; resume with the same ones, or pass --overwrite to start again"
            )

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

    def restore(self) -> None:
        """Under --resume, the checkpoint's state; the log cut back to the step it continues from."""
        self.start_step = 0
        if self.resume and (self.out / CHECKPOINT / "state.json").exists():
            self.start_step = self.load_checkpoint()
        if self.main:
            _trim_log(
                self.out / RUN_LOG, self.start_step
            )  # drop what an interrupted attempt logged past the checkpoint

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

    def probed(self, done: int, row: dict) -> bool:
        """Under --select, after a probe: keep the adapter if this step is the best so far; whether
        --early-stop ends training now (decided on the main process, which alone probes, and shared)."""
        from safeeraser.unlearn.selection import select, stale_probes

        if done % self.config.eval_every and done != self.total:
            return False
        stop = keep = False
        if self.main:
            self.rows.append(row)
            rows = [r for r in self.rows if r["step"] > self.select_from]
            keep = select(self.rule, rows)["step"] == done
            patience = self.config.early_stop
            stop = bool(patience) and stale_probes(self.rule, rows) >= patience and done < self.total
            if stop:
                self.stopped = (
                    f"early stop: {patience} probes without a better step under '{self.rule.text}' (step {done})"
                )
        if self.sharded:  # gathering the adapter takes every process: all must know whether to keep it
            from accelerate.utils import broadcast_object_list

            keep = broadcast_object_list([keep])[0]
        if keep:
            state = self.gathered_adapter()
            if self.main:
                with atomic_dir(self.out / KEPT) as tmp:
                    self.save_adapter(tmp, state)
                    atomic_write_json(tmp / "step.json", {"step": done})
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

    def examples_drawn(self) -> dict[str, list[int]]:
        """The examples of the last optimizer step, by view, from every process in unit order
        (the same list whatever the process count). A collective call: every process makes it."""
        from accelerate.utils import gather_object

        drawn = sorted(
            gather_object(self.drawn) if self.accelerator.num_processes > 1 else self.drawn, key=lambda d: d[0]
        )
        out: dict[str, list[int]] = {}
        for _, view, idx in drawn:
            out.setdefault(view, []).extend(idx)
        return out

    def sources(self, batch: str) -> list[tuple[str, BatchPlan]]:
        """Each view of a named batch with the plan that picks its examples: its own, or for a
        paired batch ("refusal&forget") the first view's, so that row i of each view is one prompt."""
        views = batch_views(batch)
        if is_paired(batch):
            return [(v, self.plans[views[0]]) for v in views]
        return [(v, self.plans[v]) for v in views]

    def save_snapshot(self, step: int) -> None:
        """The adapter as it is after optimizer step ``step``, in PEFT's format (a collective call)."""
        state = self.gathered_adapter()
        if self.main:
            with atomic_dir(snapshot_folder(self.out, step)) as tmp:
                self.save_adapter(tmp, state)
                atomic_write_json(tmp / "step.json", {"step": step})

    def save_checkpoint(self, step: int) -> None:
        """Adapter weights, optimizer and scheduler state, every process's RNG state: everything needed
        to resume. Under FSDP the trainable weights and their optimizer state are gathered whole (by
        parameter name, frozen weights left out), so the checkpoint is the same whatever the sharding
        and resumes on any number of processes. A collective call: every process makes it."""
        from safetensors.torch import save_file

        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        rng = self.rng_states()
        trainable = _full_trainable_state(self.wrapped, self.optimizer) if self.sharded else None
        if accelerator.is_main_process:
            with atomic_dir(self.out / CHECKPOINT) as tmp:
                if trainable is None:
                    save_file(_adapter_state(self.peft_model), str(tmp / "adapter.safetensors"))
                    torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                else:
                    save_file({k: v.contiguous() for k, v in trainable[0].items()}, str(tmp / FULL_WEIGHTS))
                    torch.save(trainable[1], tmp / FULL_OPTIMIZER)
                torch.save(
                    {"scheduler": self.scheduler.state_dict(), "rng": rng[0], "rng_by_process": rng}, tmp / "trainer.pt"
                )
                atomic_write_json(
                    tmp / "state.json", {"step": step, "processes": accelerator.num_processes, **self.identity()}
                )
        accelerator.wait_for_everyone()

    def rng_states(self) -> list[dict]:
        """Every process's RNG state, in process order (a collective call with several processes)."""
        from accelerate.utils import gather_object

        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        return gather_object([rng]) if self.accelerator.num_processes > 1 else [rng]

    def load_checkpoint(self) -> int:
        """The checkpoint's state put back (each process its own RNG state when the process count
        is the one that wrote it); returns its step."""
        from peft import set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder, device = self.out / CHECKPOINT, self.accelerator.device
        full = (folder / FULL_WEIGHTS).exists()
        if self.sharded and not full:
            raise UserError(
                f"{folder}: written by a run without sharding; resume it without the FSDP config (or pass --overwrite)"
            )
        try:
            step = json.loads((folder / "state.json").read_text())["step"]
            if full:
                _set_full_trainable_state(
                    self.wrapped if self.sharded else self.peft_model,
                    self.optimizer,
                    load_file(str(folder / FULL_WEIGHTS)),
                    torch.load(folder / FULL_OPTIMIZER, weights_only=True),
                )
            else:
                set_peft_model_state_dict(
                    self.peft_model, load_file(str(folder / "adapter.safetensors"), device=str(device))
                )
                self.optimizer.load_state_dict(
                    torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
                )
            state = torch.load(folder / "trainer.pt", weights_only=True)
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError) as e:
            raise UserError(
                f"{folder}: unreadable checkpoint ({type(e).__name__}); remove it or pass --overwrite"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        by_process = state.get("rng_by_process") or []
        rng = (
            by_process[self.accelerator.process_index]
            if len(by_process) == self.accelerator.num_processes
            else state["rng"]
        )
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        return step

    def keep_last_good(self, step: int) -> str:
        """On a non-finite loss the weights are still those of the last good step: keep them."""
        folder = self.out / CHECKPOINT
        if self.deepspeed:
            return "No checkpoint is kept under DeepSpeed."
        finite = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()) for p in self.trainable)
        if self.accelerator.num_processes > 1:  # each process sees its own shards: all must be finite
            flag = torch.tensor([float(finite)], device=self.accelerator.device)
            finite = self.accelerator.reduce(flag, "sum").item() == self.accelerator.num_processes
        if finite:
            self.save_checkpoint(step)
            return f"The last good state (after step {step}) is kept in {folder}; lower the learning rate or check the data."
        if (folder / "state.json").exists():
            return f"The last good checkpoint is kept in {folder}."
        return "No good checkpoint exists (set checkpoint_every to keep one)."

    def finish(self) -> RunResult:
        """The adapter (and merged model), run.json, which marks the run complete; the checkpoint removed."""
        self.accelerator.wait_for_everyone()
        state = self.gathered_adapter()
        if self.main:
            self.write_outputs(state)
        return RunResult(
            self.out,
            self.name,
            self.steps,
            self.total,
            self.seconds,
            self.stopped,
            self.main,
            resumed_from=self.start_step,
        )

    def gathered_adapter(self) -> dict | None:
        """Under sharded training (FSDP, DeepSpeed), the full weights gathered from every process,
        on the main process (a collective call: every process makes it); otherwise None, as each
        process holds them whole."""
        if not self.sharded:
            return None
        if not self.accelerator.is_fsdp2:  # DeepSpeed (ZeRO-3: 16-bit weights gathered), FSDP1: accelerate's gathering
            return self.accelerator.get_state_dict(self.wrapped)
        # FSDP2: only the weights PEFT saves (LoRA, modules_to_save), each gathered whole on every
        # process in the same order, so the memory needed is the adapter's, not the model's. (accelerate's
        # get_state_dict gathers the whole model, and on CPU returns the weights still sharded.)
        state = {}
        for name, value in self.peft_model.state_dict().items():
            if "lora_" in name or "modules_to_save" in name:
                state[name] = value.full_tensor() if hasattr(value, "full_tensor") else value
        return state

    def save_adapter(self, folder: Path, state: dict | None) -> None:
        """The adapter in PEFT's format (LoRA, and the projector when it is trained), loadable on
        one process; ``state``: the full weights gathered from a sharded run."""
        if state is None:
            self.peft_model.save_pretrained(folder, safe_serialization=True)
        else:
            self.peft_model.save_pretrained(folder, safe_serialization=True, state_dict=state)
        if self.objective.projector == "sine":  # what attach_adapter needs to rebuild the sine layers
            from safeeraser.models import sine_projector

            names = sine_projector.projector_linears(self.loaded.model, self.loaded.family.projector)
            sine_projector.write_marker(folder, self.config.method.sineproject.frequency, names)

    def write_outputs(self, state: dict | None = None) -> None:
        out = self.out
        with atomic_dir(out / "adapter") as tmp:
            self.save_adapter(tmp, state)
        selection = self.keep_selected() if self.rule is not None else None
        summary = {
            "method": self.name,
            "model": str(self.model),
            **({"revision": self.revision} if self.revision else {}),
            **({"preset": self.preset} if self.preset else {}),
            **({"adapter": str(self.adapter)} if self.adapter is not None else {}),
            "data": str(self.data),
            "steps": self.steps,
            "total_steps": self.total,
            "seconds": round(self.seconds, 2),
            "stopped": self.stopped,
            "processes": self.accelerator.num_processes,
            "config_hash": config_hash(self.config.model_dump(exclude=TRACKING_KEYS)),
            "environment": manifest(),
        }
        if selection is not None:
            summary["selected"] = {"step": selection["step"], "rule": selection["rule"], "why": selection["why"]}
        if self.on_finish is not None:
            self.on_finish(out, self.name)
        if self.merge and self.sharded:  # no process holds the whole model: the base again, whole, on the CPU
            from safeeraser.models.merge import merge_run

            merge_run(
                out,
                out / "merged",
                model=self.model,
                revision=self.revision,
                dtype=default_dtype(self.accelerator.device),
                overwrite=True,
            )
            summary["merged"] = str(out / "merged")
        elif self.merge:
            from safeeraser.models.merge import MERGE_RECORD

            if selection is not None and selection["step"] != self.steps:  # merge the kept step's adapter, not the last
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(
                    self.peft_model,
                    load_file(str(out / "adapter" / "adapter_model.safetensors"), device=str(self.accelerator.device)),
                )
            merged = self.peft_model.merge_and_unload()
            with atomic_dir(out / "merged") as tmp:
                merged.save_pretrained(tmp, safe_serialization=True)
                self.loaded.processor.save_pretrained(tmp)
                atomic_write_json(
                    tmp / MERGE_RECORD,
                    {
                        "base": str(self.model),
                        **({"revision": self.revision} if self.revision else {}),
                        "adapter": str((out / "adapter").resolve()),
                    },
                )
            summary["merged"] = str(out / "merged")
        atomic_write_json(out / RUN_SUMMARY, summary)
        refresh_cards(out)  # README.md of adapter/ (and merged/), from run.json and config.yaml
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
            selection["why"] += (
                f" (candidates: steps probed after resuming at step {self.select_from}; the earlier kept adapter was lost)"
            )
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


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 1}} -> {"optim.lr": 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _full_trainable_state(model, optimizer) -> tuple[dict, dict] | None:
    """The trainable weights (LoRA, a trained projector) and their optimizer state, gathered whole on
    the main process and keyed by parameter name (None on the others). A collective call."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    weights, optim = get_state_dict(model, getattr(optimizer, "optimizer", optimizer), options=options)
    return (weights, optim) if weights else None


def _set_full_trainable_state(model, optimizer, weights: dict, optim: dict) -> None:
    """A checkpoint of ``_full_trainable_state`` put into the model and optimizer, sharded again as
    the model is (or whole, on one process)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    options = StateDictOptions(full_state_dict=True, ignore_frozen_params=True, strict=False)
    missing = set_state_dict(
        model,
        getattr(optimizer, "optimizer", optimizer),
        model_state_dict=weights,
        optim_state_dict=optim,
        options=options,
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lost = [k for k in missing.missing_keys if k in trainable]
    if lost or missing.unexpected_keys:
        raise KeyError(f"weights of another model: {(lost or missing.unexpected_keys)[0]}")


def _adapter_state(peft_model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def _trim_log(path: Path, step: int) -> None:
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
