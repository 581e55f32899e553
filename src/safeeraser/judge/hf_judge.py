"""The LLM judge on a local Hugging Face chat model: the same prompts and parser as ``openai``.

The model is a folder or an id already in the local cache (no downloads unless allowed, as
for every model here). Generation is greedy and batched; an answer that is not the asked-for
JSON object is a failed verdict, never a guess.
"""

from __future__ import annotations

from safeeraser.errors import UserError
from safeeraser.judge.base import JudgeItem, Verdict
from safeeraser.judge.prompts import messages, read_verdict
from safeeraser.models.loading import default_device, default_dtype, locate, quiet_transformers


def plain_prompt(chat: list[dict[str, str]]) -> str:
    """The chat as plain text, for tokenizers that carry no chat template."""
    return "".join(f"{m['role'].upper()}: {m['content']}\n\n" for m in chat) + "ASSISTANT:"


class HFJudge:
    name = "hf"

    def __init__(self, model: str, batch_size: int = 8, max_new_tokens: int = 256):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1 or max_new_tokens < 1:
            raise UserError(f"hf judge: batch_size and max_new_tokens must be positive (got {batch_size}, {max_new_tokens})")
        quiet_transformers()
        folder = locate(model)
        self.device = default_device()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=default_dtype(self.device))
        except Exception as e:  # transformers raises many types for a folder it cannot load
            raise UserError(f"{folder}: could not load a causal language model for the hf judge ({type(e).__name__}: {e})") from None
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.folder = folder
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def prompt(self, item: JudgeItem) -> str:
        chat = messages(item)
        if not self.tokenizer.chat_template:
            return plain_prompt(chat)
        try:
            return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # e.g. a template that allows no system message
            raise UserError(f"{self.folder}: its chat template fails on the judge prompt ({type(e).__name__}: {e})") from None

    def judge(self, items: list[JudgeItem], *, progress: bool = False) -> list[Verdict]:
        import torch
        from safeeraser.progress import bar as progress_bar

        verdicts = []
        # A chat template writes its own BOS; plain text needs the tokenizer's.
        special = not self.tokenizer.chat_template
        for start in progress_bar(range(0, len(items), self.batch_size), desc="judging (hf)", enabled=progress):
            batch = items[start : start + self.batch_size]
            encoded = self.tokenizer([self.prompt(item) for item in batch], return_tensors="pt", padding=True, add_special_tokens=special).to(self.device)
            with torch.no_grad():
                output = self.model.generate(**encoded, do_sample=False, max_new_tokens=self.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
            answers = self.tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            verdicts += [read_verdict(item.kind, answer) for item, answer in zip(batch, answers)]
        return verdicts

