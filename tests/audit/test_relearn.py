"""The relearning attack on the tiny LLaVA: the slice it trains on, the folders it writes, the
adapters it keeps at each budget."""

import json

import pytest
from safetensors.torch import load_file

from safeeraser.audit.relearn import MEASURED_DATA, SUMMARY, TRAINED_DATA, relearn, relearn_slice
from safeeraser.data.records import load_split
from safeeraser.data.views import forget_examples
from safeeraser.errors import UserError
from safeeraser.generate.predictions import generate_predictions, protocol_settings
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)


def pairs(data, split="train"):
    """A split's harmful pairs as (image path as written, question, harmful answer), in file order."""
    the_split = load_split(data, split)
    return [(r.image_path, p.question, p.model_response) for r in the_split for p in r.unsafe_pairs]


def test_the_default_slice_is_one_category_chosen_by_seed(small_demo):  # noqa: F811
    examples = forget_examples(load_split(small_demo, "train"))
    category = {e.key: e.category for e in examples}
    trained, measured = relearn_slice(small_demo)
    assert {category[k] for k in trained} == {"HateSpeech"}  # the first category in sorted order
    assert trained == [e.key for e in examples if e.category == "HateSpeech"]
    assert measured == [e.key for e in examples if e.category != "HateSpeech"]
    assert {category[k] for k in relearn_slice(small_demo, seed=1)[0]} == {"IllegalActivity"}
    assert relearn_slice(small_demo, seed=6) == (trained, measured)  # six categories: the choice cycles
    assert {category[k] for k in relearn_slice(small_demo, category="Sex")[0]} == {"Sex"}
    # a fraction: that share of the pairs, drawn with the seed, the same on every call
    part, rest = relearn_slice(small_demo, fraction=0.25, seed=3)
    assert len(part) == 9 and sorted(part + rest) == sorted(category) and not set(part) & set(rest)
    assert (
        relearn_slice(small_demo, fraction=0.25, seed=3)[0]
        == part
        != relearn_slice(small_demo, fraction=0.25, seed=4)[0]
    )
    for bad, message in (
        ({"category": "Nope"}, "has none"),
        ({"fraction": 1.0}, "must be in"),
        ({"category": "Sex", "fraction": 0.5}, "not both"),
    ):
        with pytest.raises(UserError, match=message):
            relearn_slice(small_demo, **bad)


@pytest.mark.slow
def test_relearning_trains_only_on_its_slice_and_keeps_each_budget(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    config = resolve_config(preset="demo", overrides=[{"eval_every": 0, "max_steps": 2}])
    unlearn(str(untrained_tiny), small_demo, "ga", tmp_path / "ga", config, progress=False)
    out = tmp_path / "relearn"
    # seed 1: the slice is the second category, and a fresh LoRA would start from other weights than ga's
    snapshots = relearn(
        str(untrained_tiny), small_demo, out, adapter=tmp_path / "ga", steps=(1, 3, 2), seed=1, progress=False
    )
    assert sorted(snapshots) == [1, 2, 3]

    # the data it trained from holds exactly the slice; every batch drew from it
    trained, measured = relearn_slice(small_demo, seed=1)
    by_key = dict(zip((e.key for e in forget_examples(load_split(small_demo, "train"))), pairs(small_demo)))
    assert pairs(out / TRAINED_DATA) == [by_key[k] for k in trained]
    rows = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    drawn = {i for r in rows for i in r["examples"]["forget"]}
    assert all(set(r["examples"]) == {"forget"} for r in rows) and drawn == set(range(len(trained)))

    # what is measured afterwards: the train split without the slice, the val split as it was
    assert pairs(out / MEASURED_DATA) == [by_key[k] for k in measured]
    assert pairs(out / MEASURED_DATA, "val") == pairs(small_demo, "val")
    assert json.loads((out / MEASURED_DATA / "all_val.json").read_text()) == json.loads(
        (small_demo / "all_val.json").read_text()
    )

    # one adapter per budget, each a different state, none the unlearned one it started from, and
    # each continuing it: one step moves every LoRA weight by about the learning rate (Adam), far
    # less than the distance to a fresh LoRA's random start
    states = [load_file(str(tmp_path / "ga" / "adapter" / "adapter_model.safetensors"))]
    states += [load_file(str(snapshots[s] / "adapter_model.safetensors")) for s in (1, 2, 3)]
    assert all(set(s) == set(states[0]) for s in states)
    lora_a = [name for name in states[0] if "lora_A" in name]
    assert lora_a and all((states[1][name] - states[0][name]).abs().max() < 5 * config.optim.lr for name in lora_a)
    for i in range(len(states)):
        for j in range(i + 1, len(states)):
            assert any(not states[i][name].equal(states[j][name]) for name in states[0]), (i, j)
    settings = protocol_settings("fast", max_new_tokens=2, num_samples=1)
    for step, folder in snapshots.items():
        meta = generate_predictions(
            str(untrained_tiny),
            out / MEASURED_DATA,
            "train",
            tmp_path / f"pred{step}.json",
            settings,
            adapter=folder,
            progress=False,
        )
        assert meta["prompts"] > 0 and meta["adapter"] == str(folder)
    summary = json.loads((out / SUMMARY).read_text())
    assert (
        summary["slice"]["category"] == "IllegalActivity" and summary["lr"] == config.optim.lr
    )  # the run's own learning rate
    assert summary["trained"] == trained and summary["measured"] == measured

    # a second call finds it finished; a run of 2 steps alone ends where this one's step-2 snapshot is
    written = (out / "run" / "log.jsonl").stat().st_mtime_ns
    assert (
        relearn(str(untrained_tiny), small_demo, out, adapter=tmp_path / "ga", steps=(1, 2, 3), seed=1, progress=False)
        == snapshots
    )
    assert (out / "run" / "log.jsonl").stat().st_mtime_ns == written
    alone = relearn(
        str(untrained_tiny), small_demo, tmp_path / "alone", adapter=tmp_path / "ga", steps=(2,), seed=1, progress=False
    )
    two = load_file(str(alone[2] / "adapter_model.safetensors"))
    assert all(two[name].equal(states[2][name]) for name in two)
