"""1 process and 2 processes (DDP over gloo, and FSDP) on CPU: the same examples in every
optimizer step, loss traces that agree, one adapter that loads on one process; --select and
--early-stop with 2 processes. The untrained tiny LLaVA on the small demo, a few steps each."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn
from tests.small import small_demo, untrained_tiny  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # (the fast tier leaves these out: each test takes more than about 5 s)

FSDP_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "fsdp.yaml"
DEEPSPEED_CONFIG = str(FSDP_CONFIG.with_name("deepspeed_zero{stage}.yaml"))
FSDP_ON_CPU = Path(__file__).with_name("fsdp_on_cpu.py")
DEEPSPEED_ON_CPU = Path(__file__).with_name("deepspeed_on_cpu.py")
METHOD = "kl+pd"  # three named batches: forget, retain (KL to the original), decouple; the projector is trained
SETTINGS = {"batch_size": 2, "max_steps": 3, "log_examples": True, "eval_every": 0}


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def launch_command(
    launcher: list[str], model, data, out: Path, *extra: str, port: int, flags: tuple[str, ...] = ()
) -> list[str]:
    """`accelerate launch LAUNCHER... unlearn` with 2 processes: grad_accum 1, half of one process's 2."""
    sets = [f"{k}={str(v).lower()}" for k, v in SETTINGS.items()] + ["grad_accum=1", *extra]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *launcher,
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        *(
            ["-m", "safeeraser"]
            if "--cpu" in launcher
            else [str(DEEPSPEED_ON_CPU if "deepspeed" in str(launcher) else FSDP_ON_CPU)]
        ),
        "unlearn",
        "--model",
        str(model),
        "--data",
        str(data),
        "--method",
        METHOD,
        "--out",
        str(out),
        "--preset",
        "demo",
        *flags,
    ]
    for s in sets:
        cmd += ["--set", s]
    return cmd


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def launch(
    launcher: list[str], model, data, out: Path, *extra: str, port: int, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        launch_command(launcher, model, data, out, *extra, port=port, flags=flags),
        capture_output=True,
        text=True,
        timeout=900,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def one_process(untrained_tiny, small_demo, tmp_path_factory) -> Path:  # noqa: F811
    """The reference: 1 process, grad_accum 2 (the same effective batch as 2 processes x 1)."""
    out = tmp_path_factory.mktemp("world1") / "run"
    cfg = resolve_config(preset="demo", overrides=[{**SETTINGS, "grad_accum": 2}])
    unlearn(str(untrained_tiny), small_demo, METHOD, out, cfg, progress=False)
    return out


def assert_same_trace(one: list[dict], two: list[dict]) -> None:
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert a["examples"] == b["examples"], f"step {a['step']}: different examples"
        assert set(a["examples"]) == {"forget", "retain", "decouple"} and all(
            len(v) == 4 for v in a["examples"].values()
        )
        for key in ("loss", "forget_nll", "retain_kl", "decouple_nll"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), f"step {a['step']}: {key}"
    # the run moved: a trace that agrees because nothing trained would prove nothing
    assert one[-1]["retain_kl"] > 0 and one[-1]["forget_nll"] != one[0]["forget_nll"]


def test_two_processes_see_the_same_examples_and_trace_the_same_losses(
    one_process, untrained_tiny, small_demo, tmp_path
):  # noqa: F811
    out = tmp_path / "ddp"
    launch(["--cpu"], untrained_tiny, small_demo, out, port=29541)
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    assert_same_trace(rows(one_process), rows(out))


def adapter_logits(model_dir: Path, data: Path, adapter: Path | None) -> torch.Tensor:
    """Logits of a plain transformers LLaVA with the adapter loaded by plain PEFT, one process
    (adapter None: the model in ``model_dir`` alone, e.g. a merged one)."""
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from safeeraser.data.records import load_split
    from safeeraser.data.views import view_examples
    from safeeraser.models.codec import Codec
    from safeeraser.models.loading import load_processor, model_family

    base = LlavaForConditionalGeneration.from_pretrained(model_dir)
    model = (PeftModel.from_pretrained(base, adapter) if adapter is not None else base).eval()
    codec = Codec(load_processor(model_dir, model_family(model_dir)))
    batch = codec.collate_train(
        [codec.encode_example(e) for e in view_examples(load_split(data, "train"), "forget")[:4]]
    )
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_fsdp_on_two_cpu_processes_saves_an_adapter_that_loads_on_one(
    one_process, untrained_tiny, small_demo, tmp_path
):  # noqa: F811
    """configs/accelerate/fsdp.yaml (FSDP2, full shard) on 2 CPU processes: the probe runs on both
    (each forward gathers the weights), the adapter is gathered to the main process and saved in
    PEFT's format, and on one process it gives the logits of the 1-process run's adapter; --merge
    writes the merged model from the gathered adapter (the main process loads the base again, whole)."""
    out = tmp_path / "fsdp"
    launch(
        ["--config_file", str(FSDP_CONFIG)],
        untrained_tiny,
        small_demo,
        out,
        "eval_every=3",
        "eval_samples=2",
        port=29542,
        flags=("--merge",),
    )
    logged = rows(out)
    assert [r["step"] for r in logged if "eval" in r] == [3]
    assert_same_trace(rows(one_process), logged)
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    reference = load_file(str(one_process / "adapter" / "adapter_model.safetensors"))
    assert saved.keys() == reference.keys() and any("multi_modal_projector" in k for k in saved)
    assert all(saved[k].shape == reference[k].shape for k in saved)  # whole weights, not one process's shard
    ours, theirs = (
        adapter_logits(untrained_tiny, small_demo, out / "adapter"),
        adapter_logits(untrained_tiny, small_demo, one_process / "adapter"),
    )
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()
    assert json.loads((out / "run.json").read_text())["merged"] == str(out / "merged")
    merged = adapter_logits(out / "merged", small_demo, None)
    assert torch.allclose(merged, ours, atol=1e-4, rtol=1e-4), (merged - ours).abs().max()


def _has_deepspeed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


@pytest.mark.skipif(not _has_deepspeed(), reason="deepspeed is not installed (.ci/run installs it)")
@pytest.mark.parametrize("stage, port", [(2, 29546), (3, 29547)])
def test_deepspeed_on_two_cpu_processes_trains_as_one_process_and_saves_a_loadable_adapter(
    stage, port, one_process, untrained_tiny, small_demo, tmp_path
):  # noqa: F811
    """configs/accelerate/deepspeed_zero{2,3}.yaml on 2 CPU processes (DeepSpeed's CPU accelerator,
    gloo): the engine takes the run's micro-batch, its clipping and the loop's step boundaries;
    same examples and loss trace as 1 process, and the adapter (gathered whole by accelerate, under
    ZeRO-3 from partitioned weights) gives the 1-process adapter's logits on one process. (Under
    ZeRO-3 transformers loads the model through DeepSpeed, which draws random numbers: LoRA's
    initial weights are drawn from the run's seed again, else the traces part after step 1.)"""
    from safetensors.torch import load_file

    out = tmp_path / f"zero{stage}"
    done = launch(["--config_file", DEEPSPEED_CONFIG.format(stage=stage)], untrained_tiny, small_demo, out, port=port)
    assert "train data-parallel" not in done.stderr  # DeepSpeed really ran (not accelerate's CPU fallback)
    assert_same_trace(rows(one_process), rows(out))
    saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    reference = load_file(str(one_process / "adapter" / "adapter_model.safetensors"))
    assert saved.keys() == reference.keys() and all(saved[k].shape == reference[k].shape for k in saved)
    ours, theirs = (
        adapter_logits(untrained_tiny, small_demo, out / "adapter"),
        adapter_logits(untrained_tiny, small_demo, one_process / "adapter"),
    )
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def killed_after_first_checkpoint(command: list[str], out: Path, log: Path) -> int:
    """Run ``command`` (a 2-process launch) and kill -9 it and every process it started as soon as
    the run has written a checkpoint; returns the checkpoint's step."""
    import contextlib
    import signal
    import time

    state = out / "checkpoint" / "state.json"  # written last into the checkpoint, which appears in one rename
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=sink, env=ENV)
    deadline = time.monotonic() + 900
    while not state.exists():
        assert proc.poll() is None, (
            f"the launch ended (exit {proc.returncode}) before a checkpoint:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, "no checkpoint within 15 minutes"
        time.sleep(0.005)
    tree = _descendants(
        proc.pid
    )  # the launcher, its agent and the workers, which torch starts in sessions of their own
    for pid in [proc.pid, *tree]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in tree):
        time.sleep(0.01)
    assert not (out / "run.json").exists(), "the run ended before it could be killed"
    return json.loads(state.read_text())["step"]


