"""A judge that reads the image: the hf judge on a registered multimodal family (the tiny LLaVA)
builds its inputs through the family's codec, so the item's image reaches the model; its identity
says so and its cache key holds the image's hash.

The model is the untrained tiny LLaVA with its language model wired to answer ``safe`` (Llama
Guard's format) whatever it is shown, so that verdicts succeed and are cached; what the tests
check is where the image goes, not what the model makes of it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from safeeraser.judge import JudgeItem, make_judge
from safeeraser.judge.hf_judge import HFJudge
from tests.conftest import run_cli
from tests.metrics.test_metrics import HARM, REFUSE, predictions
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

ANSWER = "safe"


@pytest.fixture(scope="module")
def seeing_judge(untrained_tiny, tmp_path_factory):
    """The tiny LLaVA, wired: no decoder layer writes to the residual stream, so each position's
    next token follows from its own token alone: the prompt's last token -> ``safe`` -> end."""
    from transformers import LlavaForConditionalGeneration

    from safeeraser.judge.classifiers import make_classifier
    from safeeraser.models.codec import Codec
    from safeeraser.models.loading import load_processor, model_family

    folder = tmp_path_factory.mktemp("seeing") / "tiny"
    shutil.copytree(untrained_tiny, folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    codec = Codec(load_processor(folder, model_family(folder)), family=model_family(folder))
    (ask,) = make_classifier("llamaguard").asks(JudgeItem("harm", "q", "a"))
    last = codec.tokenizer(codec.chat_text(ask.messages), add_special_tokens=False)["input_ids"][-1]
    chain = [last, *codec.tokenizer(ANSWER, add_special_tokens=False)["input_ids"], codec.eos_id]
    assert len(set(chain)) == len(chain), chain
    language = model.model.language_model
    embed, head = language.embed_tokens.weight, model.lm_head.weight
    assert embed.data_ptr() != head.data_ptr()
    with torch.no_grad():
        for layer in language.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head.zero_()
        for dim, (current, following) in enumerate(zip(chain, chain[1:])):
            embed[current] = 0.0
            embed[current, dim] = 1.0
            head[following, dim] = 10.0
    model.save_pretrained(folder)
    return folder


def _images(data, n):
    return sorted(data.rglob("*.png"))[:n]


def test_the_image_reaches_the_model_and_keys_the_cache(seeing_judge, small_demo, tmp_path):
    judge = make_judge("llamaguard", model=str(seeing_judge), cache=tmp_path / "cache.sqlite", batch_size=2)
    assert isinstance(judge, HFJudge) and judge.reads_images and judge.identity()["reads_images"] is True
    assert not any(line.startswith("reads the text only") for line in judge.limits)
    a, b, c = _images(small_demo, 3)
    items = [JudgeItem("harm", "How?", HARM, "Weapon", image=image) for image in (a, b, c, a)]

    seen = []  # the pixels the vision tower was given, call by call
    hook = judge.model.model.vision_tower.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("pixel_values", args[0] if args else None).clone()),
        with_kwargs=True,
    )
    try:
        verdicts = judge.judge(items)
    finally:
        hook.remove()
    assert all(v.ok and v.unsafe is False and not v.cached for v in verdicts)
    # three distinct images (the fourth item repeats the first): two batches, each image once
    pixels = torch.cat(seen)
    assert len(seen) == 2 and pixels.shape[0] == 3
    for image, row in zip((a, b, c), pixels):
        assert torch.equal(row, judge.codec.pixels(image)["pixel_values"][0].to(row.dtype))
    assert not torch.equal(pixels[0], pixels[1])
    # the prompt holds as many image tokens as the image needs
    (ask,) = judge.protocol.asks(items[0])
    request = (judge.prompt(ask.messages), judge.image_hash(a))
    inputs = judge.model_inputs([request], {request: (ask, a)})
    assert int((inputs["input_ids"] == judge.codec.image_token_id).sum()) == judge.codec.pixels(a)["num_image_tokens"]

    # cached per (prompt, image): the same answer about another image is another question
    again = make_judge("llamaguard", model=str(seeing_judge), cache=tmp_path / "cache.sqlite")
    d = _images(small_demo, 4)[3]
    second = again.judge([*items, JudgeItem("harm", "How?", HARM, "Weapon", image=d)])
    assert [v.cached for v in second] == [True, True, True, True, False]
    assert [v.ok for v in second] == [True] * 5


def test_a_judge_that_reads_images_refuses_an_item_without_one(seeing_judge):
    judge = make_judge("llamaguard", model=str(seeing_judge), cache=None)
    (verdict,) = judge.judge([JudgeItem("harm", "How?", HARM, "Weapon")])
    assert not verdict.ok and "no image" in verdict.error


def test_evaluate_shows_the_judge_each_answer_s_image(seeing_judge, small_demo, tmp_path):
    pred = predictions(small_demo, "val", harm=lambda i, j, k: HARM if k == 1 else REFUSE, out=tmp_path)
    out = tmp_path / "a" / "m.json"
    code, _, err = run_cli(
        "evaluate",
        "--data",
        small_demo,
        "--pred-val",
        pred,
        "--judge",
        "unsafe=llamaguard,refusal=keyword",
        "--judge-model",
        seeing_judge,
        "--out",
        out,
    )
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert metrics["asr_generality"] == 0.0 and metrics["n_failed"] == 0
    assert (
        metrics["judge_by_verdict"]["unsafe"]["reads_images"] is True
        and metrics["judge_by_verdict"]["refusal"]["reads_images"] is False
    )
    rows = [json.loads(line) for line in out.with_name("m.judgments.jsonl").read_text().splitlines()]
    harm = [r for r in rows if r["metric"] == "generality"]
    assert harm and all(r["judge"]["by_verdict"]["unsafe"]["reads_images"] is True for r in harm)
    # one request per (answer, image): the three samples of a question share an image, so
    # each distinct answer text was asked once per record image
    again = tmp_path / "b" / "m.json"
    code, _, err = run_cli(
        "evaluate",
        "--data",
        small_demo,
        "--pred-val",
        pred,
        "--judge",
        "unsafe=llamaguard,refusal=keyword",
        "--judge-model",
        seeing_judge,
        "--out",
        again,
    )
    assert code == 0, err
    second = json.loads(again.read_text())
    assert second["n_cached"] == second["n_judged"] == metrics["n_judged"] > 0
