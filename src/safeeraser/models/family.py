"""What a model family is (``ModelFamily``): the settings the codec, trainer and generation read.

Each family is one module under ``models.families`` (its chat template, image-token count, system
sentence and tiny recipe beside its registration); ``models.families`` is the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from safeeraser.models.tiny_parts import TinyRecipe

# The language model's linear layers; anchored on the language model so that the
# CLIP tower's own q/k/v projections stay frozen.
LANGUAGE_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def llava_image_tokens(processor, image_inputs: dict) -> int:
    """LLaVA-1.5 / 1.6 (the default): the processor's own expansion of one ``<image>`` for this image."""
    return processor.replace_image_token(image_inputs, 0).count(processor.image_token)


def processor_expansion(processor, image_inputs: dict) -> str:
    """The processor's own replacement text for one image placeholder."""
    return processor.replace_image_token(image_inputs, 0)


TESTED = "tested end to end here"
REGISTERED = "registered, untested"


@dataclass(frozen=True)
class ModelFamily:
    name: str  # the transformers model_type
    model_types: tuple[str, ...]
    model_class: str  # a transformers class name
    chat_template: str | None  # fallback when a checkpoint has none; None: the processor's own only
    label: str = ""
    hub_ids: tuple[str, ...] = ()
    processor_class: str = "AutoProcessor"
    lora_target: str = LANGUAGE_LINEAR
    projector: str = "multi_modal_projector"
    system: str | None = None  # the system sentence of the family's conversation format (inference)
    # the sentence the released SafeEraser training uses where it differs from ``system`` (None: the same)
    training_system: str | None = None
    rmu_layer: int | None = 7  # RMU's default decoder layer (0-based; WMDP steers layer 7 of 32-layer 7B models)
    # The model inputs one image brings besides the token ids, as the image processor names
    # them; a batch carries exactly these, the ids, the attention mask (and labels in training).
    image_inputs: tuple[str, ...] = ("pixel_values", "image_sizes")
    # How many placeholder tokens one preprocessed image expands to; None: no encoding path yet.
    image_tokens: Callable[[object, dict], int] | None = field(default=llava_image_tokens, repr=False)
    end_of_turn: str | None = None  # the token closing the assistant's turn; None: the tokenizer's eos
    answer_prefix: str = " "  # what the template puts between the generation prompt and the answer
    needs_torchvision: bool = False  # its processor class needs a video processor (and torchvision)
    processor_modules: tuple[str, ...] = ()  # other modules its processor class imports (SmolVLM: num2words)
    image_token: str = "<image>"  # the placeholder the template writes per image
    # Where one image is not a run of one token (Gemma-3: start, soft tokens, end, new lines): the
    # placeholder's replacement text, tokenised with the prompt as the processor does.
    expand: Callable[[object, dict], str] | None = field(default=None, repr=False)
    # (the per-token input the model reads, the token marked 1 in it): Gemma-3's token_type_ids,
    # the Qwen family's mm_token_type_ids, as their processors return them
    token_types: tuple[str, str] | None = None
    # keyword arguments the image processor is called with (Idefics3: the crop grid's rows and columns)
    image_processor_kwargs: tuple[tuple[str, object], ...] = ()
    # the per-token cross-attention mask the model reads (Mllama's ``cross_attention_mask``, shape
    # batch x tokens x images x tiles): 1 from the image token on, over that image's tiles
    cross_attention: str | None = None
    status: str = REGISTERED
    # how its tiny copy is built (``models.tiny_parts.TinyRecipe``); None: no tiny copy
    tiny: TinyRecipe | None = field(default=None, repr=False, compare=False)

    def system_sentence(self, phase: str) -> str | None:
        """The system sentence of a phase: ``inference`` (generation, the vanilla model's own) or
        ``training`` (unlearning, as the released code trains)."""
        if phase == "training" and self.training_system is not None:
            return self.training_system
        return self.system

    @property
    def encodable(self) -> bool:
        return self.image_tokens is not None or self.expand is not None


# A family known by name but without an encoding path in this version (its processor expands an
# image in a way the codec does not build yet): the codec refuses it with a one-line error.
UNENCODED = dict(image_tokens=None, status="registered, no encoding path yet")
