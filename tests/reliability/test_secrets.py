"""Secrets and files: the API key is written nowhere, only safe formats are loaded, and image
paths stay inside the dataset root unless the user allows otherwise."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import safeeraser
from tests.conftest import run_cli
from tests.judge.test_openai_judge import _vanilla_predictions, endpoint_flags
from tests.reliability.conftest import Cli, error_lines, run_to_end

FLAG_KEY = "sk-flag-7Hq2secretPASSEDasFLAG"
ENV_KEY = "sk-env-Vb91secretFROMenvironment"


@pytest.mark.slow  # five CLI processes in a row (about 20 s)
def test_the_api_key_is_written_nowhere(server, demo_data, tmp_path, judge_cache_home):
    endpoint, url = server()
    pred = _vanilla_predictions(demo_data, tmp_path / "pred_val.json")
    evaluate = [
        "evaluate",
        "--data",
        demo_data,
        "--pred-val",
        pred,
        "--judge",
        "openai",
        *endpoint_flags(url, key=None),
    ]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    run_to_end(
        [*evaluate, "--api-key", FLAG_KEY, "--out", tmp_path / "flag" / "metrics.json"], tmp_path / "log-flag", env
    )
    # (its own cache: over the shared one it would send nothing, and its key would go unused)
    run_to_end(
        [*evaluate, "--cache", tmp_path / "env" / "judge.sqlite", "--out", tmp_path / "env" / "metrics.json"],
        tmp_path / "log-env",
        env | {"OPENAI_API_KEY": ENV_KEY},
    )
    run_to_end(
        ["report", tmp_path / "flag", tmp_path / "env", "--out", tmp_path / "report"], tmp_path / "log-report", env
    )
    # A refused key stops the run with a message that does not repeat it.
    endpoint.faults = [("status", 401, {})]
    refused = Cli(
        [
            *evaluate,
            "--api-key",
            FLAG_KEY,
            "--judge-retries",
            "0",
            "--no-cache",
            "--out",
            tmp_path / "refused" / "metrics.json",
        ],
        tmp_path / "log-refused",
        env,
    )
    assert refused.finish() == 2 and "HTTP 401" in error_lines(refused.output)[0]

    sent = {r["headers"]["authorization"] for r in endpoint.requests}
    assert sent == {f"Bearer {FLAG_KEY}", f"Bearer {ENV_KEY}"}  # both ways of passing the key were used
    written = [p for folder in (tmp_path, judge_cache_home) for p in folder.rglob("*") if p.is_file()]
    assert judge_cache_home / "safeeraser" / "judge.sqlite" in written
    assert {"judge.sqlite", "metrics.json", "metrics.judgments.jsonl", "index.html", "results.json", "log-refused"} <= {
        p.name for p in written
    }
    leaks = [str(p) for p in written for key in (FLAG_KEY, ENV_KEY) if key.encode() in p.read_bytes()]
    assert not leaks


def _calls(tree: ast.AST, module: str, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == module
    ]


def test_the_source_loads_only_safetensors_or_weights_only_pickles():
    sources = {p: ast.parse(p.read_text()) for p in Path(safeeraser.__file__).parent.rglob("*.py")}
    torch_loads = [(p, call) for p, tree in sources.items() for call in _calls(tree, "torch", "load")]
    assert torch_loads  # (the scan finds what it looks for)
    for path, call in torch_loads:
        flags = {k.arg: k.value for k in call.keywords}
        assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, (
            f"{path}:{call.lineno}"
        )
    for path, tree in sources.items():
        unsafe = _calls(tree, "pickle", "load") + _calls(tree, "pickle", "loads") + _calls(tree, "pickle", "Unpickler")
        assert not unsafe, f"{path}: unpickles"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle"):
                assert not {a.name for a in node.names} & {"load", "loads", "Unpickler"}, f"{path}:{node.lineno}"
            if isinstance(node, ast.keyword) and node.arg in (
                "weights_only",
                "use_safetensors",
                "safe_serialization",
                "allow_pickle",
            ):
                expected = node.arg != "allow_pickle"
                assert isinstance(node.value, ast.Constant) and node.value.value is expected, (
                    f"{path}:{node.value.lineno}: {node.arg}"
                )


class _Payload:
    """A pickle that makes a folder when loaded: proof that a loader ran foreign code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_pickled_weights_are_refused_without_running_them(tiny_model, demo_data, tmp_path):
    marker = tmp_path / "payload-ran"
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "model.safetensors").unlink()
    torch.save({"weight": _Payload(marker)}, model / "pytorch_model.bin")
    code, _, err = run_cli(
        "generate", "--model", model, "--data", demo_data, "--split", "val", "--out", tmp_path / "p.json"
    )
    assert code == 2 and f"{model}: could not load the model" in err
    assert not marker.exists()

    adapter = tmp_path / "adapter"  # a PEFT adapter in the pickle format is not even opened
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    torch.save({"weight": _Payload(marker)}, adapter / "adapter_model.bin")
    code, _, err = run_cli(
        "generate",
        "--model",
        tiny_model,
        "--adapter",
        adapter,
        "--data",
        demo_data,
        "--split",
        "val",
        "--out",
        tmp_path / "p.json",
    )
    assert code == 2 and "holds no adapter_config.json + adapter_model.safetensors" in err
    assert not marker.exists() and not (tmp_path / "p.json").exists()


def test_image_paths_cannot_leave_the_dataset_root(tiny_model, demo_data, tmp_path):
    data = tmp_path / "deep" / "er" / "data"  # the root is the JSON's folder and its parent: tmp/deep/er
    shutil.copytree(demo_data, data)
    shutil.copy(data / "dataset" / "Weapon" / "0001.png", tmp_path / "outside.png")
    (data / "dataset" / "link.png").symlink_to(tmp_path / "outside.png")  # inside by name, outside in fact
    records = json.loads((data / "all_train.json").read_text())
    records[0]["image_path"] = "../../../outside.png"
    records[1]["SDImage_path"] = "dataset/link.png"
    (data / "all_train.json").write_text(json.dumps(records))

    commands = {
        "validate": ["data", "validate", data],
        "generate": [
            "generate",
            "--model",
            tiny_model,
            "--data",
            data,
            "--split",
            "train",
            "--out",
            tmp_path / "p.json",
        ],
        "unlearn": [
            "unlearn",
            "--model",
            tiny_model,
            "--data",
            data,
            "--method",
            "ga",
            "--out",
            tmp_path / "run",
            "--preset",
            "demo",
        ],
    }
    for name, args in commands.items():
        code, _, err = run_cli(*args)
        assert (
            code == 2
            and "all_train.json: record 0: field 'image_path': image path '../../../outside.png' points outside the dataset root"
            in err
        ), name
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "run").exists()

    records[0]["image_path"] = "dataset/Weapon/0001.png"
    (data / "all_train.json").write_text(json.dumps(records))
    code, _, err = run_cli("data", "validate", data)
    assert code == 2 and "record 1: field 'SDImage_path': image path 'dataset/link.png' points outside" in err

    code, out, err = run_cli("data", "validate", data, "--allow-outside-root")
    assert code == 0, err
    assert "all_train.json: ok" in out
