"""The released recipe's training details, each a setting (`--preset paper` takes them all): the
learning-rate curve the released run stepped, trainable weights in float32 under a bfloat16 load,
the system sentence per phase, the 512-token sequence cap, capitalised text, no end token, file
order, no weight decay on biases."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safeeraser.data.records import load_split
from safeeraser.data.views import forget_examples
from safeeraser.errors import UserError
from safeeraser.models.codec import IGNORE, Codec
from safeeraser.models.families import family_named
from safeeraser.models.families.llava import LLAVA_TRAINING_SYSTEM, VICUNA_SYSTEM
from safeeraser.models.loading import load_model
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import BatchPlan, UnlearnRun, unlearn
from tests.small import small_demo, untrained_tiny  # noqa: F401 (fixtures)

STEPPING = Path(__file__).with_name("released_stepping.py")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_released_schedule_is_the_curve_accelerate_stepped_on_two_processes(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    """transformers' own cosine stepped by accelerate's AcceleratedScheduler on 2 gloo processes, as
    forget.py steps it, against log.jsonl's lr of `optim.schedule=released`, step by step."""
    ref = tmp_path / "released.json"
    n, grad_accum, epochs, lr = 64, 4, 5, 1e-4
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29561",
        str(STEPPING),
        str(ref),
        str(n),
        str(grad_accum),
        str(epochs),
        "0.06",
        str(lr),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    released = json.loads(ref.read_text())
    total, rates = released["total"], released["rates"]
    assert total == 40 and len(rates) == total
    # what the reading of the released code predicts: warm-up over 3% of training, zero at half, the peak again at the end
    assert (
        rates[0] == 0.0 and max(rates[:3]) == pytest.approx(lr) and rates[total // 2] == pytest.approx(0.0, abs=1e-12)
    )
    assert rates[-1] > 0.95 * lr

    out = tmp_path / "run"
    cfg = resolve_config(
        preset="demo",
        overrides=[
            {
                "max_steps": total,
                "batch_size": 1,
                "grad_accum": 1,
                "eval_every": 0,
                "optim": {"lr": lr, "schedule": "released", "released_processes": 2, "warmup_ratio": 0.06},
            }
        ],
    )
    unlearn(str(untrained_tiny), small_demo, "ga", out, cfg, progress=False)
    assert [r["lr"] for r in rows(out)] == pytest.approx(rates, rel=1e-9, abs=1e-15)


def test_the_default_cosine_is_clamped_and_ends_at_zero(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    cfg = resolve_config(
        preset="demo", overrides=[{"max_steps": 20, "batch_size": 1, "eval_every": 0, "optim": {"lr": 1e-3}}]
    )
    unlearn(str(untrained_tiny), small_demo, "ga", tmp_path / "run", cfg, progress=False)
    rates = [r["lr"] for r in rows(tmp_path / "run")]
    peak = rates.index(max(rates))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :])) and rates[-1] < 0.01 * max(rates)


def _trained(model, data, out, dtype: str) -> dict:
    cfg = resolve_config(
        preset="demo", overrides=[{"max_steps": 5, "eval_every": 0, "dtype": dtype, "optim": {"lr": 1e-4}}]
    )
    unlearn(str(model), data, "ga", out, cfg, progress=False)
    return load_file(out / "adapter" / "adapter_model.safetensors")


