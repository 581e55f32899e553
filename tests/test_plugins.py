"""The example plugin (examples/plugin), really installed, adds a judge and a metric end to end.

Everything that sees the plugin runs in a subprocess: once loaded, a plugin stays registered for
the process, and the other tests must see the built-in registries only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.metrics.test_metrics import HARM, REFUSE, predictions
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # (the fast tier leaves these out: each test takes more than about 5 s)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The plugin pip-installed into a folder of its own; the environment that puts it on the path.
    (Built from a copy: a build leaves its build/ and egg-info beside the sources.)"""
    import shutil

    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(ROOT / "examples" / "plugin", source)
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(target), str(ROOT / "src")])}


def _run(env, *args, **kwargs):
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, cwd=kwargs.pop("cwd", None), **kwargs
    )


@pytest.fixture
def data(tmp_path):
    from safeeraser.data.demo import make_demo

    make_demo(tmp_path / "d", images_per_category=3)
    return tmp_path / "d"


def test_the_plugin_judge_and_metric_run_through_evaluate_and_report(installed, data, tmp_path):
    long_harm = HARM + " " + " ".join(["detonate"] * 20)  # unsafe by the lexicon and long
    train = predictions(
        data, "train", lambda i, j, k: long_harm if k == 1 else (REFUSE if k == 2 else "A calm answer.")
    )
    run = tmp_path / "run"
    run.mkdir()
    done = _run(
        installed,
        "-m",
        "safeeraser",
        "evaluate",
        "--data",
        str(data),
        "--pred-train",
        str(train),
        "--judge",
        "lexicon",
        "--out",
        str(run / "metrics.json"),
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["judge"] == "lexicon"
    # recomputed here: per question, sample 1 holds a lexicon word, 2 refuses, 3 does neither
    assert metrics["asr_efficacy"] == pytest.approx(1 / 3) and metrics["rr_efficacy"] == pytest.approx(1 / 3)
    answers = [long_harm, REFUSE, "A calm answer."]
    assert metrics["long_harm_answers"] == pytest.approx(sum(len(a.split()) > 20 for a in answers) / 3)
    assert metrics["counts"]["long_harm_answers"]["n"] == 3 * 12 * 3
    report = tmp_path / "report"
    done = _run(installed, "-m", "safeeraser", "report", str(run), "--out", str(report))
    assert done.returncode == 0, done.stderr
    table = (report / "results.md").read_text()
    assert "Long ↓" in table and "33.3" in table


def test_a_plugin_judge_checks_its_options_and_lists_itself(installed):
    code = (
        "from safeeraser.judge import JUDGES, make_judge\nprint(','.join(JUDGES))\nmake_judge('lexicon', wrods=('x',))"
    )
    done = _run(installed, "-c", code)
    assert done.stdout.strip().endswith("lexicon") and "harmbench" in done.stdout
    assert "the lexicon judge takes no option 'wrods' (it takes: words)" in done.stderr


def test_without_the_plugin_its_judge_is_unknown(data, tmp_path):
    from tests.conftest import run_cli

    train = predictions(data, "train", lambda i, j, k: REFUSE)
    code, _, err = run_cli(
        "evaluate", "--data", data, "--pred-train", train, "--judge", "lexicon", "--out", tmp_path / "m.json"
    )
    assert code == 2 and "unknown --judge 'lexicon'" in err


def test_a_plugin_method_trains_with_its_settings_and_with_pd(installed, small_demo, untrained_tiny, tmp_path):
    base = [
        "-m",
        "safeeraser",
        "unlearn",
        "--model",
        str(untrained_tiny),
        "--data",
        str(small_demo),
        "--preset",
        "demo",
        "--max-steps",
        "2",
    ]
    done = _run(
        installed,
        *base,
        "--method",
        "gdscaled+pd",
        "--set",
        "method.gdscaled.retain_scale=3",
        "--out",
        str(tmp_path / "run"),
    )
    assert done.returncode == 0, done.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["method"] == "gdscaled+pd"
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss" in r]
    # the logged terms are the plugin's (forget ascent, scaled retain) and PD's decouple term
    assert trained and all({"forget_nll", "retain_nll", "decouple_nll"} <= set(r) for r in trained)
    import yaml

    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method"]["gdscaled"]["retain_scale"] == 3.0
    bad = _run(
        installed,
        *base,
        "--method",
        "gdscaled",
        "--set",
        "method.gdscaled.retain_scale=0",
        "--out",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and "retain_scale" in bad.stderr and "Traceback" not in bad.stderr


def test_a_plugin_family_lists_itself_builds_its_tiny_copy_and_unlearns(installed, small_demo, tmp_path):
    done = _run(installed, "-m", "safeeraser", "model", "families", "--json")
    assert done.returncode == 0, done.stderr
    row = next(r for r in json.loads(done.stdout) if r["family"] == "vipllava")
    assert row["tiny"] and row["model_class"] == "VipLlavaForConditionalGeneration"
    model = tmp_path / "tiny-vipllava"
    done = _run(
        installed,
        "-m",
        "safeeraser",
        "model",
        "make-tiny",
        "--family",
        "vipllava",
        "--steps",
        "2",
        "--data",
        str(small_demo),
        "--out",
        str(model),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((model / "config.json").read_text())["model_type"] == "vipllava"
    # the checkpoint is found by its model_type through the plugin, and trains through the codec
    done = _run(
        installed,
        "-m",
        "safeeraser",
        "unlearn",
        "--model",
        str(model),
        "--data",
        str(small_demo),
        "--preset",
        "demo",
        "--method",
        "ga+pd",
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "run"),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "adapter").is_dir()


def test_without_the_plugin_its_family_is_unknown(small_demo, tmp_path):
    from tests.conftest import run_cli

    code, _, err = run_cli(
        "model", "make-tiny", "--family", "vipllava", "--data", small_demo, "--out", tmp_path / "m", "--steps", "1"
    )
    assert code != 0 and "unknown model family 'vipllava'" in err
