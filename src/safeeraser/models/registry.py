"""Which model family a checkpoint belongs to, and everything that differs between families.

A model is found by the ``model_type`` in its ``config.json``; a family is named by that
``model_type`` string. It declares the ``transformers`` model and processor classes, how a
prompt is built (the processor's own chat template; ``chat_template`` is only the fallback for
checkpoints saved without one), how the answer joins the prompt and which token ends the
assistant's turn, how many placeholder tokens one image needs, which image inputs the model
takes, the LoRA targets, the projector and the system sentence. The codec, trainer, methods and
generation read these and nothing else. Adding a family: docs/families.md, "Adding a family".
"""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.models.family import (  # noqa: F401  (read from here by the rest of the toolkit)
    GEMMA3_TEMPLATE,
    IDEFICS3,
    IDEFICS3_TEMPLATE,
    INTERNVL_TEMPLATE,
    LANGUAGE_LINEAR,
    LLAVA_15_TEMPLATE,
    LLAVA_TRAINING_SYSTEM,
    MLLAMA_TEMPLATE,
    ONEVISION_TEMPLATE,
    QWEN3_VL_TEMPLATE,
    QWEN_VL,
    QWEN_VL_TEMPLATE,
    REGISTERED,
    SMOLVLM_TEMPLATE,
    TESTED,
    UNENCODED,
    VICUNA_SYSTEM,
    ModelFamily,
    idefics3_expansion,
    internvl_expansion,
    llava_image_tokens,
    one_image_token,
    onevision_image_tokens,
    processor_expansion,
    qwen_vl_image_tokens,
)

# The family a command assumes when none is named: LLaVA-1.5, the paper's.
DEFAULT_FAMILY = "llava"