@pytest.mark.slow
def test_a_bfloat16_load_trains_every_weight_a_float32_load_trains(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    """At lr 1e-4 a bfloat16 projector weight rounds most single updates away (about one weight in
    five never moves in 5 steps when AdamW updates it in bfloat16): the trainable weights are held
    and updated in float32 while the frozen ones load in bfloat16."""
    base = load_file(Path(untrained_tiny) / "model.safetensors")
    full = _trained(untrained_tiny, small_demo, tmp_path / "f32", "float32")
    half = _trained(untrained_tiny, small_demo, tmp_path / "bf16", "bfloat16")
    projector = [k for k in full if "multi_modal_projector" in k]
    assert projector and all(half[k].dtype == torch.float32 for k in half)
    for key in projector:
        start = next(
            v
            for k, v in base.items()
            if k.endswith(key.split("multi_modal_projector.")[1]) and "multi_modal_projector" in k
        )
        moved_full = full[key] != start
        moved_half = half[key] != start.to(torch.bfloat16).float()
        assert moved_full.any()
        assert not (moved_full & ~moved_half).any(), (
            f"{key}: {(moved_full & ~moved_half).sum().item()} weights never moved under bfloat16"
        )
    for key in full:  # the same adapter, within what a bfloat16 forward pass changes in 5 steps of 1e-4
        assert torch.allclose(half[key], full[key], atol=2e-3, rtol=0), key


def test_each_phase_prompts_with_its_released_system_sentence(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    """Training: "...a curious human..." (model_config.yaml); generation and the dynamics probe:
    vicuna_v1's "...a curious user..." (ckpt_infer.py, conversation.py)."""
    assert "curious human" in LLAVA_TRAINING_SYSTEM and "curious user" in VICUNA_SYSTEM
    family = family_named("llava")
    assert (
        family.system_sentence("training") == LLAVA_TRAINING_SYSTEM
        and family.system_sentence("inference") == VICUNA_SYSTEM
    )
    cfg = resolve_config(preset="demo", overrides=[{"max_steps": 1, "eval_every": 1}])
    run = UnlearnRun(str(untrained_tiny), small_demo, "ga", tmp_path / "run", cfg, progress=False)
    run.setup(), run.load(), run.build(), run.restore(), run.open()
    assert run.codec.prompt_text("Q?").startswith(LLAVA_TRAINING_SYSTEM + " USER:")
    assert run.probe.codec.prompt_text("Q?").startswith(VICUNA_SYSTEM + " USER:")
    same = UnlearnRun(
        str(untrained_tiny),
        small_demo,
        "ga",
        tmp_path / "same",
        resolve_config(preset="demo", overrides=[{"system_sentence": "inference"}]),
        progress=False,
    )
    same.setup(), same.load()
    assert same.codec.prompt_text("Q?").startswith(VICUNA_SYSTEM + " USER:")

    from safeeraser.generate.backends import HFBackend

    loaded = load_model(str(untrained_tiny))
    assert (
        HFBackend(str(untrained_tiny), None, batch_size=1, system_prompt=True)
        .codec(loaded)
        .prompt_text("Q?")
        .startswith(VICUNA_SYSTEM + " USER:")
    )


@pytest.fixture(scope="module")
def codec_and_example(untrained_tiny, small_demo):  # noqa: F811
    loaded = load_model(str(untrained_tiny))
    example = forget_examples(load_split(small_demo, "train"))[0]
    return loaded, example


def _answer_labels(item: dict) -> list[int]:
    return [t for t in item["labels"] if t != IGNORE]


def test_max_length_caps_prompt_and_answer_with_the_image_as_one_token(codec_and_example):
    loaded, example = codec_and_example
    long = replace(example, answer=" ".join(["withheld"] * 700))
    uncapped = Codec(loaded.processor, system=VICUNA_SYSTEM)
    prompt = len(uncapped.prompt_tokens(long.question))  # the unexpanded prompt: <image> is one token
    assert len(_answer_labels(uncapped.encode_example(long))) > 600
    for cap in (prompt + 1, prompt + 50, 512):
        item = Codec(loaded.processor, system=VICUNA_SYSTEM, max_length=cap).encode_example(long)
        assert prompt + len(_answer_labels(item)) == cap
    short = Codec(loaded.processor, system=VICUNA_SYSTEM, max_length=512).encode_example(example)
    assert short["input_ids"] == uncapped.encode_example(example)["input_ids"]  # under the cap: untouched
    with pytest.raises(UserError, match="max_length"):
        Codec(loaded.processor, system=VICUNA_SYSTEM, max_length=prompt).encode_example(example)


def test_train_eos_off_leaves_the_end_token_untrained(codec_and_example):
    loaded, example = codec_and_example
    on = Codec(loaded.processor, system=VICUNA_SYSTEM)
    off = Codec(loaded.processor, system=VICUNA_SYSTEM, train_eos=False)
    assert _answer_labels(on.encode_example(example))[-1] == on.eos_id
    assert _answer_labels(off.encode_example(example)) == _answer_labels(on.encode_example(example))[:-1]


def test_capitalize_reads_question_answer_and_refusal_as_the_released_data_module(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    cfg = resolve_config(preset="demo", overrides=[{"text": {"capitalize": True}, "max_steps": 1}])
    run = UnlearnRun(str(untrained_tiny), small_demo, "po", tmp_path / "run", cfg, progress=False)
    run.setup(), run.load()
    view = run.views["refusal"]
    example = view.examples[0]
    refusal = view.redraw(example, 0).answer
    want = run.codec.encode_example(
        replace(example, question=example.question.capitalize(), answer=refusal.strip(" ").capitalize())
    )
    assert view.item(0, 0)["input_ids"] == want["input_ids"]
    assert want["input_ids"] != run.codec.encode_example(replace(example, answer=refusal))["input_ids"]


def test_file_order_reads_the_forget_side_in_file_order_every_epoch(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    plan = BatchPlan(10, 4, seed=0, view="forget", shuffle=False)
    assert [plan.indices(u) for u in range(6)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]] * 2
    shuffled = BatchPlan(10, 4, seed=0, view="forget")
    assert [shuffled.indices(u) for u in range(3)] != [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    run = UnlearnRun(
        str(untrained_tiny),
        small_demo,
        "gd+pd",
        tmp_path / "run",
        resolve_config(preset="demo", overrides=[{"order": "file"}]),
        progress=False,
    )
    run.setup(), run.load()
    in_order = list(range(run.config.batch_size))
    assert run.plans["forget"].indices(0) == run.plans["decouple"].indices(0) == in_order
    assert run.plans["retain"].indices(0) != in_order  # drawn at random, as the released code draws retain examples


def test_paper_preset_and_bias_decay(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    cfg = resolve_config(preset="paper", overrides=[{"max_steps": 1, "eval_every": 0}])
    assert (cfg.batch_size, cfg.grad_accum, cfg.order, cfg.max_length, cfg.optim.schedule) == (
        1,
        32,
        "file",
        512,
        "released",
    )
    assert (cfg.text.capitalize, cfg.text.train_eos, cfg.system_sentence) == (True, False, "training")
    run = UnlearnRun(
        str(untrained_tiny),
        small_demo,
        "gd",
        tmp_path / "run",
        resolve_config(overrides=[{"max_steps": 1}]),
        progress=False,
    )
    run.setup(), run.load(), run.build()
    decay = {id(p): g["weight_decay"] for g in run.optimizer.optimizer.param_groups for p in g["params"]}
    names = {n: decay[id(p)] for n, p in run.peft_model.named_parameters() if p.requires_grad}
    assert any(n.endswith("bias") for n in names) and all(
        v == (0.0 if n.endswith("bias") else 0.01) for n, v in names.items()
    )
