"""Unlearning on the real tiny LLaVA: every method runs, and each moves the loss it should."""

import json

import pytest
import torch

from safeeraser.data.records import load_split
from safeeraser.data.views import view_examples
from safeeraser.errors import TrainingStopped, UserError
from safeeraser.models.codec import Codec
from safeeraser.models.loading import attach_adapter, load_model
from safeeraser.report.plots import plot_run
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.methods import ALL_METHOD_NAMES, BASE_METHODS, Forward
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli


def config(**overrides):
    return resolve_config(preset="demo", overrides=[{"eval_every": 0, **overrides}])


def view_nll(model_dir, data, view, adapter=None, n=48) -> float:
    """Mean answer NLL of a view's first n examples under the model (+ adapter)."""
    loaded = load_model(str(model_dir))
    if adapter is not None:
        attach_adapter(loaded, adapter)
    codec = Codec(loaded.processor)
    examples = view_examples(load_split(data, "train"), view)[:n]
    batch = codec.collate_train([codec.encode_example(e) for e in examples])
    with torch.no_grad():
        return Forward(loaded.model).nll(batch).item()


@pytest.mark.parametrize("method", ALL_METHOD_NAMES)
def test_every_method_runs_and_writes_a_run_folder(method, tiny_model, demo_data, tmp_path):
    result = unlearn(
        str(tiny_model), demo_data, method, tmp_path / "run", config(max_steps=2), progress=False, on_finish=plot_run
    )
    run = tmp_path / "run"
    assert result.steps == 2 and result.stopped is None
    assert (run / "adapter" / "adapter_model.safetensors").is_file() and (
        run / "adapter" / "adapter_config.json"
    ).is_file()
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    # the log holds exactly the terms the method declares (+ the decouple term under PD)
    base = method.removesuffix("+sineproject").removesuffix("+pd")
    declared = set(BASE_METHODS[base].logs) | ({"decouple_nll"} if "+pd" in method else set())
    assert set(rows[0]) == {"step", "lr", "loss"} | declared
    assert (run / "loss.png").stat().st_size > 1000
    assert "lora:" in (run / "config.yaml").read_text() and "simnpo:" in (run / "config.yaml").read_text()
    assert json.loads((run / "run.json").read_text())["method"] == method


def test_ga_raises_the_forget_nll(tiny_model, demo_data, tmp_path):
    before = view_nll(tiny_model, demo_data, "forget")
    unlearn(str(tiny_model), demo_data, "ga", tmp_path / "ga", config(max_steps=20), progress=False)
    after = view_nll(tiny_model, demo_data, "forget", tmp_path / "ga")
    assert after > before + 1.0


def test_po_lowers_the_refusal_nll_and_pd_lowers_the_decouple_nll(tiny_model, demo_data, tmp_path):
    refusal_before = view_nll(tiny_model, demo_data, "refusal")
    unlearn(str(tiny_model), demo_data, "po", tmp_path / "po", config(max_steps=40), progress=False)
    unlearn(str(tiny_model), demo_data, "po+pd", tmp_path / "popd", config(max_steps=40), progress=False)
    # PO at least halves the refusal NLL (the vanilla model already refuses its beyond-ability
    # questions, so how high it starts depends on how long the tiny model trained)
    assert view_nll(tiny_model, demo_data, "refusal", tmp_path / "po") < refusal_before / 2
    # PO alone drifts the harmless-image answers; the PD term holds them
    assert view_nll(tiny_model, demo_data, "decouple", tmp_path / "popd") < view_nll(
        tiny_model, demo_data, "decouple", tmp_path / "po"
    )


