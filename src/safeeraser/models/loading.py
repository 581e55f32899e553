"""Loading a vision-language model, its processor and (optionally) a LoRA adapter.

A model is a local folder or a Hugging Face id. A hub id is used as the Hugging Face libraries
use it: downloaded into their cache on first use, read from the cache only under
``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``, with ``HF_TOKEN`` for gated models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from safeeraser.errors import UserError
from safeeraser.models.families import family_for
from safeeraser.models.family import ModelFamily


def quiet_transformers() -> None:
    """Silence transformers' per-load chatter (progress bars, backend notices)."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # PEFT still calls a transformers method that now warns on every call
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``: the Hugging Face cache only, as the HF libraries do."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def locate(model: str, revision: str | None = None) -> Path:
    """The local folder holding ``model``'s config.json: a folder, or a hub id, downloaded into the
    Hugging Face cache on first use (with progress bars) unless the hub is set offline."""
    path = Path(model).expanduser()
    if path.is_dir():
        if revision:
            raise UserError(
                f"--revision {revision}: {path} is a local folder, and a revision selects a commit of a Hugging Face hub id only; pass the hub id, or drop --revision"
            )
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a model folder (no config.json)")
        return path
    if path.exists():
        raise UserError(f"{path}: expected a model folder, got a file")
    looks_like_hub_id = model.count("/") == 1 and not model.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise UserError(f"model not found: {model} (no such folder)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet = are_progress_bars_disabled()
    if quiet and not os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):
        enable_progress_bars()  # quiet_transformers() turned them off; a download should show its bars
    try:
        # HF_TOKEN (gated models) and HF_HOME / HF_HUB_CACHE are read by huggingface_hub itself
        return Path(
            snapshot_download(
                model, revision=revision, local_files_only=hub_offline(), endpoint=os.environ.get("HF_ENDPOINT") or None
            )
        )
    except Exception as e:  # the hub raises many types; each becomes one line
        raise UserError(_hub_error(model, revision, e)) from None
    finally:
        if quiet:
            disable_progress_bars()


def _hub_error(model: str, revision: str | None, e: Exception) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    cause = e.__cause__ if isinstance(e.__cause__, HfHubHTTPError) else e
    status = getattr(getattr(cause, "response", None), "status_code", None)
    if isinstance(e, GatedRepoError) or status == 403:
        return f"model {model}: the Hugging Face hub refused access (gated model): accept its licence on https://huggingface.co/{model} and set HF_TOKEN"
    if isinstance(e, RevisionNotFoundError):
        return f"model {model}: the hub has no revision {revision!r}"
    if isinstance(e, RepositoryNotFoundError) or status == 401:
        token = "" if os.environ.get("HF_TOKEN") else "; if it is private or gated, set HF_TOKEN"
        return f"model not found: {model} is neither a folder nor a model the Hugging Face hub gives access to{token}"
    if hub_offline() and revision:
        return (
            f"model not found: {model} at revision {revision!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set, so nothing is downloaded: download that revision first or unset the variable"
        )
    if hub_offline():
        return (
            f"model not found: {model} is neither a folder nor in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set, so nothing is downloaded: download it first or unset the variable"
        )
    return (
        f"model not found: {model} is neither a folder nor in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
        f"and downloading it failed ({type(e).__name__}); set HF_HUB_OFFLINE=1 to use the cache only"
    )


def model_family(folder: Path) -> ModelFamily:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{folder / 'config.json'}: unreadable model config ({type(e).__name__})") from None
    return family_for(config.get("model_type", ""), str(folder / "config.json"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class Loaded:
    model: torch.nn.Module
    processor: object
    family: ModelFamily


def load_processor(folder: Path, family: ModelFamily):
    """The checkpoint's processor; for a family whose processor class needs ``torchvision`` on a
    machine without it, the same inputs from its parts (``models.parts``)."""
    from transformers import AutoProcessor

    from safeeraser.models.parts import PartsProcessor, real_processor_loads

    quiet_transformers()
    try:
        if not real_processor_loads(family):
            return PartsProcessor.from_pretrained(
                folder, fallback_template=family.chat_template, image_token=family.image_token
            )
        processor = AutoProcessor.from_pretrained(folder)
    except Exception as e:
        raise UserError(f"{folder}: could not load the processor ({type(e).__name__}: {e})") from None
    if not getattr(processor, "chat_template", None):
        processor.chat_template = family.chat_template
    return processor


def load_model(
    model: str,
    *,
    revision: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    load_in_4bit: bool = False,
) -> Loaded:
    """Load model + processor through the plain transformers classes (a hub id at ``revision``:
    a branch, tag or commit; None: the hub's default branch). ``load_in_4bit``: the weights in
    4-bit NF4 through bitsandbytes (QLoRA; a CUDA device), the projector and output layer kept
    in ``dtype`` as they are trained or read in full."""
    import transformers

    quiet_transformers()
    folder = locate(model, revision)
    family = model_family(folder)
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    cls = getattr(transformers, family.model_class)
    extra = {}
    if load_in_4bit:
        if torch.device(device).type != "cuda":
            raise UserError("load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes")
        extra = {
            "device_map": {"": device},
            "quantization_config": transformers.BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
                llm_int8_skip_modules=[family.projector.split(".")[-1], "lm_head"],
            ),
        }
    try:
        net = cls.from_pretrained(folder, dtype=dtype, **extra)
    except Exception as e:
        raise UserError(f"{folder}: could not load the model ({type(e).__name__}: {e})") from None
    if not load_in_4bit:  # a quantized model is placed by device_map and cannot be moved
        net.to(device)
    net.eval()
    return Loaded(net, load_processor(folder, family), family)


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_folder(run_dir: Path) -> Path:
    """The adapter inside a run folder (``RUN_DIR/adapter``) or the folder itself."""
    for folder in (run_dir / "adapter", run_dir):
        if all((folder / f).is_file() for f in ADAPTER_FILES):
            return folder
    if not run_dir.exists():
        raise UserError(f"adapter not found: {run_dir} (no such folder)")
    raise UserError(f"adapter not found: {run_dir} holds no {ADAPTER_FILES[0]} + {ADAPTER_FILES[1]}")


def peft_from_adapter(model, run_dir: Path | str, *, trainable: bool = False):
    """``model`` wrapped with a trained LoRA adapter (safetensors only), SineProject's projector
    layers rebuilt as sine layers, not plain LoRA; ``trainable``: to train it further."""
    from peft import PeftModel

    from safeeraser.models import sine_projector

    folder = adapter_folder(Path(run_dir))
    config = None
    sine = sine_projector.read_marker(folder)
    if sine is not None:
        from peft import LoraConfig

        sine_projector.mark(model, sine["modules"])
        config = LoraConfig.from_pretrained(folder)
        sine_projector.register(config, sine["frequency"])
    try:
        return PeftModel.from_pretrained(model, folder, is_trainable=trainable, config=config)
    except Exception as e:
        raise UserError(f"{folder}: could not load the adapter ({type(e).__name__}: {e})") from None


def attach_adapter(loaded: Loaded, run_dir: Path | str) -> Loaded:
    """Wrap the model with a trained LoRA adapter, for inference (``peft_from_adapter``)."""
    loaded.model = peft_from_adapter(loaded.model, run_dir)
    loaded.model.eval()
    return loaded
