"""Turning (image, question[, answer]) into model tensors, and batches of them.

Prompts come from the processor's chat template (as llava-hf processors carry it), so the
same code serves the tiny stand-in and LLaVA-1.5-7B; a system sentence (the model family's,
e.g. LLaVA-1.5's vicuna_v1 one, which the released code uses in training and inference) goes
in as the template's system message. Each image is preprocessed once and
cached, and so is each question's tokenised prompt (training encodes every example again each
epoch, and many examples share a question); the ``<image>`` placeholder is expanded to as many
tokens as the processor says that image needs. Training examples are masked so that only
answer tokens carry labels.

What differs between model families (how many tokens an image needs, which image inputs the
model takes, what joins the answer to the prompt, which token ends the turn) comes from the
``ModelFamily``; without one the codec is LLaVA-1.5's.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import torch

from safeeraser.data.images import open_rgb
from safeeraser.data.views import Example
from safeeraser.errors import UserError
from safeeraser.models.families import DEFAULT_FAMILY, FAMILIES
from safeeraser.models.family import ModelFamily

IGNORE = -100


class Codec:
    def __init__(
        self,
        processor,
        *,
        family: ModelFamily | None = None,
        system: str | None = None,
        max_answer_tokens: int | None = None,
        max_length: int | None = None,
        train_eos: bool = True,
        image_cache: int = 1024,
    ):
        self.family = family = family or FAMILIES[DEFAULT_FAMILY]
        if not family.encodable:
            raise UserError(
                f"model family {family.name!r} is registered but has no encoding path in this version (docs/families.md)"
            )
        self.processor = processor
        self.system = system
        self.tokenizer = processor.tokenizer
        self.image_token = processor.image_token
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        # the token that ends the assistant's turn: the answer's last label and generation's stop
        eot = family.end_of_turn
        self.eos_id = self.tokenizer.convert_tokens_to_ids(eot) if eot else self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self.max_answer_tokens = max_answer_tokens  # answer tokens kept before the end token (None: all)
        # training text tokens per example, the image placeholder counted as one, as the released
        # code truncates the conversation before the model expands the image (None: no cap)
        self.max_length = max_length
        self.train_eos = train_eos  # the answer's end-of-turn token carries a label
        self._images: OrderedDict[Path, dict] = OrderedDict()
        self._image_cache = image_cache
        self.prompt_text = lru_cache(maxsize=65536)(self._prompt_text)
        self.prompt_tokens = lru_cache(maxsize=65536)(self._prompt_tokens)
        self.expanded_tokens = lru_cache(maxsize=65536)(self._expanded_tokens)
        self.token_types, marked = family.token_types or (None, None)
        self.token_type_id = self.tokenizer.convert_tokens_to_ids(marked) if marked else None

    def _prompt_text(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if self.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _tokenize(self, text: str) -> list[int]:
        # a template that writes the BOS itself (Gemma-3) must not get a second one
        bos = self.tokenizer.bos_token
        return self.tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]

    def _prompt_tokens(self, question: str) -> tuple[int, ...]:
        return tuple(self._tokenize(self.prompt_text(question)))

    def _expanded_tokens(self, question: str, expansion: str) -> tuple[int, ...]:
        """The prompt with its image placeholder replaced by ``expansion`` as text, then tokenised
        (as the family's processor does, for families whose expansion is not one repeated token)."""
        return tuple(self._tokenize(self.prompt_text(question).replace(self.image_token, expansion, 1)))

    def pixels(self, image: Path) -> dict:
        """Preprocessed image tensors (batch of one) plus its number of image tokens."""
        if image in self._images:
            self._images.move_to_end(image)
            return self._images[image]
        inputs = dict(
            self.processor.image_processor(
                images=[open_rgb(image)], return_tensors="pt", **dict(self.family.image_processor_kwargs)
            )
        )
        if self.family.expand is not None:
            inputs["expansion"] = self.family.expand(self.processor, inputs)
        else:
            inputs["num_image_tokens"] = self.family.image_tokens(self.processor, inputs)
        self._images[image] = inputs
        if len(self._images) > self._image_cache:
            self._images.popitem(last=False)
        return inputs

    def _prompt_ids(self, question: str, px: dict) -> list[int]:
        if "expansion" in px:
            return list(self.expanded_tokens(question, px["expansion"]))
        return self._expand(self.prompt_tokens(question), px)

    def _expand(self, tokens, px: dict) -> list[int]:
        """The image placeholder token repeated as many times as the image needs."""
        n_image_tokens = px["num_image_tokens"]
        out: list[int] = []
        for t in tokens:
            out.extend([t] * n_image_tokens if t == self.image_token_id else [t])
        return out

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        """A chat of plain-text messages (a judge's request) as prompt text, the image placed before
        the first user message's text, as the family's chat template writes it."""
        chat, placed = [], False
        for m in messages:
            parts = [{"type": "text", "text": m["content"]}]
            if m["role"] == "user" and not placed:
                parts.insert(0, {"type": "image"})
                placed = True
            chat.append({"role": m["role"], "content": parts})
        if not placed:
            raise UserError("a chat with an image needs a user message to put it in")
        return self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    def encode_chat(self, image: Path, messages: list[dict[str, str]]) -> dict:
        """``chat_text`` with the image, as model inputs (batched by ``collate_prompts``)."""
        return self.encode_text(image, self.chat_text(messages))

    def encode_text(self, image: Path, text: str) -> dict:
        """A prompt already written out (one image placeholder in it) with the image, as model inputs."""
        px = self.pixels(image)
        ids = (
            self._tokenize(text.replace(self.image_token, px["expansion"], 1))
            if "expansion" in px
            else self._expand(self._tokenize(text), px)
        )
        return self._token_types({"input_ids": ids, "image": px})

    def _token_types(self, item: dict) -> dict:
        """Per-token types (1 on image tokens) for families whose model reads them: Gemma-3's
        ``token_type_ids``, Qwen's ``mm_token_type_ids`` (without which M-RoPE is not computed)."""
        if self.token_type_id is None:
            return item
        item[self.token_types] = [int(t == self.token_type_id) for t in item["input_ids"]]
        return item

    def _answer_ids(self, example: Example) -> list[int]:
        """Answer tokens as they follow the prompt (tokenised in context, then split off), cut to
        ``max_answer_tokens``, then the end token (``train_eos``), then cut so that prompt and answer
        fit ``max_length``."""
        question, answer = example.question, example.answer
        prompt_ids = list(self.prompt_tokens(question))  # the image placeholder still one token
        full = self._tokenize(self.prompt_text(question) + self.family.answer_prefix + answer)
        if full[: len(prompt_ids)] == prompt_ids:
            ids = full[len(prompt_ids) :]
        else:  # a merge across the boundary: fall back to the answer on its own
            ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if self.max_answer_tokens is not None:
            ids = ids[: self.max_answer_tokens]
        if self.train_eos:
            ids = ids + [self.eos_id]
        if self.max_length is not None:
            room = self.max_length - len(prompt_ids)
            if room < 1:
                raise UserError(
                    f"{example.key}: the prompt alone takes {len(prompt_ids)} tokens, leaving none of max_length={self.max_length} "
                    "for the answer; raise max_length (--set max_length=N) or shorten the question"
                )
            ids = ids[:room]
        return ids

    def encode_prompt(self, image: Path, question: str) -> dict:
        px = self.pixels(image)
        ids = self._prompt_ids(question, px)
        return self._token_types({"input_ids": ids, "image": px})

    def encode_example(self, example: Example) -> dict:
        """Prompt + answer, labels only on the answer (and its end-of-turn token unless ``train_eos`` is off)."""
        px = self.pixels(example.image)
        prompt_ids = self._prompt_ids(example.question, px)
        answer_ids = self._answer_ids(example)
        return self._token_types(
            {
                "input_ids": prompt_ids + answer_ids,
                "labels": [IGNORE] * len(prompt_ids) + answer_ids,
                "image": px,
            }
        )

    def _stack_images(self, items: list[dict]) -> dict:
        """The family's image inputs of every item, joined along the first dimension; tensors of
        different trailing shapes (LLaVA-NeXT's per-image number of anyres tiles) are zero-padded
        to the largest, as the image processor pads a batch."""
        images = [it["image"] for it in items]
        return {k: torch.cat(_padded([im[k] for im in images])) for k in self.family.image_inputs if k in images[0]}

    def collate_train(self, items: list[dict]) -> dict:
        """Right-padded training batch with labels."""
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            ids[row, :n] = torch.tensor(it["input_ids"])
            labels[row, :n] = torch.tensor(it["labels"])
            mask[row, :n] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            **self._stack_images(items),
            **self._pad_types(items, left=False),
            **self._cross_attention(ids, items),
        }

    def collate_prompts(self, items: list[dict]) -> dict:
        """Left-padded prompt batch for generation (new tokens line up at the right)."""
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            ids[row, width - n :] = torch.tensor(it["input_ids"])
            mask[row, width - n :] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            **self._stack_images(items),
            **self._pad_types(items, left=True),
            **self._cross_attention(ids, items),
        }

    def _pad_types(self, items: list[dict], *, left: bool) -> dict:
        key = self.token_types
        if key is None:
            return {}
        width = max(len(it["input_ids"]) for it in items)
        types = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it[key])
            if left:
                types[row, width - n :] = torch.tensor(it[key])
            else:
                types[row, :n] = torch.tensor(it[key])
        return {key: types}

    def _cross_attention(self, ids: torch.Tensor, items: list[dict]) -> dict:
        """Mllama's cross-attention mask (batch x tokens x 1 image x tiles), as its processor builds
        it for a batch: 1 from the image token to the end of the padded row, over the image's tiles."""
        key = self.family.cross_attention
        if key is None:
            return {}
        tiles = items[0]["image"]["pixel_values"].shape[2]  # (1, images, max tiles, C, H, W)
        mask = torch.zeros((len(items), ids.shape[1], 1, tiles), dtype=torch.long)
        for row, it in enumerate(items):
            start = int((ids[row] == self.image_token_id).nonzero()[0, 0])
            mask[row, start:, 0, : int(it["image"]["num_tiles"][0][0])] = 1
        return {key: mask}

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _padded(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    if len({t.shape[1:] for t in tensors}) <= 1:
        return tensors
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    out = []
    for t in tensors:
        padded = t.new_zeros((t.shape[0], *shape))
        padded[(slice(None), *(slice(0, n) for n in t.shape[1:]))] = t
        out.append(padded)
    return out
