"""Quantization attacks: the unlearned model, merged, with its weights quantized by bitsandbytes.

Zhang et al. (ICLR 2025, "Catastrophic failure of LLM unlearning via quantization") found that
quantizing an unlearned LLM to 4 bits brings back much of what it had forgotten: unlearning moves
the weights by less than one quantization step, and rounding moves them back. The audit loads
the base model, attaches the run's adapter, merges it (``merge_and_unload``, as ``safeeraser
merge`` does) and then swaps every linear layer except the output layer (which transformers'
bitsandbytes loading keeps in full precision too) for bitsandbytes' own layer, which quantizes
the weights as it is moved to its device:

- ``quant8``: LLM.int8() (``Linear8bitLt``: int8 weights with one scale per output row, outlier
  features above ``INT8_THRESHOLD`` computed apart, inputs cast to float16 as bitsandbytes does),
  bitsandbytes' 8-bit default;
- ``quant4``: NF4 (``Linear4bit``: 4-bit NormalFloat codes packed two per byte, one float absmax
  per block of 64 weights, no double quantization: transformers' default), QLoRA's 4-bit format.

bitsandbytes runs on the CPU since 0.45 (and on CUDA); it is the ``audit`` extra
(``pip install safeeraser[audit]``). Without it the attacks are reported as not run.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

from safeeraser.generate.backends import HFBackend

QUANT_ATTACKS = {"quant8": 8, "quant4": 4}
INT8_THRESHOLD = 6.0  # LLM.int8()'s outlier threshold, bitsandbytes' and transformers' default
NF4_BLOCK = 64  # bitsandbytes' block size for 4-bit weights (its default)
SCHEMES = {
    8: f"LLM.int8() (bitsandbytes Linear8bitLt, row-wise int8, outlier threshold {INT8_THRESHOLD})",
    4: f"NF4 (bitsandbytes Linear4bit, 4-bit NormalFloat, absmax per block of {NF4_BLOCK})",
}


def library() -> str:
    """The quantization library and its version, e.g. ``bitsandbytes 0.50.2``."""
    return f"bitsandbytes {metadata.version('bitsandbytes')}"


def unavailable() -> str | None:
    """Why the quantization attacks cannot run here, or None when they can."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # not installed, or its native library failed to load
        return f"bitsandbytes cannot be imported ({type(e).__name__}: {e}); install the audit extra: pip install 'safeeraser[audit]'"
    return None


def quantize_linear_layers(model, bits: int) -> list[str]:
    """Replace every ``torch.nn.Linear`` of ``model`` but its output layer by bitsandbytes' quantized
    layer of ``bits`` (8 or 4), in place; returns the names of the layers quantized."""
    import bitsandbytes as bnb
    import torch

    if bits not in SCHEMES:
        raise ValueError(f"bits must be one of {sorted(SCHEMES)}")
    # LLM.int8() computes on float16 inputs and logs so on every call of every layer
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    done = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child is output:
                continue
            bias = child.bias is not None
            if bits == 8:
                layer = bnb.nn.Linear8bitLt(
                    child.in_features, child.out_features, bias=bias, has_fp16_weights=False, threshold=INT8_THRESHOLD
                )
            else:
                layer = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=bias,
                    compute_dtype=child.weight.dtype,
                    quant_type="nf4",
                    quant_storage=torch.uint8,
                    compress_statistics=False,
                )
            layer.load_state_dict(child.state_dict())
            setattr(parent, name, layer.to(child.weight.device))  # the move quantizes the weights
            done.append(f"{parent_name}.{name}" if parent_name else name)
    return done


def merge_and_quantize(loaded, bits: int):
    """``loaded`` (a ``models.loading.Loaded``, adapter attached or not) merged and quantized in place."""
    from peft import PeftModel

    if isinstance(loaded.model, PeftModel):
        loaded.model = loaded.model.merge_and_unload()
    quantize_linear_layers(loaded.model, bits)
    loaded.model.eval()
    return loaded


def quantized_backend(
    model: str, adapter: Path | None, bits: int, *, batch_size: int, system_prompt: bool, revision: str | None = None
) -> HFBackend:
    """The ``hf`` generation backend on ``model`` + ``adapter``, merged and quantized to ``bits``."""
    from safeeraser.models.loading import adapter_folder

    return HFBackend(
        model,
        adapter_folder(Path(adapter)) if adapter else None,
        batch_size=batch_size,
        system_prompt=system_prompt,
        revision=revision,
        transform=lambda loaded: merge_and_quantize(loaded, bits),
        transform_identity={"quantization": SCHEMES[bits], "library": library()},
    )
