"""Bad input to every command: exit code 2, one line on stderr that names what is wrong and
where, no traceback, and nothing written or changed on disk.

Each case prepares its input in a fresh folder, runs one command, and compares a snapshot of
the whole folder before and after: no output may appear, half-written or not, and an earlier
output or input may not change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.judge.test_openai_judge import _vanilla_predictions
from tests.reliability.conftest import snapshot


class Env:
    """A case's folder, with writable copies of the demo data and predictions made on demand."""

    def __init__(self, tmp: Path, demo_data: Path, request, monkeypatch):
        self.tmp, self.demo_data, self._request, self.monkeypatch = tmp, demo_data, request, monkeypatch
        self.used_model = False

    @property
    def model(self) -> Path:
        # The tiny model takes minutes to train: only the cases in NEEDS_MODEL (slow) may ask for it.
        if self._request.node.get_closest_marker("slow") is None:
            pytest.fail("this case uses the tiny model: add it to NEEDS_MODEL")
        self.used_model = True
        return self._request.getfixturevalue("tiny_model")

    @property
    def data(self) -> Path:
        """A writable copy of the demo dataset."""
        copy = self.tmp / "data"
        if not copy.exists():
            shutil.copytree(self.demo_data, copy)
        return copy

    @property
    def pred_val(self) -> Path:
        path = self.tmp / "pred_val.json"
        return path if path.exists() else _vanilla_predictions(self.demo_data, path)

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def edit(self, path: Path, change) -> Path:
        """Apply ``change`` to the records of a JSON file."""
        records = json.loads(path.read_text())
        change(records)
        path.write_text(json.dumps(records))
        return path

    def cut(self, path: Path) -> Path:
        """Cut a file in half, as a crash or a full disk would."""
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    def data_with(self, name: str, content: str) -> Path:
        """The copied dataset with one of its files replaced."""
        (self.data / name).write_text(content)
        return self.data

    def folder_with(self, name: str) -> Path:
        """A folder that is not empty, and not ours."""
        return self.write(f"{name}/notes.txt", "mine").parent

    def unlearn(self, *args, model=None, data=None, out=None):
        return [
            "unlearn",
            "--model",
            model or self.model,
            "--data",
            data or self.demo_data,
            "--method",
            "ga",
            "--out",
            out or self.tmp / "run",
            *args,
        ]

    def generate(self, *args, model=None, data=None, out=None):
        return [
            "generate",
            "--model",
            model or self.model,
            "--data",
            data or self.demo_data,
            "--split",
            "val",
            "--out",
            out or self.tmp / "p.json",
            *args,
        ]

    def evaluate(self, *args, out=None):
        return ["evaluate", "--data", self.demo_data, "--out", out or self.tmp / "m" / "metrics.json", *args]


def _resume_from_a_broken_checkpoint(e: Env) -> list:
    e.write("run/checkpoint/state.json", '{"step": 2}')
    e.write("run/checkpoint/adapter.safetensors", "not safetensors")
    e.write("run/log.jsonl", '{"step": 1, "loss": 1.0}\n')
    return e.unlearn("--preset", "demo", "--resume")


def _resume_a_finished_run_with_a_damaged_summary(e: Env) -> list:
    e.write("run/run.json", '{"steps": 3, "total_')
    e.write("run/log.jsonl", '{"step": 1, "loss": 1.0}\n')
    return e.unlearn("--preset", "demo", "--resume")


def _resume_with_other_settings(e: Env) -> list:
    e.write("p.json.partial.jsonl", '{"header": {"model": "other"}}\n{"batch": "s:r0/p0:1", "answers": {}}\n')
    return e.generate()


def _damaged_adapter(e: Env) -> list:
    e.write("adapter/adapter_config.json", "{}")
    e.write("adapter/adapter_model.safetensors", "junk")
    return e.generate("--adapter", e.tmp / "adapter")


