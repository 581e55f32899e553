"""`--backend hf` halves the batch on out-of-memory and retries, down to one prompt.

The failure is injected where a GPU would raise it: the real tiny LLaVA's ``generate`` raises
``torch.OutOfMemoryError`` for any call above a number of sequences, as a device that is too
small would. Our back-off code runs unchanged.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from safeeraser.data.records import load_split
from safeeraser.errors import UserError
from safeeraser.generate.predictions import GenerationSettings, generate_predictions, split_tasks
from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # builds a tiny (untrained) model


@pytest.fixture
def untrained(untrained_tiny):
    return untrained_tiny


@pytest.fixture
def memory_limit(monkeypatch):
    """``limit[0]``: the most sequences one ``generate`` call may hold; every call's size is recorded."""
    limit, calls = [None], []
    real = transformers.GenerationMixin.generate

    def generate(self, *args, **kwargs):
        sequences = kwargs["input_ids"].shape[0] * kwargs.get("num_return_sequences", 1)
        calls.append(sequences)
        if limit[0] is not None and sequences > limit[0]:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {sequences} sequences")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(transformers.GenerationMixin, "generate", generate)
    return limit, calls


SETTINGS = GenerationSettings(num_samples=2, max_new_tokens=3, batch_size=16, seed=1)


def test_out_of_memory_halves_the_batch_until_it_fits(untrained, small_demo, tmp_path, memory_limit):
    limit, calls = memory_limit
    limit[0] = 5
    code, _, err = run_cli(
        "generate",
        "--model",
        untrained,
        "--data",
        small_demo,
        "--split",
        "val",
        "--out",
        tmp_path / "a.json",
        "--num-samples",
        "2",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "16",
        "--seed",
        "1",
    )
    assert code == 0, err
    assert "out of memory at 16 sequences per batch; retrying with batch size 8" in err
    assert "out of memory at 8 sequences per batch; retrying with batch size 4" in err
    assert "batch size backed off to 4" in err
    meta = json.loads((tmp_path / "a.meta.json").read_text())
    assert (meta["final_batch_size"], meta["oom_backoffs"]) == (4, 2)
    assert max(calls) == 16 and all(c <= 4 for c in calls[calls.index(4) :])  # once it fits, it stays small
    predictions = json.loads((tmp_path / "a.json").read_text())
    answered = sum(
        1
        for r in predictions
        for p in r["unsafe_pairs"]
        for k in ("model_response1", "model_response2", "sd_response")
        if k in p
    )
    tasks = split_tasks(load_split(small_demo, "val"))
    assert answered == sum(2 if t.multi else 1 for t in tasks if "/p" in t.key)

    # the same back-off gives the same answers
    calls.clear()
    generate_predictions(str(untrained), small_demo, "val", tmp_path / "b.json", SETTINGS, progress=False)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_no_out_of_memory_leaves_the_batches_as_they_were(untrained, small_demo, tmp_path, memory_limit):
    _, calls = memory_limit
    meta = generate_predictions(str(untrained), small_demo, "val", tmp_path / "a.json", SETTINGS, progress=False)
    assert (meta["final_batch_size"], meta["oom_backoffs"]) == (16, 0)
    assert max(calls) == 16


def test_one_prompt_that_does_not_fit_is_an_error(untrained, small_demo, tmp_path, memory_limit):
    limit, _ = memory_limit
    limit[0] = 1  # not even one prompt's two samples fit
    with pytest.raises(UserError, match=r"out of memory generating one prompt \(2 sequences of up to 3 new tokens\)"):
        generate_predictions(str(untrained), small_demo, "val", tmp_path / "a.json", SETTINGS, progress=False)
