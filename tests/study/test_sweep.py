"""`safeeraser sweep` on the small demo with the untrained tiny model and two unlearning steps:
2 seeds × {po, po+pd, simnpo, simnpo+pd}. The study is first run at seed 0 only, then at seeds
0 and 1 into the same folder (a resume: the seed-0 runs must be kept, not redone); seed 1 is run
again with --jobs 2 into a fresh folder (same answers, adapters and numbers). The across-seed numbers are recomputed here
from the runs' metrics.json files with the standard library.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from safeeraser.metrics.evaluate import METRIC_KEYS
from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # (the fast tier leaves these out: each test takes more than about 5 s)

METHODS = ["po", "po+pd", "simnpo", "simnpo+pd"]
SEEDS = [0, 1]
T_975_DF1 = 12.706204736174705  # Student's t, 0.975 quantile, 1 degree of freedom (two seeds)
# files a finished run keeps; a kept run must not have rewritten any of them
KEPT_FILES = ("metrics.json", "predictions_val.json", "adapter/adapter_model.safetensors", "log.jsonl")


def write_study(path: Path, data: Path, model: Path, seeds: list[int]) -> Path:
    study = {
        "data": str(data),
        "model": str(model),
        "preset": "demo",
        "settings": {"max_steps": 2, "eval_every": 0, "batch_size": 4, "optim.lr": 1.0e-3},
        "methods": METHODS,
        "seeds": seeds,
        "generation": {"protocol": "published", "max_new_tokens": 3, "num_samples": 2, "batch_size": 64},
        "evaluation": {"empty_answers": "released"},
    }
    path.write_text(yaml.safe_dump(study))
    return path


def sweep(*args) -> tuple[int, str, str]:
    code, out, err = run_cli("sweep", *args)
    assert code == 0, err
    return code, out, err


def mtimes(out: Path, seed: int) -> dict[str, int]:
    return {f"{m}/{f}": (out / "runs" / m / f"seed{seed}" / f).stat().st_mtime_ns for m in METHODS for f in KEPT_FILES}


@pytest.fixture(scope="module")
def study(small_demo, untrained_tiny, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("sweep")
    out = root / "study"
    sweep("--config", write_study(root / "seed0.yaml", small_demo, untrained_tiny, [0]), "--out", out)
    before = mtimes(out, 0)
    _, table, err = sweep("--config", write_study(root / "study.yaml", small_demo, untrained_tiny, SEEDS), "--out", out)
    return {
        "root": root,
        "out": out,
        "seed0_mtimes": before,
        "table": table,
        "err": err,
        "data": small_demo,
        "model": untrained_tiny,
    }


def test_every_run_finishes_with_its_files(study):
    out = study["out"]
    for m in METHODS:
        for s in SEEDS:
            run = out / "runs" / m / f"seed{s}"
            for f in (
                "metrics.json",
                "metrics.judgments.jsonl",
                "predictions_train.json",
                "predictions_val.json",
                "predictions_general.json",
            ):
                assert (run / f).is_file(), run / f
            assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
            assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == s
            assert (
                json.loads((run / "metrics.json").read_text())["empty_answers"] == "released"
            )  # the study's evaluation section
            assert (
                json.loads((run / "run.json").read_text())["preset"] == "demo"
            )  # and its preset, as unlearn --preset records it
    for f in ("results.json", "results.md", "study.json", "study.md", "pareto.png", "index.html"):
        assert (out / f).is_file(), f


def test_finished_runs_are_kept_on_resume(study):
    assert mtimes(study["out"], 0) == study["seed0_mtimes"]
    assert "8 runs, 4 made now, 4 already finished" in study["err"]


def test_across_seed_numbers_equal_a_recount_of_the_runs(study):
    out = study["out"]
    cells = {c["cell"]: c for c in json.loads((out / "study.json").read_text())}
    assert sorted(cells) == sorted(METHODS)
    for m in METHODS:
        per_seed = [json.loads((out / "runs" / m / f"seed{s}" / "metrics.json").read_text()) for s in SEEDS]
        assert cells[m]["seeds"] == SEEDS
        for key in ("asr_efficacy", "rr_efficacy", "asr_generality", "rr_generality", "sarr", "rouge_l", "specificity"):
            values = [p[key] for p in per_seed]
            got = cells[m]["metrics"][key]
            mean, std = statistics.fmean(values), statistics.stdev(values)
            half = T_975_DF1 * std / math.sqrt(2)
            assert got["n"] == 2 and got["values"] == values
            assert got["mean"] == pytest.approx(mean, abs=1e-12) and got["std"] == pytest.approx(std, abs=1e-12)
            assert got["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-9)


def test_the_report_shows_the_spread(study):
    out = study["out"]
    cells = json.loads((out / "study.json").read_text())
    page = (out / "index.html").read_text()
    md = (out / "study.md").read_text()
    assert "<h2>Across seeds</h2>" in page and "data:image/png;base64," in page
    for cell in cells:
        stats = cell["metrics"]["rouge_l"]
        shown = f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f} [{100 * stats['ci95'][0]:.1f}, {100 * stats['ci95'][1]:.1f}]"
        row = next(
            line
            for line in md.splitlines()
            if line.startswith(f"| {cell['cell']} ") or line.startswith(f"| {cell['cell']} *")
        )
        assert shown in row and shown in page
    assert md in study["table"]  # the command prints the across-seed table
    # every per-run row is in results.json, named by its folder
    assert sorted(r["label"] for r in json.loads((out / "results.json").read_text())) == sorted(
        f"{m}/seed{s}" for m in METHODS for s in SEEDS
    )


@pytest.fixture(scope="module")
def jobs2(study):
    """seed 1's four runs again, two at a time, into a fresh folder."""
    out2 = study["root"] / "jobs2"
    # each worker gets its own device (CUDA_VISIBLE_DEVICES; on this CPU-only machine nothing else changes)
    _, out, err = sweep(
        "--config",
        write_study(study["root"] / "seed1.yaml", study["data"], study["model"], [1]),
        "--out",
        out2,
        "--jobs",
        "2",
        "--devices",
        "0,1",
    )
    return {"out": out2, "stdout": out, "err": err}


