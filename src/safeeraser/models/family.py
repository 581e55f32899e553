"""What a model family is (``ModelFamily``): its chat templates, image-token counts, system
sentences and the settings the codec, trainer and generation read. ``models.registry`` lists the
families."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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

# LLaVA-1.5's system sentence: the vicuna_v1 conversation of the LLaVA code base, which LLaVA-1.5
# was instruction-tuned with and the released SafeEraser inference uses (ckpt_infer.py:68,
# conversation.py:243-244).
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# The sentence the released SafeEraser training puts before every prompt instead
# (config/model_config.yaml:20, read by data_module.py:171): "human" where vicuna_v1 says "user".
LLAVA_TRAINING_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# The language model's linear layers; anchored on the language model so that the
# CLIP tower's own q/k/v projections stay frozen.
LANGUAGE_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


# The Qwen2-VL / Qwen2.5-VL hub processors' chat template (ChatML, a default system sentence,
# ``<|vision_start|><|image_pad|><|vision_end|>`` per image), for the tiny copies and for
# checkpoints saved without a template.
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# The Qwen3-VL Instruct hub processors' chat template, without its tool-calling branch: ChatML as
# Qwen2-VL, but no default system sentence (a system message only when one is given).
QWEN3_VL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['content'] is string -%}{{- messages[0]['content'] }}"
    "{%- else -%}{%- for content in messages[0]['content'] -%}{%- if 'text' in content -%}{{- content['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' }}{%- endif -%}"
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}{%- if message['role'] != 'system' -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + image_count.value | string + ': ' }}{%- endif -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'video' or 'video' in content -%}{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' + video_count.value | string + ': ' }}{%- endif -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content -%}{{- content['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' }}{%- endif -%}"
)


# Gemma-3's conversation format (its hub processors' template): the BOS written by the template, a
# system message folded into the first user turn, the assistant called "model".
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


# Idefics3 / SmolVLM: the hub processors' template. Roles capitalised ("User:", "Assistant:"), a
# colon with no space before an image, every turn closed by ``<end_of_utterance>`` and a new line;
# the template writes the first token itself (Idefics3-8B: Llama-3's ``<|begin_of_text|>``;
# SmolVLM and SmolVLM2: ``<|im_start|>``).
def _idefics3_template(first: str) -> str:
    return (
        first + "{% for message in messages %}{{ message['role'] | capitalize }}"
        "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
        "{% else %}{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'text' %}{{ part['text'] }}"
        "{% elif part['type'] == 'image' %}{{ '<image>' }}"
        "{% elif part['type'] == 'video' %}{{ '<video>' }}{% endif %}"
        "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


IDEFICS3_TEMPLATE = _idefics3_template("<|begin_of_text|>")
SMOLVLM_TEMPLATE = _idefics3_template("<|im_start|>")


# Llama-3.2-Vision's conversation format, in the layout of its hub processors' template (Llama 3
# headers, ``<|eot_id|>`` ending each turn, one ``<|image|>`` per image, the BOS written by the
# template; a system message only in text-only prompts, as the hub template refuses one beside an
# image), for the tiny copies and checkpoints saved without a template.
MLLAMA_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set system_message = messages[0]['content'] | trim -%}"
    "{%- else -%}{%- set system_message = messages[0]['content'][0]['text'] | trim -%}{%- endif -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- endif -%}"
    "{%- set image_ns = namespace(has_images=false) -%}"
    "{%- for message in messages -%}{%- if message['content'] is not string -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{%- set image_ns.has_images = true -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{%- if image_ns.has_images and system_message != '' -%}"
    "{{- raise_exception('Prompting with images is incompatible with system messages.') }}{%- endif -%}"
    "{%- if system_message != '' -%}{{- '<|start_header_id|>system<|end_header_id|>\n\n' + system_message + '<|eot_id|>' }}{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- '<|image|>' }}{%- elif content['type'] == 'text' -%}{{- content['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif -%}"
)


def one_image_token(processor, image_inputs: dict) -> int:
    """Mllama: the image stays one ``<|image|>`` token; the picture reaches the decoder by cross-attention."""
    return 1


def llava_image_tokens(processor, image_inputs: dict) -> int:
    """LLaVA-1.5 / 1.6: the processor's own expansion of one ``<image>`` for this image."""
    return processor.replace_image_token(image_inputs, 0).count(processor.image_token)


def processor_expansion(processor, image_inputs: dict) -> str:
    """The processor's own replacement text for one image placeholder."""
    return processor.replace_image_token(image_inputs, 0)


def qwen_vl_image_tokens(processor, image_inputs: dict) -> int:
    """Qwen2-VL family: one token per merged patch (``merge_size`` x ``merge_size`` patches)."""
    return int(image_inputs["image_grid_thw"][0].prod()) // processor.image_processor.merge_size**2