def test_reference_is_the_same_model_with_the_adapter_off(tiny_model, demo_data, tmp_path, monkeypatch):
    import transformers

    built = []
    original = transformers.LlavaForConditionalGeneration.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.LlavaForConditionalGeneration, "__init__", counting_init)
    # a trained projector too: the adapter then also holds a trainable copy of it, to switch off
    unlearn(
        str(tiny_model),
        demo_data,
        "kl",
        tmp_path / "kl",
        config(max_steps=5, lora={"train_projector": True}),
        progress=False,
    )
    assert len(built) == 1  # KL's reference never loads a second model

    adapted = attach_adapter(load_model(str(tiny_model)), tmp_path / "kl")
    base = load_model(str(tiny_model))
    codec = Codec(base.processor)
    batch = codec.collate_train(
        [codec.encode_example(e) for e in view_examples(load_split(demo_data, "train"), "retain")[:4]]
    )
    f = Forward(adapted.model)
    with torch.no_grad():
        before = f.logits(batch)
        reference, current, original = f.reference_logits(batch), f.logits(batch), Forward(base.model).logits(batch)
        with adapted.model.disable_adapter():  # PEFT's own switch agrees
            peft_reference = adapted.model(**Forward.inputs(batch)).logits
    assert torch.allclose(reference, original, atol=1e-5)
    assert torch.allclose(peft_reference, original, atol=1e-5)
    assert not torch.allclose(current, original, atol=1e-3)
    assert torch.equal(current, before)  # the adapter is back on afterwards


def test_forget_bound_stops_gradient_ascent_early(tiny_model, demo_data, tmp_path):
    cfg = config(max_steps=60, method={"forget_nll_bound": 3.0})
    result = unlearn(str(tiny_model), demo_data, "ga", tmp_path / "ga", cfg, progress=False)
    assert result.stopped and "passed the bound 3" in result.stopped and result.steps < 60
    summary = json.loads((tmp_path / "ga" / "run.json").read_text())
    assert summary["stopped"] == result.stopped and (tmp_path / "ga" / "adapter" / "adapter_model.safetensors").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_state(tiny_model, demo_data, tmp_path):
    cfg = config(max_steps=20, optim={"lr": 1e30, "grad_clip": None}, method={"forget_nll_bound": None})
    with pytest.raises(TrainingStopped, match="became non-finite; stopped. The last good state"):
        unlearn(str(tiny_model), demo_data, "ga", tmp_path / "ga", cfg, progress=False)
    state = json.loads((tmp_path / "ga" / "checkpoint" / "state.json").read_text())
    assert state["step"] >= 1
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "ga" / "checkpoint" / "adapter.safetensors"))
    assert weights and all(torch.isfinite(w).all() for w in weights.values())


class _Crash(Exception):
    pass


def _crash(out, name):
    raise _Crash  # on_finish runs after the adapter is written, before run.json: the checkpoint stays


def test_resume_refuses_a_checkpoint_of_other_settings_and_allows_the_free_ones(tiny_model, demo_data, tmp_path):
    out = tmp_path / "po"
    with pytest.raises(_Crash):
        unlearn(
            str(tiny_model),
            demo_data,
            "po",
            out,
            config(max_steps=4, checkpoint_every=2),
            on_finish=_crash,
            progress=False,
        )
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert (
        state["step"] == 2
        and state["method"] == "po"
        and state["settings"]["micro_batches_per_step"] == config().grad_accum
    )
    refused = [
        ("po", config(max_steps=4, checkpoint_every=2, optim={"lr": 3.21e-4}), "optim.lr"),
        ("po", config(max_steps=8, checkpoint_every=2), "max_steps 4 -> 8"),
        ("ga", config(max_steps=4, checkpoint_every=2), "method 'po' -> 'ga'"),
        ("po", config(max_steps=4, checkpoint_every=2, grad_accum=config().grad_accum + 1), "micro_batches_per_step"),
    ]
    for method, cfg, message in refused:
        with pytest.raises(UserError, match="written by a run with other settings") as e:
            unlearn(str(tiny_model), demo_data, method, out, cfg, resume=True, progress=False)
        assert message in str(e.value) and "--overwrite" in str(e.value)
    assert json.loads((out / "checkpoint" / "state.json").read_text()) == state  # nothing was touched
    # checkpoint_every, log_every and gradient_checkpointing may change: it resumes and finishes
    free = config(max_steps=4, checkpoint_every=3, log_every=2, gradient_checkpointing=True)
    result = unlearn(str(tiny_model), demo_data, "idk", out, free, resume=True, progress=False)  # (po's other name)
    assert result.resumed_from == 2 and result.steps == 4 and not (out / "checkpoint").exists()