def test_fsdp_run_killed_resumes_on_two_processes_or_on_one_as_if_never_stopped(
    one_process, untrained_tiny, small_demo, tmp_path
):  # noqa: F811
    """A checkpoint of a 2-process FSDP run (trainable weights and AdamW state gathered whole, by
    parameter name) resumes under FSDP, and on a single process, to the uninterrupted run's losses
    and adapter."""
    from safetensors.torch import load_file

    out = tmp_path / "fsdp"
    args = (["--config_file", str(FSDP_CONFIG)], untrained_tiny, small_demo, out, "checkpoint_every=1")
    at = killed_after_first_checkpoint(launch_command(*args, port=29544), out, tmp_path / "killed.log")
    assert at in (1, 2) and (out / "checkpoint" / "trainable.safetensors").exists()
    on_one = tmp_path / "resumed-on-one"
    shutil.copytree(out, on_one)

    done = launch(*args, port=29545, flags=("--resume",))
    assert f"(resumed at step {at})" in done.stderr
    cfg = resolve_config(preset="demo", overrides=[{**SETTINGS, "grad_accum": 2, "checkpoint_every": 1}])
    assert unlearn(str(untrained_tiny), small_demo, METHOD, on_one, cfg, resume=True, progress=False).resumed_from == at

    reference = load_file(str(one_process / "adapter" / "adapter_model.safetensors"))
    for run in (out, on_one):
        assert_same_trace(rows(one_process), rows(run))
        assert not (run / "checkpoint").exists()
        saved = load_file(str(run / "adapter" / "adapter_model.safetensors"))
        assert saved.keys() == reference.keys()
        for name in reference:
            assert torch.allclose(saved[name], reference[name], rtol=1e-3, atol=1e-6), f"{run.name}: {name}"