def idefics3_expansion(processor, image_inputs: dict) -> str:
    """Idefics3 / SmolVLM: one image is split into a grid of crops plus the whole image resized;
    each crop is ``<fake_token_around_image><row_R_col_C>`` and ``image_seq_len`` image tokens, a new
    line after each row, then the global image. The processor's own text where its class loads
    (SmolVLM's needs torchvision), else the same text built from the image processor's rows/cols."""
    if hasattr(processor, "replace_image_token"):
        return processor.replace_image_token(image_inputs, 0)
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    tok = processor.tokenizer
    return get_image_prompt_string(
        image_inputs["rows"][0][0],
        image_inputs["cols"][0][0],
        processor.image_seq_len,
        fake_token_around_image=getattr(tok, "fake_image_token", None) or "<fake_token_around_image>",
        image_token=processor.image_token,
        global_image_token=getattr(tok, "global_image_token", None) or "<global-img>",
    )


# InternVL (transformers' -hf checkpoints): ChatML without a default system sentence, the image as
# ``<IMG_CONTEXT>`` and a new line (as the conversion script in transformers writes the template).
INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif part['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def internvl_expansion(processor, image_inputs: dict) -> str:
    """InternVL: dynamic tiling into ``num_patches`` tiles (plus a thumbnail when there are
    several), each ``image_seq_length`` tokens, between ``<img>`` and ``</img>``. The processor's
    own text where its class loads, else the same from the tokenizer and processor_config.json."""
    if hasattr(processor, "replace_image_token"):
        return processor.replace_image_token(image_inputs, 0)
    tok = processor.tokenizer
    n = int(image_inputs["num_patches"][0]) * processor.image_seq_length
    return f"{tok.start_image_token}{processor.image_token * n}{tok.end_image_token}"


# LLaVA-OneVision (llava-hf checkpoints): ChatML whose role is followed by a space, the images
# first, then each text after a new line, ``<|im_end|>`` with no new line after it; the
# generation prompt is ``<|im_start|>assistant`` and a new line.
ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\\n' + message['content'] }}{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}{{ '<video>' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ '\\n' + part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def onevision_image_tokens(processor, image_inputs: dict) -> int:
    """LLaVA-OneVision: anyres tiles, unpadded to the image's aspect ratio, one new-line token per
    row, pooled down past ``anyres_max_N`` tiles, plus the whole image. The processor's own count
    where its class loads (it needs torchvision); else the same methods of that class applied to
    the checkpoint's parts and processor settings (processor_config.json)."""
    if not hasattr(processor, "replace_image_token"):
        import functools
        from types import SimpleNamespace

        from transformers import LlavaOnevisionProcessor as Real

        parts = processor
        processor = SimpleNamespace(
            image_processor=parts.image_processor,
            image_token=parts.image_token,
            num_image_tokens=parts.num_image_tokens,
            vision_feature_select_strategy=parts.vision_feature_select_strategy,
            vision_aspect_ratio=getattr(parts, "vision_aspect_ratio", "anyres_max_9"),
        )
        processor._get_unpadded_features = functools.partial(Real._get_unpadded_features, processor)
        processor._get_number_of_features = functools.partial(Real._get_number_of_features, processor)
        processor.replace_image_token = functools.partial(Real.replace_image_token, processor)
    return processor.replace_image_token(image_inputs, 0).count(processor.image_token)


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

    def system_sentence(self, phase: str) -> str | None:
        """The system sentence of a phase: ``inference`` (generation, the vanilla model's own) or
        ``training`` (unlearning, as the released code trains)."""
        if phase == "training" and self.training_system is not None:
            return self.training_system
        return self.system

    @property
    def encodable(self) -> bool:
        return self.image_tokens is not None or self.expand is not None


QWEN_VL = dict(
    chat_template=QWEN_VL_TEMPLATE,
    projector="visual.merger",
    image_inputs=("pixel_values", "image_grid_thw"),
    image_tokens=qwen_vl_image_tokens,
    end_of_turn="<|im_end|>",
    answer_prefix="",
    needs_torchvision=True,
    image_token="<|image_pad|>",
    token_types=("mm_token_type_ids", "<|image_pad|>"),
)

# Idefics3 and SmolVLM(2): a SigLIP tower over crops, a pixel-shuffle connector, a Llama decoder
# (``text_model``); images are split into crops (padded across crops and across a batch, with a
# ``pixel_attention_mask`` of the real pixels) and expand to text (``idefics3_expansion``).
IDEFICS3 = dict(
    lora_target=r".*text_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    projector="connector",
    image_inputs=("pixel_values", "pixel_attention_mask"),
    image_processor_kwargs=(("return_row_col_info", True),),
    end_of_turn="<end_of_utterance>",
    image_tokens=None,
    expand=idefics3_expansion,
)

# Families known by name but without an encoding path in this version: their processors expand
# images into several crops or tiles (InternVL, Idefics3/SmolVLM, LLaVA-OneVision), which the
# codec does not build yet.
UNENCODED = dict(image_tokens=None, status="registered, no encoding path yet")
