"""`safeeraser merge`: a finished run's adapter merged into its base, on the tiny LLaVA."""

import json

import torch

from safeeraser.data.records import load_split
from safeeraser.data.views import view_examples
from safeeraser.models.codec import Codec
from safeeraser.models.loading import attach_adapter, load_model
from safeeraser.unlearn.methods import Forward
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.unlearn.test_training import config


def logits(model, codec, data) -> torch.Tensor:
    batch = codec.collate_train(
        [codec.encode_example(e) for e in view_examples(load_split(data, "train"), "forget")[:2]]
    )
    with torch.no_grad():
        return Forward(model).logits(batch)


def test_merge_writes_the_adapted_model_as_a_plain_checkpoint(tiny_model, demo_data, tmp_path):
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    run = tmp_path / "po"
    unlearn(str(tiny_model), demo_data, "po", run, config(max_steps=3), progress=False)
    code, _, err = run_cli("merge", "--run", run)
    assert code == 0, err
    assert err.strip() == f"wrote {run / 'merged'}: the base model with {run}'s adapter merged in"

    merged = LlavaForConditionalGeneration.from_pretrained(run / "merged").eval()
    adapted = attach_adapter(load_model(str(tiny_model)), run)
    codec = Codec(adapted.processor)
    assert torch.allclose(logits(merged, codec, demo_data), logits(adapted.model, codec, demo_data), atol=1e-4)
    base = load_model(str(tiny_model)).model
    assert not torch.allclose(
        logits(merged, codec, demo_data), logits(base, codec, demo_data), atol=1e-3
    )  # the adapter did something
    # the trained projector is merged in too (LoRA-only serving could not carry it)
    weights, original = (
        load_file(str(run / "merged" / "model.safetensors")),
        load_file(str(tiny_model / "model.safetensors")),
    )
    projector = next(k for k in weights if "multi_modal_projector" in k and k.endswith("weight"))
    assert not torch.equal(weights[projector], original[projector])
    assert json.loads((run / "merged" / "safeeraser-merge.json").read_text())["base"] == str(tiny_model)
    assert (run / "merged" / "processor_config.json").exists() or (run / "merged" / "preprocessor_config.json").exists()


def test_merge_errors_are_one_line(tiny_model, demo_data, tmp_path):
    run = tmp_path / "ga"
    unlearn(str(tiny_model), demo_data, "ga", run, config(max_steps=1), progress=False)
    cases = [
        (["--run", tmp_path / "none"], "adapter not found"),
        (["--run", run / "adapter"], "run.json: not found"),  # an adapter folder names no base model
        (["--run", run, "--dtype", "float8"], "unknown dtype 'float8'"),
        (["--run", run, "--device", "tpu"], "unknown --device 'tpu'"),
    ]
    for args, message in cases:
        code, _, err = run_cli("merge", *args)
        assert code != 0 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
    assert not (run / "merged").exists()
    # an adapter folder with its base named; then the folder exists and is kept unless --overwrite
    code, _, err = run_cli("merge", "--run", run / "adapter", "--model", tiny_model, "--out", tmp_path / "m")
    assert code == 0, err
    code, _, err = run_cli("merge", "--run", run, "--out", tmp_path / "m")
    assert code != 0 and "already exists; pass --overwrite" in err
    code, _, err = run_cli("merge", "--run", run, "--out", tmp_path / "m", "--overwrite", "--dtype", "bfloat16")
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "config.json").read_text()).get("dtype", "bfloat16") == "bfloat16"