def test_merge_writes_a_plain_transformers_model(tiny_model, demo_data, tmp_path):
    from transformers import LlavaForConditionalGeneration

    unlearn(str(tiny_model), demo_data, "po", tmp_path / "po", config(max_steps=3), merge=True, progress=False)
    merged = LlavaForConditionalGeneration.from_pretrained(tmp_path / "po" / "merged").eval()
    adapted = attach_adapter(load_model(str(tiny_model)), tmp_path / "po")
    codec = Codec(adapted.processor)
    batch = codec.collate_train(
        [codec.encode_example(e) for e in view_examples(load_split(demo_data, "train"), "forget")[:2]]
    )
    with torch.no_grad():
        assert torch.allclose(Forward(merged).logits(batch), Forward(adapted.model).logits(batch), atol=1e-4)


def test_unlearn_cli_errors(tiny_model, demo_data, tmp_path):
    base = [
        "unlearn",
        "--model",
        tiny_model,
        "--data",
        demo_data,
        "--out",
        tmp_path / "r",
        "--preset",
        "demo",
        "--max-steps",
        "1",
    ]
    code, _, err = run_cli(*base, "--method", "satimp")
    assert code == 2 and "unknown method 'satimp'" in err
    code, _, err = run_cli(
        "unlearn", "--model", tmp_path / "none", "--data", demo_data, "--method", "ga", "--out", tmp_path / "r"
    )
    assert code == 2 and "model not found" in err
    code, _, err = run_cli(
        "unlearn", "--model", tiny_model, "--data", tmp_path / "none", "--method", "ga", "--out", tmp_path / "r"
    )
    assert code == 2 and "dataset path not found" in err
    code, _, err = run_cli(*base, "--method", "ga", "--resume", "--overwrite")
    assert code == 2 and "contradict" in err
    code, _, err = run_cli(*base, "--method", "idk")
    assert code == 0, err
    code, _, err = run_cli(*base, "--method", "po")
    assert code == 2 and "already holds a run" in err
    code, _, err = run_cli(*base, "--method", "po", "--resume")
    assert code == 0 and "already complete" in err
    code, _, err = run_cli(*base, "--method", "po", "--set", "lora.rank=3")
    assert code == 2 and "'lora.rank': unknown setting" in err


def test_method_without_retain_examples_is_refused(tiny_model, demo_data, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(demo_data, data)
    records = json.loads((data / "all_train.json").read_text())
    for r in records:
        for key in [k for k in r if k.startswith("UnharmPair")]:
            del r[key]
    (data / "all_train.json").write_text(json.dumps(records))
    with pytest.raises(UserError, match="method gd needs retain examples"):
        unlearn(str(tiny_model), data, "gd", tmp_path / "gd", config(max_steps=1), progress=False)


def test_two_process_launch_on_cpu(tiny_model, demo_data, tmp_path):
    """`accelerate launch --num_processes 2 --cpu -m safeeraser unlearn`: two ranks (gloo), one adapter."""
    import os
    import subprocess
    import sys

    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--cpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29533",
        "-m",
        "safeeraser",
        "unlearn",
        "--model",
        str(tiny_model),
        "--data",
        str(demo_data),
        "--method",
        "kl+pd",
        "--out",
        str(out),
        "--preset",
        "demo",
        "--max-steps",
        "3",
        "--set",
        "eval_every=3",
        "--set",
        "eval_samples=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "run.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "eval" in row] == [3]  # the probe ran, once, on the main process
    assert "starting 2 processes on CPU" in done.stderr
    assert done.stderr.count("wrote ") == 1  # one report, from the main process
    base = LlavaForConditionalGeneration.from_pretrained(tiny_model)
    assert isinstance(PeftModel.from_pretrained(base, out / "adapter"), PeftModel)
