"""Loading a vision-language model, its processor and (optionally) a LoRA adapter.

A model is a local folder or a Hugging Face id already in the local cache. Downloads are off
unless ``SAFEERASER_ALLOW_DOWNLOAD=1``: the tool works offline by default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from safeeraser.errors import UserError
from safeeraser.models.registry import ModelFamily, family_for


def quiet_transformers() -> None:
    """Silence transformers' per-load chatter (progress bars, backend notices)."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # PEFT still calls a transformers method that now warns on every call
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def downloads_allowed() -> bool:
    return os.environ.get("SAFEERASER_ALLOW_DOWNLOAD", "") in ("1", "true", "yes")


def locate(model: str) -> Path:
    """The local folder holding ``model``'s config.json (a folder, or a cached hub id)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a model folder (no config.json)")
        return path
    if path.exists():
        raise UserError(f"{path}: expected a model folder, got a file")
    looks_like_hub_id = model.count("/") == 1 and not model.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise UserError(f"model not found: {model} (no such folder)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=not downloads_allowed()))
    except Exception as e:  # the hub raises many types; any of them means "not available"
        hint = "" if downloads_allowed() else " (downloads are off: set SAFEERASER_ALLOW_DOWNLOAD=1 or pass a local folder)"
        raise UserError(f"model not found: {model} is neither a folder nor in the Hugging Face cache{hint}: {type(e).__name__}") from None


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

    from safeeraser.models.parts import PartsProcessor, torchvision_importable

    quiet_transformers()
    try:
        if family.needs_torchvision and not torchvision_importable():
            return PartsProcessor.from_pretrained(folder, fallback_template=family.chat_template, image_token=family.image_token)
        processor = AutoProcessor.from_pretrained(folder)
    except Exception as e:
        raise UserError(f"{folder}: could not load the processor ({type(e).__name__}: {e})") from None
    if not getattr(processor, "chat_template", None):
        processor.chat_template = family.chat_template
    return processor


def load_model(model: str, *, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Loaded:
    """Load model + processor through the plain transformers classes."""
    import transformers

    quiet_transformers()
    folder = locate(model)
    family = model_family(folder)
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    cls = getattr(transformers, family.model_class)
    try:
        net = cls.from_pretrained(folder, dtype=dtype)
    except Exception as e:
        raise UserError(f"{folder}: could not load the model ({type(e).__name__}: {e})") from None
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


def attach_adapter(loaded: Loaded, run_dir: Path | str) -> Loaded:
    """Wrap the model with a trained LoRA adapter (safetensors only)."""
    from peft import PeftModel

    folder = adapter_folder(Path(run_dir))
    try:
        loaded.model = PeftModel.from_pretrained(loaded.model, folder, is_trainable=False)
    except Exception as e:
        raise UserError(f"{folder}: could not load the adapter ({type(e).__name__}: {e})") from None
    loaded.model.eval()
    return loaded
