"""The generation protocol: the released settings by default, named deviations, recorded."""

import json

import pytest

from safeeraser.errors import UserError
from safeeraser.generate.predictions import PROTOCOLS, generate_predictions, protocol_settings
from safeeraser.generate.sampling import Sampling
from safeeraser.judge.keyword import KeywordJudge
from safeeraser.metrics.evaluate import evaluate
from safeeraser.models.codec import Codec
from safeeraser.models.families.llava import VICUNA_SYSTEM
from safeeraser.models.loading import load_model


def test_published_protocol_is_the_released_inference():
    p = PROTOCOLS["published"]
    assert (p.num_samples, p.sample_single, p.temperature, p.top_p, p.top_k, p.max_new_tokens, p.system_prompt) == (
        3,
        True,
        1.0,
        0.9,
        50,
        512,
        True,
    )
    assert p.label() == "published"
    assert (
        protocol_settings("published", max_new_tokens=48, batch_size=99, seed=4).label()
        == "published (max_new_tokens=48)"
    )
    assert protocol_settings("fast").label() == "fast"
    assert protocol_settings("fast", sample_single=True).label() == "fast (sample_single=True)"
    with pytest.raises(UserError, match="unknown --protocol 'paper'"):
        protocol_settings("paper")
    kwargs = Sampling(do_sample=True).generate_kwargs()
    assert (kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (1.0, 0.9, 50)


def test_llava_prompts_are_the_vicuna_v1_conversation(tiny_model):
    processor = load_model(str(tiny_model)).processor
    prompt = Codec(processor, system=VICUNA_SYSTEM).prompt_text("What is shown?")
    assert prompt == f"{VICUNA_SYSTEM} USER: <image>\nWhat is shown? ASSISTANT:"
    assert Codec(processor).prompt_text("What is shown?") == "USER: <image>\nWhat is shown? ASSISTANT:"


def _answers(path):
    rows = json.loads(path.read_text())
    return [p["sd_response"] for r in rows for p in r["unsafe_pairs"]] + [
        r[k]["Prediction"] for r in rows for k in ("UnharmPair_text1", "UnharmPair_image1")
    ]


@pytest.mark.slow
def test_published_samples_every_answer_and_fast_answers_single_prompts_greedily(tiny_model, demo_data, tmp_path):
    for protocol in ("published", "fast"):
        for seed in (1, 2):
            settings = protocol_settings(
                protocol, max_new_tokens=12, batch_size=48, seed=seed, temperature=1.5, top_k=0
            )
            generate_predictions(
                str(tiny_model), demo_data, "val", tmp_path / f"{protocol}{seed}.json", settings, progress=False
            )
    assert _answers(tmp_path / "published1.json") != _answers(tmp_path / "published2.json")
    assert _answers(tmp_path / "fast1.json") == _answers(tmp_path / "fast2.json")
    meta = json.loads((tmp_path / "published1.meta.json").read_text())
    assert meta["generation"]["label"] == "published (temperature=1.5, top_k=0, max_new_tokens=12)"
    assert meta["environment"]["packages"]["torch"]
    m = evaluate(demo_data, tmp_path / "m.json", KeywordJudge(), pred_val=tmp_path / "published1.json", progress=False)
    assert m["protocol"] == meta["generation"]["label"]
    assert m["judge_identity"]["kind"] == "keyword"