def _general_split_without_its_file(e: Env) -> list:
    (e.data / "general_vqa.json").unlink()
    return e.generate("--split", "general", data=e.data)


def _truncated_predictions_beside_earlier_metrics(e: Env) -> list:
    e.write("m/metrics.json", '{"earlier": "metrics"}')
    lines = "".join(json.dumps(r) + "\n" for r in json.loads(e.pred_val.read_text()))
    return e.evaluate("--pred-val", e.write("pred.jsonl", lines[:30_000]))


def _no_api_key(e: Env) -> list:
    e.monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return e.evaluate("--pred-val", e.pred_val, "--judge", "openai")


def _report(e: Env, metrics: str, out: Path) -> list:
    e.write("run/metrics.json", metrics)
    return ["report", e.tmp / "run", "--out", out]


# (case, its command given a prepared Env, what the one error line must contain; {tmp} is the case's folder)
CASES = [
    # data make-demo
    (
        "make-demo: zero images per category",
        lambda e: ["data", "make-demo", "--out", e.tmp / "demo", "--images-per-category", "0"],
        "--images-per-category must be at least 3 (got 0)",
    ),
    (
        "make-demo: negative images per category",
        lambda e: ["data", "make-demo", "--out", e.tmp / "demo", "--images-per-category", "-4"],
        "--images-per-category must be at least 3 (got -4)",
    ),
    (
        "make-demo: --out is a file",
        lambda e: ["data", "make-demo", "--out", e.write("file.txt", "x")],
        "{tmp}/file.txt: exists and is not a folder",
    ),
    (
        "make-demo: --out is someone else's folder",
        lambda e: ["data", "make-demo", "--out", e.folder_with("mine")],
        "{tmp}/mine: folder exists and is not empty",
    ),
    # data validate
    (
        "validate: truncated JSON array",
        lambda e: ["data", "validate", e.cut(e.data / "all_train.json")],
        "{tmp}/data/all_train.json: invalid JSON at line 896 column 23: Unterminated string",
    ),
    (
        "validate: truncated image",
        lambda e: ["data", "validate", e.cut(e.data / "dataset/Weapon/0002.png").parents[2]],
        "all_train.json: record 9: field 'image_path': not a readable image: {tmp}/data/dataset/Weapon/0002.png",
    ),
    (
        "validate: nesting too deep",
        lambda e: ["data", "validate", e.write("deep/all_val.json", "[" * 100_000 + "]" * 100_000)],
        "{tmp}/deep/all_val.json: unreadable JSON (maximum recursion depth exceeded",
    ),
    (
        "validate: NUL in an image path",
        lambda e: [
            "data",
            "validate",
            e.edit(e.data / "all_val.json", lambda rs: rs[2].update(image_path="dataset/Weapon/0\x001.png")),
        ],
        "all_val.json: record 2: field 'image_path': unusable image path",
    ),
    (
        "validate: lone surrogate",
        lambda e: [
            "data",
            "validate",
            e.edit(e.data / "all_val.json", lambda rs: rs[0]["unsafe_pairs"][0].update(question="\ud800?")),
        ],
        "all_val.json: record 0: holds a lone surrogate escape",
    ),
    (
        "validate: not UTF-8",
        lambda e: [
            "data",
            "validate",
            e.write("latin/all_train.json", '[{"image_path": "caf\xe9"}]'.encode("latin-1")),
        ],
        "{tmp}/latin/all_train.json: not UTF-8 text (byte 20)",
    ),
    # data stats
    (
        "stats: empty split",
        lambda e: ["data", "stats", e.write("empty/all_train.json", "[]").parent],
        "{tmp}/empty/all_train.json: no records",
    ),
    (
        "stats: a record that is a list",
        lambda e: [
            "data",
            "stats",
            e.write("one.jsonl", json.dumps(json.loads((e.demo_data / "all_val.json").read_text())[0]) + "\n[1, 2]\n"),
        ],
        "one.jsonl: record 1: expected a JSON object, got list",
    ),
    (
        "stats: a field missing",
        lambda e: ["data", "stats", e.edit(e.data / "all_train.json", lambda rs: rs[5].pop("SDImage_path")).parent],
        "all_train.json: record 5: field 'SDImage_path': missing",
    ),
    (
        "stats: a folder without split files",
        lambda e: ["data", "stats", e.folder_with("nothing")],
        "{tmp}/nothing: no all_train.json or all_val.json in this folder",
    ),
    # model make-tiny
    (
        "make-tiny: zero steps",
        lambda e: ["model", "make-tiny", "--data", e.demo_data, "--out", e.tmp / "m", "--steps", "0"],
        "--steps must be positive (got 0)",
    ),
    (
        "make-tiny: unknown size",
        lambda e: ["model", "make-tiny", "--data", e.demo_data, "--out", e.tmp / "m", "--size", "huge"],
        "unknown --size 'huge': expected one of tiny, small",
    ),
    (
        "make-tiny: missing dataset",
        lambda e: ["model", "make-tiny", "--data", e.tmp / "nodata", "--out", e.tmp / "m"],
        "{tmp}/nodata: dataset path not found",
    ),
    (
        "make-tiny: --out is someone else's folder",
        lambda e: ["model", "make-tiny", "--data", e.demo_data, "--out", e.folder_with("mine")],
        "{tmp}/mine: folder exists and is not empty",
    ),
    # unlearn
    (
        "unlearn: unknown method",
        lambda e: e.unlearn("--method", "satimp"),
        "unknown method 'satimp': expected one of ga, ga+pd",
    ),
    ("unlearn: zero steps", lambda e: e.unlearn("--max-steps", "0"), "--max-steps must be positive (got 0)"),
    ("unlearn: negative learning rate", lambda e: e.unlearn("--lr", "-0.001"), "--lr must be positive (got -0.001)"),
    (
        "unlearn: --resume with --overwrite",
        lambda e: e.unlearn("--resume", "--overwrite"),
        "--resume and --overwrite contradict each other",
    ),
    (
        "unlearn: unknown preset",
        lambda e: e.unlearn("--preset", "huge"),
        "unknown --preset 'huge': expected one of demo",
    ),
    (
        "unlearn: a bad --set beside a good --config",
        lambda e: e.unlearn("--config", e.write("good.yaml", "batch_size: 4\n"), "--set", "batch_size=0"),
        "command line: 'batch_size': input should be greater than 0",
    ),
    (
        "unlearn: malformed YAML",
        lambda e: e.unlearn("--config", e.write("bad.yaml", "optim: [lr\n")),
        "{tmp}/bad.yaml: invalid YAML at line",
    ),
    (
        "unlearn: missing option",
        lambda e: ["unlearn", "--model", e.tmp / "m", "--data", e.demo_data, "--out", e.tmp / "run"],
        "Missing option '--method'",
    ),
    (
        "unlearn: a model folder without config.json",
        lambda e: e.unlearn(model=e.folder_with("nomodel")),
        "{tmp}/nomodel: not a model folder (no config.json)",
    ),
    (
        "unlearn: empty forget split",
        lambda e: e.unlearn(data=e.data_with("all_train.json", "[]")),
        "{tmp}/data/all_train.json: no records",
    ),
    (
        "unlearn: an image that is not an image",
        lambda e: e.unlearn(data=e.data_with("dataset/Violence/0001.png", "text")),
        "all_train.json: record 0: field 'image_path': not a readable image: {tmp}/data/dataset/Violence/0001.png",
    ),
    (
        "unlearn: unreadable checkpoint",
        _resume_from_a_broken_checkpoint,
        "{tmp}/run/checkpoint: unreadable checkpoint (SafetensorError); remove it or pass --overwrite",
    ),
    (
        "unlearn: damaged summary of a finished run",
        _resume_a_finished_run_with_a_damaged_summary,
        "{tmp}/run/run.json: unreadable run summary of a finished run; pass --overwrite to train again",
    ),
    (
        "unlearn: --out holds other things",
        lambda e: e.unlearn(out=e.folder_with("stuff")),
        "{tmp}/stuff: folder exists and is not a run folder",
    ),
    # generate
    ("generate: zero batch size", lambda e: e.generate("--batch-size", "0"), "--batch-size must be positive (got 0)"),
    (
        "generate: negative max new tokens",
        lambda e: e.generate("--max-new-tokens", "-1"),
        "--max-new-tokens must be positive (got -1)",
    ),
    (
        "generate: negative temperature",
        lambda e: e.generate("--temperature", "-1"),
        "--temperature must be positive (got -1.0)",
    ),
    ("generate: not a number", lambda e: e.generate("--batch-size", "many"), "Invalid value for '--batch-size'"),
    (
        "generate: general split without its file",
        _general_split_without_its_file,
        "{tmp}/data/general_vqa.json: file not found",
    ),
    (
        "generate: adapter folder without an adapter",
        lambda e: e.generate("--adapter", e.folder_with("run-empty")),
        "adapter not found: {tmp}/run-empty holds no adapter_config.json + adapter_model.safetensors",
    ),
    ("generate: damaged adapter", _damaged_adapter, "{tmp}/adapter: could not load the adapter"),
    (
        "generate: a model folder without config.json",
        lambda e: e.generate(model=e.folder_with("nomodel")),
        "{tmp}/nomodel: not a model folder (no config.json)",
    ),
    (
        "generate: --out is a folder",
        lambda e: e.generate(out=e.folder_with("outdir")),
        "{tmp}/outdir: is a folder; --out names the file to write",
    ),
    (
        "generate: partial file of other settings",
        _resume_with_other_settings,
        "{tmp}/p.json.partial.jsonl: left by a run with other settings, model or data",
    ),
    (
        "generate: a harmless image that is not an image",
        lambda e: e.generate(data=e.data_with("dataset/sd/Weapon/0012.png", "text")),
        "all_val.json: record 7: field 'SDImage_path': not a readable image: {tmp}/data/dataset/sd/Weapon/0012.png",
    ),
    # evaluate
    (
        "evaluate: truncated JSON Lines predictions",
        _truncated_predictions_beside_earlier_metrics,
        "{tmp}/pred.jsonl: line 10: invalid JSON Lines record",
    ),
    (
        "evaluate: predictions of the other split",
        lambda e: e.evaluate("--pred-train", e.pred_val),
        "{tmp}/pred_val.json: 24 records but all_train.json has 48; is this the train split's prediction file?",
    ),
    (
        "evaluate: wrong split, with the openai judge",
        lambda e: e.evaluate("--pred-train", e.pred_val, "--judge", "openai", "--api-key", "k"),
        "{tmp}/pred_val.json: 24 records but all_train.json has 48",
    ),  # (and no judge cache is left behind)
    (
        "evaluate: the dataset given as predictions",
        lambda e: e.evaluate("--pred-val", e.demo_data / "all_val.json"),
        "all_val.json: record 0: field 'unsafe_pairs[0].model_response1': missing (not a prediction file?)",
    ),
    (
        "evaluate: predictions asking other questions",
        lambda e: e.evaluate(
            "--pred-val", e.edit(e.pred_val, lambda rs: rs[3]["unsafe_pairs"][1].update(question="Why?"))
        ),
        "{tmp}/pred_val.json: record 3: field 'unsafe_pairs' asks other questions than all_val.json",
    ),
    (
        "evaluate: unknown judge",
        lambda e: e.evaluate("--pred-val", e.pred_val, "--judge", "gpt4"),
        "unknown --judge 'gpt4': expected one of keyword, openai, hf, llamaguard, wildguard, harmbench",
    ),
    (
        "evaluate: zero concurrency",
        lambda e: e.evaluate("--pred-val", e.pred_val, "--judge", "openai", "--concurrency", "0"),
        "--concurrency must be positive (got 0)",
    ),
    (
        "evaluate: zero judge timeout",
        lambda e: e.evaluate("--pred-val", e.pred_val, "--judge", "openai", "--judge-timeout", "0"),
        "--judge-timeout must be positive (got 0.0)",
    ),
    (
        "evaluate: an endpoint for the offline judge",
        lambda e: e.evaluate("--pred-val", e.pred_val, "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k"),
        "--base-url, --api-key: not used by --judge keyword",
    ),
    ("evaluate: no API key", _no_api_key, "openai judge: no API key: pass --api-key or set OPENAI_API_KEY"),
    (
        "evaluate: a judge cache that is not a database",
        lambda e: e.evaluate(
            "--pred-val",
            e.pred_val,
            "--judge",
            "openai",
            "--api-key",
            "k",
            "--cache",
            e.write("notdb", "hello " * 1000),
        ),
        "{tmp}/notdb: cannot use as judge cache",
    ),
    (
        "evaluate: nothing to evaluate",
        lambda e: e.evaluate(),
        "nothing to evaluate: pass --pred-train, --pred-val and/or --pred-general",
    ),
    (
        "evaluate: --out is a folder",
        lambda e: e.evaluate("--pred-val", e.pred_val, out=e.folder_with("m")),
        "{tmp}/m: is a folder; --out names the file to write",
    ),
    # report
    (
        "report: truncated metrics, earlier report kept",
        lambda e: _report(e, '{"sarr": 0.3,', e.write("report/results.md", "earlier").parent),
        "{tmp}/run/metrics.json: invalid JSON at line 1 column 14",
    ),
    (
        "report: missing run folder",
        lambda e: ["report", e.tmp / "nope", "--out", e.tmp / "report"],
        "{tmp}/nope: run folder not found",
    ),
    (
        "report: --out is a file",
        lambda e: _report(e, '{"sarr": 0.5}', e.write("file.txt", "x")),
        "{tmp}/file.txt: exists and is not a folder",
    ),
    # demo
    (
        "demo: unknown method",
        lambda e: ["demo", "--out", e.tmp / "demo", "--methods", "po,satimp"],
        "unknown method 'satimp'",
    ),
    (
        "demo: zero images per category",
        lambda e: ["demo", "--out", e.tmp / "demo", "--images-per-category", "0"],
        "--images-per-category must be at least 3 (got 0)",
    ),
    (
        "demo: --fresh on a folder that is not a demo",
        lambda e: ["demo", "--out", e.folder_with("mine"), "--fresh"],
        "{tmp}/mine: --fresh would delete a folder that is not a demo folder",
    ),
    (
        "demo: --out is a file",
        lambda e: ["demo", "--out", e.write("file.txt", "x")],
        "{tmp}/file.txt: exists and is not a folder",
    ),
]


# The cases whose command names the tiny model (trained once per session, in minutes): slow.
NEEDS_MODEL = {
    name
    for name, _, _ in CASES
    if name.split(":")[0] in ("unlearn", "generate")
    and name
    not in (
        "unlearn: missing option",
        "unlearn: a model folder without config.json",
        "generate: a model folder without config.json",
    )
}


@pytest.mark.parametrize(
    "case, command, expected",
    [pytest.param(*c, id=c[0], marks=[pytest.mark.slow] if c[0] in NEEDS_MODEL else []) for c in CASES],
)
def test_bad_input(case, command, expected, tmp_path, demo_data, request, monkeypatch):
    env = Env(tmp_path / "case", demo_data, request, monkeypatch)
    env.tmp.mkdir()
    args = command(env)
    assert env.used_model == (case in NEEDS_MODEL), "NEEDS_MODEL is wrong about this case"
    before = snapshot(env.tmp)
    code, _, err = run_cli(*args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected.format(tmp=env.tmp) in err
    assert snapshot(env.tmp) == before  # nothing written, nothing changed
