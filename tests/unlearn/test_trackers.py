"""`unlearn --report-to`: accelerate's trackers, read back from what they wrote, on the untrained tiny LLaVA."""

import hashlib
import json
import subprocess
import sys

import pytest

from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401

pytestmark = pytest.mark.slow  # (the fast tier leaves these out: each test takes more than about 5 s)

STEPS = 3


def config(**overrides):
    # dropout on: a tracker that drew from torch's random numbers would change the adapter
    return resolve_config(
        preset="demo",
        overrides=[{"max_steps": STEPS, "eval_every": 2, "eval_samples": 2, "lora": {"dropout": 0.05}, **overrides}],
    )


def log_rows(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tensorboard_gets_every_logged_number_and_the_run_is_unchanged(untrained_tiny, small_demo, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    plain, tracked = tmp_path / "plain", tmp_path / "tracked"
    unlearn(str(untrained_tiny), small_demo, "po+pd", plain, config(), progress=False)
    unlearn(str(untrained_tiny), small_demo, "po+pd", tracked, config(report_to=["tensorboard"]), progress=False)

    # the tracker changes no number the run writes
    assert (plain / "log.jsonl").read_bytes() == (tracked / "log.jsonl").read_bytes()
    assert sha256(plain / "adapter" / "adapter_model.safetensors") == sha256(
        tracked / "adapter" / "adapter_model.safetensors"
    )
    assert (plain / "adapter" / "README.md").read_bytes() == (
        tracked / "adapter" / "README.md"
    ).read_bytes()  # the model card too
    assert not (plain / "trackers").exists()
    assert (
        json.loads((plain / "run.json").read_text())["config_hash"]
        == json.loads((tracked / "run.json").read_text())["config_hash"]
    )

    folder = tracked / "trackers" / "tracked"  # the project is named after the run folder
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    rows = log_rows(tracked)
    assert [r["step"] for r in rows] == [1, 2, 3] and "eval" in rows[1]
    expected = {}
    for row in rows:
        for key, value in row.items():
            if key == "eval":
                for name, v in value.items():
                    expected.setdefault(f"eval/{name}", {})[row["step"]] = v
            elif key != "step":
                expected.setdefault(key, {})[row["step"]] = value
    assert {"loss", "lr", "decouple_nll", "eval/forget_rr", "eval/forget_asr", "eval/sarr"} <= set(expected)
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, by_step in expected.items():
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged == pytest.approx(by_step, rel=1e-6), tag  # tensorboard keeps float32

    # the resolved config, flattened, as hyperparameters (in the run's hparams sub-folder)
    sub = next(p for p in folder.iterdir() if p.is_dir() and any(f.name.startswith("events") for f in p.iterdir()))
    hp = EventAccumulator(str(sub))
    hp.Reload()
    start = HParamsPluginData.FromString(
        hp.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(3e-3)
    assert start.hparams["lora.r"].number_value == 8
    assert start.hparams["report_to"].string_value == '["tensorboard"]'
    assert start.hparams["select"].string_value == "null"


def test_wandb_offline_writes_its_run_in_the_run_folder(untrained_tiny, small_demo, tmp_path):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    # in a child process: wandb starts a service process and patches the interpreter it runs in
    code = (
        "import sys\n"
        "from safeeraser.unlearn.config import resolve_config\n"
        "from safeeraser.unlearn.trainer import unlearn\n"
        f"config = resolve_config(preset='demo', overrides=[{{'max_steps': {STEPS}, 'eval_every': 0, 'report_to': ['wandb']}}])\n"
        f"unlearn({str(untrained_tiny)!r}, {str(small_demo)!r}, 'ga', {str(run)!r}, config, progress=False)\n"
    )
    env = {
        **__import__("os").environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    offline = list((run / "trackers" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    records = wandb_records(next(offline[0].glob("run-*.wandb")))  # the run as `wandb sync` would send it
    history = [
        {_key(item): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    logged = [{k: row[k] for k in ("loss", "forget_nll", "lr")} for row in log_rows(run)]
    assert [h["_step"] for h in history] == [1, 2, 3]
    assert [{k: h[k] for k in ("loss", "forget_nll", "lr")} for h in history] == logged  # JSON both ways: exact
    config = {
        _key(item): json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert config["optim.lr"] == 3e-3 and config["lora.r"] == 8 and config["report_to"] == '["wandb"]'


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_records(path):
    """The records of a .wandb file: protobuf messages in 32 KiB blocks, each piece behind a 7-byte
    header (checksum, length, whether it is a whole record or its first, middle or last piece)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, records, pending = path.read_bytes(), 32768, [], b""
    assert data.startswith(b":W&B")
    pos = 7  # the file's own header
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # whole, or the last piece
            records.append(Record.FromString(pending))
            pending = b""
    return records


def test_a_missing_tracker_package_is_one_line_before_training(untrained_tiny, small_demo, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "mlflow" else real(name, *a, **k)
    )
    run = tmp_path / "run"
    code, _, err = run_cli(
        "unlearn",
        "--model",
        untrained_tiny,
        "--data",
        small_demo,
        "--method",
        "ga",
        "--out",
        run,
        "--preset",
        "demo",
        "--max-steps",
        "1",
        "--report-to",
        "tensorboard,mlflow",
    )
    assert (
        code != 0
        and err.strip() == "error: --report-to mlflow: the mlflow package is not installed; pip install mlflow"
    ), err
    assert not (run / "log.jsonl").exists()
    code, _, err = run_cli(
        "unlearn",
        "--model",
        untrained_tiny,
        "--data",
        small_demo,
        "--method",
        "ga",
        "--out",
        run,
        "--report-to",
        "neptune",
    )
    assert code != 0 and len(err.strip().splitlines()) == 1 and "report_to" in err and "tensorboard" in err, err


class _Crash(Exception):
    pass


def _crash(out, name):
    raise _Crash  # after training, before run.json: the checkpoint of step 2 is kept, as after an interruption


def test_a_resume_may_turn_a_tracker_on(untrained_tiny, small_demo, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    with pytest.raises(_Crash):
        unlearn(
            str(untrained_tiny),
            small_demo,
            "ga",
            run,
            config(eval_every=0, checkpoint_every=2, max_steps=4),
            progress=False,
            on_finish=_crash,
        )
    assert (run / "checkpoint" / "state.json").exists()
    resumed = config(eval_every=0, checkpoint_every=2, max_steps=4, report_to=["tensorboard"])
    result = unlearn(str(untrained_tiny), small_demo, "ga", run, resumed, resume=True, progress=False)
    assert result.resumed_from == 2 and result.steps == 4
    assert list((run / "trackers" / "run").glob("events.out.tfevents.*"))
