"""The distributed modes behind one small interface: the accelerator a config asks for (one
process, DDP, FSDP, DeepSpeed ZeRO), whether it shards the model, the whole trainable state
gathered from shards, and activation checkpointing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from safeeraser.errors import UserError
from safeeraser.unlearn import trackers
from safeeraser.unlearn.config import UnlearnConfig


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