def test_select_and_early_stop_with_two_processes(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    """The probe runs on the main process while the other waits; both stop together on early stop
    (else the run would hang and time out); the kept step is the one a recount of log.jsonl picks."""
    out = tmp_path / "select"
    rule = "min forget_nll subject to forget_asr<=1"
    done = launch(
        ["--cpu"],
        untrained_tiny,
        small_demo,
        out,
        "max_steps=8",
        "eval_every=1",
        "eval_samples=2",
        f"select={rule}",
        "early_stop=2",
        port=29543,
    )
    logged = rows(out)
    probed = [r for r in logged if "eval" in r]
    best = min(probed, key=lambda r: (r["forget_nll"], r["step"]))
    selection = json.loads((out / "selection.json").read_text())
    summary = json.loads((out / "run.json").read_text())
    assert selection["step"] == best["step"] == summary["selected"]["step"]
    after = [r["step"] for r in probed if r["step"] > best["step"]]
    if summary["stopped"]:
        assert "early stop" in summary["stopped"] and len(after) == 2 and summary["steps"] == after[-1] < 8
    else:
        assert summary["steps"] == 8 and len(after) < 2
    assert summary["processes"] == 2 and done.stderr.count("wrote ") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's refusals")
@pytest.mark.parametrize(
    "setting, message",
    [
        ("load_in_4bit=true", "load_in_4bit (QLoRA) needs a CUDA GPU"),
        ("mixed_precision=fp16", "mixed_precision=fp16 needs a GPU"),
    ],
)
def test_gpu_only_settings_are_one_line_errors_on_cpu(setting, message, untrained_tiny, small_demo, tmp_path):  # noqa: F811
    from tests.conftest import run_cli

    code, _, err = run_cli(
        "unlearn",
        "--model",
        untrained_tiny,
        "--data",
        small_demo,
        "--method",
        "ga",
        "--out",
        tmp_path / "run",
        "--set",
        setting,
    )
    assert code != 0 and err.strip().splitlines() == [f"error: {err.strip()[7:]}"] and message in err
    assert not (tmp_path / "run").exists()
