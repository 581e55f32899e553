"""The LLM judge on a local Hugging Face chat model: the same protocols, prompts and parsers as ``openai``.

A model of a registered multimodal family (``models.families``) reads the image: its inputs are
built by the family's codec (``Codec.encode_chat``), the item's image placed in the first user
message as the family's chat template writes it, so that any registered family (the tiny LLaVA
here) can judge with the image; a protocol may write its own layout for a family (Llama Guard on
Llama-3.2-Vision, i.e. Llama Guard 3 Vision: ``LlamaGuardProtocol.image_chat``). Its identity says
``reads_images`` and its cache key holds the image's hash. Any other causal language model
reads the text only.

The model is a folder or an id already in the local cache (no downloads unless allowed, as
for every model here). Generation is greedy and batched; an answer that is not what its
prompt asked for is a failed (sub-)verdict, never a guess. Answers go to the shared verdict
cache (``judge.cache``) keyed by the model's fingerprint (a hash of its files) and the prompt, so a rerun generates
only what it has not answered before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.judge.base import VERDICTS, JudgeItem, Verdict
from safeeraser.judge.cache import VerdictCache, cache_key
from safeeraser.judge.protocols import LLM_LIMITS, make_protocol
from safeeraser.models.loading import default_device, default_dtype, locate, quiet_transformers


def plain_prompt(chat: list[dict[str, str]]) -> str:
    """The chat as plain text, for tokenizers that carry no chat template."""
    return "".join(f"{m['role'].upper()}: {m['content']}\n\n" for m in chat) + "ASSISTANT:"


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Besides the weights and config.json, the files that decide what the model is given and how it decodes.
INPUT_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
               "generation_config.json", "preprocessor_config.json", "processor_config.json")  # fmt: skip


def model_fingerprint(folder: Path) -> str:
    """A short sha256 of the model folder's files: config.json, the weights and the tokenizer,
    chat template, generation and processor files, by name and content. The same model has
    the same fingerprint wherever it lies; any retrained weight or edited template changes it.
    (Loading the model reads every weight byte anyway.)"""
    digest = hashlib.sha256()
    for p in sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name == "config.json" or p.name.endswith(WEIGHT_SUFFIXES) or p.name in INPUT_FILES)
    ):
        with p.open("rb") as f:
            digest.update(json.dumps([p.name, hashlib.file_digest(f, "sha256").hexdigest()]).encode())
    return digest.hexdigest()[:12]


class HFJudge:
    name = "hf"
    limits = LLM_LIMITS

    def __init__(
        self,
        model: str,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        protocol: str = "published",
        prompts: str | Path | None = None,
        score: str = "ours",
        cache: Path | None = None,
        verdicts: tuple[str, ...] = VERDICTS,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.protocol = (
            protocol if not isinstance(protocol, str) else make_protocol(protocol, prompts, score)
        )  # first: a bad prompts file fails before a model loads
        # a judge serving some verdicts asks no others; a classifier protocol gives only its own
        self.verdicts = tuple(
            v for v in VERDICTS if v in verdicts and v in getattr(self.protocol, "verdicts", VERDICTS)
        )
        self.limits = getattr(self.protocol, "limits", LLM_LIMITS)
        self.cache = VerdictCache(cache) if cache is not None else None
        max_new_tokens = self.protocol.max_tokens if max_new_tokens is None else max_new_tokens
        if batch_size < 1 or max_new_tokens < 1:
            raise UserError(
                f"hf judge: batch_size and max_new_tokens must be positive (got {batch_size}, {max_new_tokens})"
            )
        quiet_transformers()
        folder = locate(model)
        self.device = default_device()
        self.family = image_family(folder)
        self.reads_images = self.family is not None
        if self.reads_images:
            self.limits = tuple(line for line in self.limits if not line.startswith("reads the text only"))
            self._load_multimodal(folder)
        else:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(folder)
                self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=default_dtype(self.device))
            except Exception as e:  # transformers raises many types for a folder it cannot load
                raise UserError(
                    f"{folder}: could not load a causal language model for the hf judge ({type(e).__name__}: {e})"
                ) from None
            self.model.to(self.device).eval()
            self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        self.folder = folder
        self.fingerprint = model_fingerprint(folder)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        ends = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *(ends if isinstance(ends, list) else [ends])} - {None}
        if self.reads_images:
            self.eos_ids.add(self.codec.eos_id)
        self._image_hashes: dict[Path, str] = {}

    def _load_multimodal(self, folder: Path) -> None:
        from safeeraser.models.codec import Codec
        from safeeraser.models.loading import load_model

        loaded = load_model(str(folder), device=self.device)
        self.model = loaded.model
        self.codec = Codec(
            loaded.processor, family=loaded.family
        )  # no system sentence: the protocol's chat is the prompt
        self.tokenizer = self.codec.tokenizer

    def identity(self) -> dict:
        return (
            {
                "kind": "hf",
                "model": f"{self.folder}@{self.fingerprint}",
                "protocol": self.protocol.name,
                "prompt_hash": self.prompt_hash,
                "decoding": {"temperature": 0, "max_tokens": self.max_new_tokens},  # greedy
            }
            | ({"reads_images": True} if self.reads_images else {})
            | getattr(self.protocol, "identity_extra", dict)()
        )

    @property
    def prompt_hash(self) -> str:
        """The protocol's prompt hash; where the protocol writes its own layout for this model's family
        (Llama Guard on Llama-3.2-Vision), a hash of that layout's text too."""
        probe = [{"role": "user", "content": "{question}"}, {"role": "assistant", "content": "{response}"}]
        if not self.reads_images or getattr(self.protocol, "image_chat", lambda *_: None)(probe, self.family) is None:
            return self.protocol.prompt_hash
        return hashlib.sha256(json.dumps([self.protocol.prompt_hash, self.prompt(probe)]).encode()).hexdigest()[:16]

    def image_hash(self, image: Path) -> str:
        if image not in self._image_hashes:
            with open(image, "rb") as f:
                self._image_hashes[image] = hashlib.file_digest(f, "sha256").hexdigest()
        return self._image_hashes[image]

    def prompt(self, chat: list[dict[str, str]]) -> str:
        """One request's chat as the model's input text."""
        if self.reads_images:
            own = getattr(self.protocol, "image_chat", lambda *_: None)(chat, self.family)
            if own is None:
                return self.codec.chat_text(chat)
            return self.codec.processor.apply_chat_template(
                own, chat_template=self.family.chat_template, add_generation_prompt=True, tokenize=False
            )
        if not self.tokenizer.chat_template:
            return plain_prompt(chat)
        try:
            return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # e.g. a template that allows no system message
            raise UserError(
                f"{self.folder}: its chat template fails on the judge prompt ({type(e).__name__}: {e})"
            ) from None

    def judge(self, items: list[JudgeItem], *, progress: bool = False) -> list[Verdict]:
        from safeeraser.progress import bar as progress_bar

        per_item = [self.protocol.asks(item, self.verdicts) for item in items]
        asks = [ask for group in per_item for ask in group]
        images = [item.image if self.reads_images else None for item, group in zip(items, per_item) for _ in group]
        texts = [self.prompt(ask.messages) for ask in asks]
        # one request = the prompt text and, for a judge that reads it, the image's hash
        requests = [(text, self.image_hash(image) if image is not None else None) for text, image in zip(texts, images)]
        first = {}  # request -> the first question (and image) that asks it: identical ones are generated once
        for request, ask, image in zip(requests, asks, images):
            first.setdefault(request, (ask, image))
        identity = {k: v for k, v in self.identity().items() if k != "prompt_hash"}  # the prompt itself is keyed
        keys = {r: cache_key(identity, r[0] if r[1] is None else list(r)) for r in first}
        found = self.cache.get_many(list(keys.values())) if self.cache is not None else {}
        answers = {r: found[key] for r, key in keys.items() if key in found}
        if self.reads_images:
            for r, (_, image) in first.items():
                if image is None and r not in answers:
                    answers[r] = Verdict(error="no image to show a judge that reads images")
        unique = [r for r in first if r not in answers]
        for start in progress_bar(range(0, len(unique), self.batch_size), desc="judging (hf)", enabled=progress):
            batch = unique[start : start + self.batch_size]
            for r, row, answer in zip(batch, *self._generate(batch, first)):
                # a row that used every new token without ending may have been cut mid-answer
                cut_off = len(row) >= self.max_new_tokens and not self.eos_ids & set(row)
                answers[r] = self.protocol.read(
                    first[r][0], answer, cut_off_at=self.max_new_tokens if cut_off else None
                )
                if self.cache is not None:
                    self.cache.put(keys[r], answers[r])
        verdicts, at = [], 0
        for group in per_item:
            verdicts.append(
                self.protocol.combine([(ask, replace(answers[requests[at + j]])) for j, ask in enumerate(group)])
            )
            at += len(group)
        return verdicts

    def model_inputs(self, batch: list[tuple[str, str | None]], first: dict) -> dict:
        """One batch of requests as the model's inputs, left-padded: text through the tokenizer, or
        text and image through the family's codec."""
        if self.reads_images:
            encoded = self.codec.collate_prompts([self.codec.encode_text(first[r][1], r[0]) for r in batch])
            dtype = next(self.model.parameters()).dtype
            return {
                k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in encoded.items()
            }
        # A chat template writes its own BOS; plain text needs the tokenizer's.
        special = not self.tokenizer.chat_template
        return dict(
            self.tokenizer([r[0] for r in batch], return_tensors="pt", padding=True, add_special_tokens=special).to(
                self.device
            )
        )

    def _generate(self, batch: list[tuple[str, str | None]], first: dict) -> tuple[list[list[int]], list[str]]:
        import torch

        encoded = self.model_inputs(batch, first)
        pad = self.codec.pad_id if self.reads_images else self.tokenizer.pad_token_id
        with torch.no_grad():
            output = self.model.generate(
                **encoded, do_sample=False, max_new_tokens=self.max_new_tokens, pad_token_id=pad
            )
        generated = output[:, encoded["input_ids"].shape[1] :]
        return generated.tolist(), self.tokenizer.batch_decode(generated, skip_special_tokens=True)


def image_family(folder: Path):
    """The registered multimodal family of the model in ``folder`` that the codec can encode, or None."""
    from safeeraser.models.families import FAMILIES

    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        return None  # the text loader says what is wrong with the folder
    return next((f for f in FAMILIES.values() if model_type in f.model_types and f.encodable), None)