FAMILIES = (
    ModelFamily(
        name=DEFAULT_FAMILY,
        label="LLaVA-1.5",
        model_types=("llava",),
        model_class="LlavaForConditionalGeneration",
        chat_template=LLAVA_15_TEMPLATE,
        system=VICUNA_SYSTEM,
        training_system=LLAVA_TRAINING_SYSTEM,
        hub_ids=("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf"),
        status=TESTED,
    ),
    ModelFamily(
        name="llava_next",
        status=TESTED,
        label="LLaVA-1.6 (LLaVA-NeXT)",
        model_types=("llava_next",),
        model_class="LlavaNextForConditionalGeneration",
        chat_template=LLAVA_15_TEMPLATE,
        hub_ids=(
            "llava-hf/llava-v1.6-vicuna-7b-hf",
            "llava-hf/llava-v1.6-vicuna-13b-hf",
            "llava-hf/llava-v1.6-mistral-7b-hf",
            "llava-hf/llava-v1.6-34b-hf",
        ),
    ),
    ModelFamily(
        name="llava_onevision",
        label="LLaVA-OneVision",
        model_types=("llava_onevision",),
        model_class="LlavaOnevisionForConditionalGeneration",
        chat_template=ONEVISION_TEMPLATE,
        hub_ids=("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
        image_inputs=("pixel_values", "image_sizes", "batch_num_images"),
        image_tokens=onevision_image_tokens,
        end_of_turn="<|im_end|>",
        answer_prefix="",
        needs_torchvision=True,
        rmu_layer=6,  # Qwen2-7B's 28 decoder layers (layer 7 of 32 at the same depth)
        status=TESTED,
    ),
    ModelFamily(
        name="qwen2_vl",
        status=TESTED,
        label="Qwen2-VL",
        model_types=("qwen2_vl",),
        model_class="Qwen2VLForConditionalGeneration",
        hub_ids=("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-72B-Instruct"),
        **QWEN_VL,
    ),
    ModelFamily(
        name="qwen2_5_vl",
        status=TESTED,
        label="Qwen2.5-VL",
        model_types=("qwen2_5_vl",),
        model_class="Qwen2_5_VLForConditionalGeneration",
        hub_ids=(
            "Qwen/Qwen2.5-VL-3B-Instruct",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "Qwen/Qwen2.5-VL-32B-Instruct",
            "Qwen/Qwen2.5-VL-72B-Instruct",
        ),
        **QWEN_VL,
    ),
    ModelFamily(
        name="qwen3_vl",
        status=TESTED,
        label="Qwen3-VL",
        model_types=("qwen3_vl",),
        model_class="Qwen3VLForConditionalGeneration",
        hub_ids=(
            "Qwen/Qwen3-VL-2B-Instruct",
            "Qwen/Qwen3-VL-4B-Instruct",
            "Qwen/Qwen3-VL-8B-Instruct",
            "Qwen/Qwen3-VL-32B-Instruct",
        ),
        **{**QWEN_VL, "chat_template": QWEN3_VL_TEMPLATE},
    ),
    ModelFamily(
        name="mllama",
        status=TESTED,
        label="Llama-3.2-Vision",
        model_types=("mllama",),
        model_class="MllamaForConditionalGeneration",
        chat_template=MLLAMA_TEMPLATE,
        hub_ids=("meta-llama/Llama-3.2-11B-Vision-Instruct", "meta-llama/Llama-3.2-90B-Vision-Instruct"),
        image_inputs=("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"),
        cross_attention="cross_attention_mask",
        image_tokens=one_image_token,
        image_token="<|image|>",
        end_of_turn="<|eot_id|>",
        answer_prefix="",
        # layer 9 of the 11B's 40 (32 self-attention + 8 cross-attention layers): about the depth of
        # layer 7 of 32 where WMDP steers, and a self-attention layer
        rmu_layer=9,
    ),
    ModelFamily(
        name="internvl",
        label="InternVL",
        model_types=("internvl",),
        model_class="InternVLForConditionalGeneration",
        hub_ids=(
            "OpenGVLab/InternVL3-1B-hf",
            "OpenGVLab/InternVL3-2B-hf",
            "OpenGVLab/InternVL3-8B-hf",
            "OpenGVLab/InternVL3-14B-hf",
        ),
        chat_template=INTERNVL_TEMPLATE,
        image_inputs=("pixel_values",),  # every image's tiles, one after another (no batch dimension)
        end_of_turn="<|im_end|>",
        answer_prefix="",
        needs_torchvision=True,
        image_token="<IMG_CONTEXT>",
        image_tokens=None,
        expand=internvl_expansion,
        rmu_layer=6,  # InternVL3-2B/8B's 28 decoder layers (layer 7 of 32 at the same depth)
        status=TESTED,
    ),
    ModelFamily(
        name="gemma3",
        status=TESTED,
        label="Gemma-3",
        model_types=("gemma3",),
        model_class="Gemma3ForConditionalGeneration",
        hub_ids=("google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/gemma-3-27b-it"),
        chat_template=GEMMA3_TEMPLATE,
        image_inputs=("pixel_values",),
        end_of_turn="<end_of_turn>",
        answer_prefix="",
        image_tokens=None,
        expand=processor_expansion,
        token_types=("token_type_ids", "<image_soft_token>"),
        image_token="<start_of_image>",
    ),
    ModelFamily(
        name="idefics3",
        label="Idefics3 / SmolVLM",
        model_types=("idefics3",),
        model_class="Idefics3ForConditionalGeneration",
        hub_ids=(
            "HuggingFaceM4/Idefics3-8B-Llama3",
            "HuggingFaceTB/SmolVLM-Instruct",
            "HuggingFaceTB/SmolVLM-256M-Instruct",
            "HuggingFaceTB/SmolVLM-500M-Instruct",
        ),
        chat_template=IDEFICS3_TEMPLATE,
        status=TESTED,
        **IDEFICS3,
    ),
    ModelFamily(
        name="smolvlm",
        label="SmolVLM2",
        model_types=("smolvlm",),
        model_class="SmolVLMForConditionalGeneration",
        hub_ids=(
            "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
            "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
            "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        ),
        chat_template=SMOLVLM_TEMPLATE,
        status=TESTED,
        rmu_layer=5,  # SmolVLM2-2.2B's 24 decoder layers (layer 7 of 32 at the same depth)
        needs_torchvision=True,
        processor_modules=("num2words",),
        **IDEFICS3,
    ),
)

ADDING_A_FAMILY = 'docs/families.md, "Adding a family"'


def registered() -> str:
    return ", ".join(f.name for f in FAMILIES)


def family_named(name: str, where: str = "--family") -> ModelFamily:
    """The family called ``name`` (a transformers model_type string)."""

    for family in FAMILIES:
        if name == family.name:
            return family
    raise UserError(
        f"{where}: unknown model family {name!r} (registered: {registered()}; to add one see {ADDING_A_FAMILY})"
    )


def family_for(model_type: str, where: str) -> ModelFamily:

    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UserError(
        f"{where}: unsupported model_type {model_type!r} (registered: {registered()}; to add one see {ADDING_A_FAMILY})"
    )
