"""Generation: batched equals one-by-one, seeded, published shape, resumable."""

import json

import pytest

from safeeraser.data.records import UNHARM_KEYS, load_split, load_split_file
from safeeraser.generate.predictions import GenerationSettings, batches, generate_predictions, split_tasks
from safeeraser.generate.sampling import Prompt, Sampling, answer_all
from safeeraser.models.codec import Codec
from safeeraser.models.loading import load_model
from tests.conftest import run_cli

FAST = GenerationSettings(num_samples=2, max_new_tokens=12, batch_size=16, seed=3)


def test_batched_greedy_equals_one_prompt_at_a_time(tiny_model, demo_data):
    """Left padding and the KV cache must not change an answer."""
    loaded = load_model(str(tiny_model))
    codec = Codec(loaded.processor)
    val = load_split(demo_data, "val")
    prompts = [Prompt(val.image(i), val.records[i].unsafe_pairs[0].question) for i in range(6)]
    prompts += [Prompt(val.sd_image(i), val.records[i].unsafe_pairs[0].question) for i in range(3)]
    prompts += [Prompt(val.image(i), qa.question) for i in range(3) for _, qa in val.records[i].unharm_pairs()[:2]]
    greedy = Sampling(max_new_tokens=40)
    batched = answer_all(loaded.model, codec, prompts, greedy, batch_size=len(prompts))
    single = answer_all(loaded.model, codec, prompts, greedy, batch_size=1)
    assert batched == single
    assert (
        len({len(codec.encode_prompt(p.image, p.question)["input_ids"]) for p in prompts}) > 1
    )  # padding really happened


def test_prediction_file_has_the_published_shape(tiny_model, demo_data, tmp_path):
    out = tmp_path / "pred_val.json"
    meta = generate_predictions(str(tiny_model), demo_data, "val", out, FAST, progress=False)
    raw = json.loads(out.read_text())
    reference = json.loads((demo_data / "all_val.json").read_text())
    assert len(raw) == len(reference)
    for got, ref in zip(raw, reference):
        assert got["image_path"] == ref["image_path"] and got["SDImage_path"] == ref["SDImage_path"]
        for gp, rp in zip(got["unsafe_pairs"], ref["unsafe_pairs"]):
            assert gp["question"] == rp["question"] and gp["model_response"] == rp["model_response"]
            assert set(gp) == {"question", "model_response", "sd_response", "model_response1", "model_response2"}
        for key in UNHARM_KEYS:
            assert got[key]["Question"] == ref[key]["Question"] and isinstance(got[key]["Prediction"], str)
    # it reads back through the same typed records as a dataset file
    assert load_split_file(out).records[0].unsafe_pairs[0].samples()
    assert meta["prompts"] == len(split_tasks(load_split(demo_data, "val")))
    assert meta["tokens_per_second"] > 0
    assert not out.with_name(out.name + ".partial.jsonl").exists()


def test_same_seed_same_samples_other_seed_other_samples(tiny_model, demo_data, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        settings = GenerationSettings(
            num_samples=3, max_new_tokens=10, batch_size=24, temperature=1.5, top_p=1.0, seed=seed
        )
        generate_predictions(str(tiny_model), demo_data, "val", tmp_path / f"{name}.json", settings, progress=False)
    a, b, c = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "abc")
    assert a == b
    assert a != c


def test_batches_are_independent_of_order_of_completion():
    class T:  # stand-in tasks only need key and multi
        def __init__(self, key, multi):
            self.key, self.multi = key, multi

    tasks = [T(f"t{i}", i % 3 == 0) for i in range(20)]
    plan = batches(tasks, GenerationSettings(num_samples=3, batch_size=6))
    assert all(len(chunk) <= 2 for key, chunk in plan if key.startswith("s:"))
    assert sorted(t.key for _, chunk in plan for t in chunk) == sorted(t.key for t in tasks)
    assert len({key for key, _ in plan}) == len(plan)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--split", "test"], "unknown --split 'test'"),
        (["--split", "val", "--num-samples", "0"], "--num-samples must be positive"),
        (["--split", "val", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--split", "val", "--adapter", "/nonexistent/run"], "adapter not found: /nonexistent/run"),
    ],
)
def test_generate_cli_errors(tiny_model, demo_data, tmp_path, args, message):
    code, _, err = run_cli("generate", "--model", tiny_model, "--data", demo_data, "--out", tmp_path / "p.json", *args)
    assert code == 2 and message in err and "Traceback" not in err
