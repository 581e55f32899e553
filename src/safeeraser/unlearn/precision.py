"""Trainable weights held and updated in float32 beside a model loaded in a lower precision."""

from __future__ import annotations

import torch


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
