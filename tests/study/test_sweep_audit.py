"""`sweep` with an audit section: each run audited into its audit/ folder after its evaluation, the
study's page with a Robustness section by run, and a second sweep that keeps every finished audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # (the fast tier leaves these out: each test takes more than about 5 s)

ATTACKS = ["one-word", "mia"]


def write_study(path: Path, data: Path, model: Path, attacks) -> Path:
    study = {
        "data": str(data),
        "model": str(model),
        "preset": "demo",
        "settings": {"max_steps": 1, "eval_every": 0, "batch_size": 4},
        "methods": ["vanilla", "po+pd"],
        "seeds": [0],
        "generation": {"protocol": "published", "max_new_tokens": 3, "num_samples": 2, "batch_size": 64},
        "audit": {"attacks": attacks},
    }
    path.write_text(yaml.safe_dump(study))
    return path


def test_sweep_audits_each_run_and_keeps_finished_audits(small_demo, untrained_tiny, tmp_path):  # noqa: F811
    config = write_study(tmp_path / "study.yaml", small_demo, untrained_tiny, ATTACKS)
    out = tmp_path / "out"
    code, _, err = run_cli("sweep", "--config", config, "--out", out)
    assert code == 0, err
    for run in ("vanilla/seed0", "po+pd/seed0"):
        audit = json.loads((out / "runs" / run / "audit" / "audit.json").read_text())
        assert audit["attacks"] == ATTACKS
        assert all(audit["results"][a]["status"] == "done" for a in ATTACKS)
        # the audit generated under the study's protocol, with the study's judge
        assert audit["protocol"]["max_new_tokens"] == 3 and audit["request"]["judge"] == "keyword"
    # po+pd's audit read the run's adapter; vanilla's had none
    assert json.loads((out / "runs/po+pd/seed0/audit/audit.json").read_text())["request"]["adapter"]
    assert not json.loads((out / "runs/vanilla/seed0/audit/audit.json").read_text())["request"]["adapter"]
    page = (out / "index.html").read_text()
    assert "Robustness" in page and "po+pd/seed0" in page
    stamp = (out / "runs/po+pd/seed0/audit/audit.json").stat().st_mtime_ns
    code, _, err = run_cli("sweep", "--config", config, "--out", out)
    assert code == 0 and "0 made now, 2 already finished" in err
    assert (out / "runs/po+pd/seed0/audit/audit.json").stat().st_mtime_ns == stamp
    # an evaluated run whose audit is missing is not finished: the next sweep audits it (and only it)
    shutil.rmtree(out / "runs/po+pd/seed0/audit")
    code, _, err = run_cli("sweep", "--config", config, "--out", out)
    assert code == 0 and "1 made now, 1 already finished" in err, err
    assert json.loads((out / "runs/po+pd/seed0/audit/audit.json").read_text())["attacks"] == ATTACKS


def test_an_unknown_attack_in_a_study_is_a_one_line_error(small_demo, untrained_tiny, tmp_path):  # noqa: F811
    config = write_study(tmp_path / "study.yaml", small_demo, untrained_tiny, ["quant4", "typo"])
    code, out, err = run_cli("sweep", "--config", config, "--out", tmp_path / "out")
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "'audit.attacks': unknown attacks typo" in err
