"""A run's adapter merged into its base model: one plain transformers checkpoint (weights and
processor) that any engine serves without PEFT, the trained projector included.

``unlearn --merge`` merges the model it trained in memory; after sharded training (FSDP,
DeepSpeed), where no process holds the whole model, it calls ``merge_run`` on the main process,
which loads the base once more, whole, on the CPU. ``safeeraser merge`` does the same for any
finished run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from safeeraser.errors import UserError
from safeeraser.formats import RUN_SUMMARY
from safeeraser.io import atomic_dir, atomic_write_json

MERGE_RECORD = "safeeraser-merge.json"  # in the merged folder: what was merged into what
DTYPES = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def run_base(run_dir: Path) -> tuple[str, str | None]:
    """The model (and revision) a run was trained on, from its run.json."""
    summary = Path(run_dir) / RUN_SUMMARY
    try:
        done = json.loads(summary.read_text())
        return str(done["model"]), done.get("revision")
    except FileNotFoundError:
        raise UserError(
            f"{summary}: not found (an unfinished run, or an adapter folder?); name the base model with --model"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{summary}: unreadable run summary; name the base model with --model") from None


def save_merged(peft_model, processor, out: Path, *, base: str, revision: str | None, adapter: Path) -> None:
    """Fold ``peft_model``'s adapter into its weights and save the plain model, its processor and
    the merge record (base, revision, adapter) to ``out``, in one rename. The one place a merge
    is written: ``merge_run`` and a run's ``--merge`` both call it."""
    merged = peft_model.merge_and_unload()
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        atomic_write_json(
            tmp / MERGE_RECORD,
            {
                "base": str(base),
                **({"revision": revision} if revision else {}),
                "adapter": str(Path(adapter).resolve()),
            },
        )


def merge_run(
    run_dir: Path | str,
    out: Path | str | None = None,
    *,
    model: str | None = None,
    revision: str | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> Path:
    """Merge RUN_DIR's adapter into its base model and save both weights and processor to ``out``
    (default RUN_DIR/merged), in one rename. ``model``/``revision`` default to the run's own;
    ``dtype`` 'auto' keeps the checkpoint's. Returns the folder."""
    from safeeraser.models.loading import adapter_folder, attach_adapter, load_model

    run_dir = Path(run_dir)
    adapter = adapter_folder(run_dir)
    out = Path(out) if out is not None else run_dir / "merged"
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it")
    if model is None:
        model, recorded = run_base(run_dir)
        revision = revision or recorded
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    loaded = attach_adapter(load_model(model, revision=revision, device=torch.device(device), dtype=dtype), run_dir)
    save_merged(loaded.model, loaded.processor, out, base=model, revision=revision, adapter=adapter)
    if (run_dir / RUN_SUMMARY).is_file():  # a run folder (not a bare adapter folder): the merged model's card
        from safeeraser.models.card import refresh_card

        refresh_card(run_dir, out, merged=True)
    return out
