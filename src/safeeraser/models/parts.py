"""A processor built from its parts, for machines where the family's processor class cannot load.

In ``transformers`` 5 the processors of Qwen2-VL, Qwen2.5-VL and Qwen3-VL (and others) need a
video processor, and video processors need ``torchvision``, which not every CPU install has.
The codec only needs what an image-text processor is made of: the tokenizer, the image processor,
the image placeholder token and the chat template. ``PartsProcessor`` holds exactly those, loaded
from the same folder, so that the codec builds the same ids and image inputs as the real
processor would (the placeholder expanded to the family's token count, the image processor's own
tensors). Where ``torchvision`` imports, ``load_processor`` uses the real class instead.
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE_FILE = "chat_template.jinja"
PROCESSOR_FILE = "processor_config.json"


def torchvision_importable() -> bool:
    return importable("torchvision")


def importable(*modules: str) -> bool:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # not installed, or a build that does not match torch
            return False
    return True


def real_processor_loads(family) -> bool:
    """Whether the family's processor class can be built here (torchvision, and the modules it imports)."""
    return not family.needs_torchvision or importable("torchvision", *family.processor_modules)


class PartsProcessor:
    """Tokenizer + image processor + chat template: the subset of a processor the codec uses."""

    def __init__(self, tokenizer, image_processor, chat_template: str, image_token: str, settings: dict | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.image_token = image_token
        # the processor's own settings (processor_config.json), e.g. SmolVLM's image_seq_len
        self.settings = dict(settings or {})
        for key, value in self.settings.items():
            if key != "processor_class" and not hasattr(self, key):
                setattr(self, key, value)

    def apply_chat_template(
        self, messages, *, add_generation_prompt: bool = False, tokenize: bool = False, **kwargs
    ) -> str:
        return self.tokenizer.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=tokenize,
            **kwargs,
        )

    def save_pretrained(self, folder: Path) -> None:
        """The files a hub checkpoint's processor is loaded from (tokenizer, image processor, template)."""
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        (folder / CHAT_TEMPLATE_FILE).write_text(self.chat_template)
        if self.settings:
            (folder / PROCESSOR_FILE).write_text(json.dumps(self.settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, folder: Path, *, fallback_template: str | None = None, image_token: str | None = None
    ) -> PartsProcessor:
        from transformers import AutoImageProcessor, AutoTokenizer

        folder = Path(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        image_processor = AutoImageProcessor.from_pretrained(folder)
        template = None
        if (folder / CHAT_TEMPLATE_FILE).is_file():
            template = (folder / CHAT_TEMPLATE_FILE).read_text()
        elif (folder / "chat_template.json").is_file():  # the older hub layout
            template = json.loads((folder / "chat_template.json").read_text()).get("chat_template")
        template = template or getattr(tokenizer, "chat_template", None) or fallback_template
        token = getattr(tokenizer, "image_token", None) or image_token
        settings = {}
        if (folder / PROCESSOR_FILE).is_file():
            settings = {
                k: v for k, v in json.loads((folder / PROCESSOR_FILE).read_text()).items() if not isinstance(v, dict)
            }
        return cls(tokenizer, image_processor, template, token, settings)