def test_two_jobs_give_the_same_results(study, jobs2):
    # the same answers, adapters and metrics as the --jobs 1 runs of seed 1
    out2, out, err = jobs2["out"], jobs2["stdout"], jobs2["err"]
    assert "4 runs, 4 made now, 0 already finished" in err
    done = [line for line in (out + err).splitlines() if " done: " in line]
    assert len(done) == 4 and {line.rsplit("device ", 1)[1].rstrip(")") for line in done} == {"0", "1"}, done
    for m in METHODS:
        a, b = (o / "runs" / m / "seed1" for o in (study["out"], out2))
        for f in (
            "predictions_train.json",
            "predictions_val.json",
            "predictions_general.json",
            "adapter/adapter_model.safetensors",
        ):
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{m}/seed1/{f}"
        x, y = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
        assert {k: x[k] for k in METRIC_KEYS} == {k: y[k] for k in METRIC_KEYS}


def test_a_half_finished_run_resumes_and_the_rest_are_kept(study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(study["out"], out)
    half = out / "runs" / "simnpo+pd" / "seed1"
    adapter_time = (half / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    expected = (half / "predictions_general.json").read_bytes()
    (half / "predictions_general.json").unlink()
    (half / "metrics.json").unlink()
    others = {m: (out / "runs" / m / "seed1" / "metrics.json").stat().st_mtime_ns for m in METHODS if m != "simnpo+pd"}
    _, _, err = sweep("--config", study["root"] / "study.yaml", "--out", out)
    assert "8 runs, 1 made now, 7 already finished" in err
    assert (
        half / "adapter" / "adapter_model.safetensors"
    ).stat().st_mtime_ns == adapter_time  # unlearn found it complete
    assert (half / "predictions_general.json").read_bytes() == expected
    assert (half / "metrics.json").is_file()
    assert {m: (out / "runs" / m / "seed1" / "metrics.json").stat().st_mtime_ns for m in others} == others


def test_a_changed_study_does_not_reuse_runs(study, tmp_path):
    changed = yaml.safe_load((study["root"] / "study.yaml").read_text())
    changed["settings"]["max_steps"] = 3
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    code, _, err = run_cli("sweep", "--config", path, "--out", study["out"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "made for another study" in err and "max_steps: 2 then, 3 now" in err


def test_dry_run_lists_the_runs(study):
    code, out, err = run_cli("sweep", "--config", study["root"] / "study.yaml", "--out", study["out"], "--dry-run")
    assert code == 0, err
    assert sorted(out.split()) == sorted(["finished"] * 8 + [f"{m}/seed{s}" for m in METHODS for s in SEEDS])
    assert "8 runs (4 cells x 2 seeds)" in err


def test_workers_are_spread_over_the_devices():
    from safeeraser.errors import UserError
    from safeeraser.study.run import worker_devices

    assert worker_devices(4, ["0", "1"]) == ["0", "1", "0", "1"]  # more workers than GPUs: two each
    assert worker_devices(2, ["4", "5", "6"]) == ["4", "5"]
    assert worker_devices(1, None) is None
    with pytest.raises(UserError, match="pass --jobs N too"):
        worker_devices(1, ["0"])
    with pytest.raises(UserError, match="names no device"):
        worker_devices(2, [])
    if not torch.cuda.is_available():
        assert worker_devices(2, None) is None  # no GPU and none named: the workers' environment is left alone


@pytest.mark.slow
def test_a_killed_submitit_sweep_resumes_to_the_study_local_processes_make(study, jobs2, tmp_path):
    """seed 1's study sent as submitit jobs (the path Slurm takes, run as local processes), killed
    with its running job once a run has finished, then run again: the finished runs are kept and
    never sent again, the others are sent again, and every run's answers, adapter and metrics, and
    study.md, equal those of the same study run as local processes."""
    pytest.importorskip("submitit")
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    config = study["root"] / "seed1.yaml"
    cmd = [
        sys.executable,
        "-m",
        "safeeraser",
        "sweep",
        "--config",
        str(config),
        "--out",
        str(out),
        "--launcher",
        "submitit-local",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        start_new_session=True,
    )
    first = out / "runs" / METHODS[0] / "seed1" / "metrics.json"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.exists(), proc.stderr.read() if proc.poll() is not None else "no run finished in time"
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the job it runs, as a lost login session would
    proc.wait()
    kept = {
        m: (out / "runs" / m / "seed1" / "metrics.json").stat().st_mtime_ns
        for m in METHODS
        if (out / "runs" / m / "seed1" / "metrics.json").exists()
    }
    assert 1 <= len(kept) < len(METHODS)
    _, stdout, err = sweep("--config", config, "--out", out, "--launcher", "submitit-local", "--jobs", "2")
    assert f"4 runs, {4 - len(kept)} made now, {len(kept)} already finished" in err
    assert len([line for line in (stdout + err).splitlines() if "sent job " in line]) == 4 - len(kept)
    assert {
        m: (out / "runs" / m / "seed1" / "metrics.json").stat().st_mtime_ns for m in kept
    } == kept  # never sent again
    ledger = json.loads((out / "submitit" / "jobs.json").read_text())
    assert len(ledger) == 4 and all((out / "submitit" / job_id).is_dir() for job_id in ledger.values())
    for m in METHODS:
        a, b = (o / "runs" / m / "seed1" for o in (study["out"], out))
        for f in (
            "predictions_train.json",
            "predictions_val.json",
            "predictions_general.json",
            "adapter/adapter_model.safetensors",
        ):
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{m}/seed1/{f}"
        x, y = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
        assert {k: x[k] for k in METRIC_KEYS} == {k: y[k] for k in METRIC_KEYS}, m
    assert (jobs2["out"] / "study.md").read_bytes() == (out / "study.md").read_bytes()


def test_launcher_mistakes_are_one_line(study, tmp_path):
    code, _, err = run_cli(
        "sweep", "--config", study["root"] / "study.yaml", "--out", tmp_path / "o", "--launcher", "pbs"
    )
    assert code == 2 and "unknown --launcher 'pbs'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        "sweep",
        "--config",
        study["root"] / "study.yaml",
        "--out",
        tmp_path / "o",
        "--launcher",
        "submitit-local",
        "--jobs",
        "2",
        "--devices",
        "0,1",
    )
    assert code == 2 and "--devices" in err and len(err.strip().splitlines()) == 1
