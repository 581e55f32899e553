"""Which model family a checkpoint belongs to: its class, prompt format and LoRA targets.

A model is found by the ``model_type`` in its ``config.json``; the tiny stand-in is a real
LLaVA and differs only in name. Add a family here to support another architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

# LLaVA-1.5's conversation format as a chat template, for checkpoints saved without one.
LLAVA_15_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# LLaVA-1.5's system sentence: the vicuna_v1 conversation of the LLaVA code base, which the
# released SafeEraser code puts before every prompt in training and inference.
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# The language model's linear layers (SPEC §3); anchored on the language model so that the
# CLIP tower's own q/k/v projections stay frozen.
LANGUAGE_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]
    model_class: str  # a transformers class name
    chat_template: str
    lora_target: str = LANGUAGE_LINEAR
    projector: str = "multi_modal_projector"
    system: str | None = None  # the system sentence of the family's conversation format


FAMILIES = (
    ModelFamily(
        name="llava-1.5",
        model_types=("llava",),
        model_class="LlavaForConditionalGeneration",
        chat_template=LLAVA_15_TEMPLATE,
        system=VICUNA_SYSTEM,
    ),
    ModelFamily(
        name="llava-1.6",
        model_types=("llava_next",),
        model_class="LlavaNextForConditionalGeneration",
        chat_template=LLAVA_15_TEMPLATE,
    ),
)


def family_for(model_type: str, where: str) -> ModelFamily:
    from safeeraser.errors import UserError

    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise UserError(f"{where}: unsupported model_type {model_type!r} (supported: {known})")
