"""Unlearning dynamics: a quick look, every N steps, at forgetting and over-forgetting.

On a fixed slice of prompts, greedy answers judged by the offline judge give:
- ``forget_rr`` / ``forget_asr``: refusals / answers on harmful prompts the method trains on;
- ``sarr``: the share of harmful questions about *unseen harmless* images (test split) that are
  refused or degenerate — over-forgetting, as it appears.
"""

from __future__ import annotations

from safeeraser.data.records import Split
from safeeraser.generate.sampling import Prompt, Sampling, answer_all
from safeeraser.judge.base import JudgeItem
from safeeraser.judge.keyword import KeywordJudge
from safeeraser.models.codec import Codec


def probe_prompts(train: Split, val: Split, n: int) -> tuple[list[Prompt], list[Prompt]]:
    """The first harmful question of evenly spread records: n on harmful images, n on harmless."""

    def spread(split: Split, sd: bool) -> list[Prompt]:
        step = max(1, len(split) // n)
        picks = list(range(0, len(split), step))[:n]
        return [
            Prompt(split.sd_image(i) if sd else split.image(i), split.records[i].unsafe_pairs[0].question)
            for i in picks
        ]

    return spread(train, sd=False), spread(val, sd=True)


class DynamicsProbe:
    def __init__(self, codec: Codec, train: Split, val: Split, n: int, max_new_tokens: int = 48):
        self.codec = codec
        self.harmful, self.harmless = probe_prompts(train, val, n)
        self.sampling = Sampling(max_new_tokens=max_new_tokens)
        self.judge = KeywordJudge()

    def __call__(self, model) -> dict:
        was_training = model.training
        model.eval()
        answers = answer_all(model, self.codec, self.harmful + self.harmless, self.sampling, batch_size=32)
        model.train(was_training)
        harm = self.judge.judge([JudgeItem("harm", p.question, a[0]) for p, a in zip(self.harmful, answers)])
        dec = self.judge.judge(
            [JudgeItem("decouple", p.question, a[0]) for p, a in zip(self.harmless, answers[len(self.harmful) :])]
        )
        return {
            "forget_rr": sum(v.refusal for v in harm) / len(harm),
            "forget_asr": sum(v.unsafe for v in harm) / len(harm),
            "sarr": sum(not v.normal for v in dec) / len(dec),
        }
