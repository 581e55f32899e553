"""A study file's mistakes end in one line naming the file and the key, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

GOOD = {"data": "data", "model": "model", "preset": "demo", "methods": ["po", "po+pd"], "seeds": [0, 1]}


def _fail(tmp_path: Path, study, *extra) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(study if isinstance(study, str) else yaml.safe_dump(study))
    code, out, err = run_cli("sweep", "--config", path, "--out", tmp_path / "out", *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started
    return lines[0]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"methodz": ["po"]}, ["'methodz'", "unknown setting"]),
        ({"methods": ["po", "nonsense"]}, ["'methods[1]'", "unknown method 'nonsense'"]),
        ({"methods": []}, ["'methods'"]),
        ({"methods": ["po", "po"]}, ["'methods[1]'", "listed twice"]),
        ({"seeds": [0, 0]}, ["'seeds'", "listed twice"]),
        ({"seeds": "zero"}, ["'seeds'"]),
        ({"grid": {"pd_weight": 0.5}}, ["'grid.pd_weight'"]),
        ({"grid": {"pd_weight": []}}, ["'grid.pd_weight'", "non-empty"]),
        ({"grid": {"lr": [1e-3, -1.0]}}, ["grid", "'optim.lr'", "greater than 0"]),
        ({"grid": {"method.npo.bta": [0.1]}}, ["grid", "'method.npo.bta'", "unknown setting"]),
        ({"settings": {"max_stepz": 3}}, ["settings", "'max_stepz'", "unknown setting"]),
        ({"settings": {"seed": 3}}, ["'settings.seed'", "seeds"]),
        ({"generation": {"protocol": "fastest"}}, ["'generation'", "'fastest'"]),
        ({"generation": {"max_new_tokens": 0}}, ["'generation.max_new_tokens'"]),
        ({"preset": "nope"}, ["'preset'", "'nope'"]),
        ({"data": {"demo": {"images_per_categry": 3}}}, ["'data.demo.images_per_categry'"]),
        ({"evaluation": {"empty_answers": "maybe"}}, ["'evaluation.empty_answers'"]),
        ({"evaluation": {"judge_score": "released"}}, ["'evaluation.judge_score'", "LLM judge"]),
        ({"run_folder": "{method}"}, ["'run_folder'", "one folder"]),
        ({"run_folder": "{cel}"}, ["'run_folder'", "template"]),
        ({"run_folder": "../{cell}/{seed}"}, ["'run_folder'", "not a folder name"]),
    ],
)
def test_a_bad_key_is_named_with_the_file(tmp_path, change, words):
    line = _fail(tmp_path, {**GOOD, **change})
    assert str(tmp_path / "study.yaml") in line
    for w in words:
        assert w in line, line


def test_broken_or_missing_files(tmp_path):
    assert "invalid YAML at line 2" in _fail(tmp_path, "methods: [po\nseeds: [0]: 1\n")
    assert "expected a mapping" in _fail(tmp_path, "- po\n- kl\n")
    code, _, err = run_cli("sweep", "--config", tmp_path / "none.yaml", "--out", tmp_path / "out")
    assert code == 2 and "none.yaml: config file not found" in err


def test_a_missing_dataset_folder_is_named(tmp_path):
    line = _fail(tmp_path, GOOD)
    assert "'data'" in line and "is not a dataset folder" in line


def test_jobs_must_be_positive(tmp_path):
    assert "--jobs must be positive" in _fail(tmp_path, GOOD, "--jobs", "0")


def test_the_grid_expands_methods_settings_and_seeds(tmp_path):
    from safeeraser.study.spec import parse_study

    study = parse_study(
        {**GOOD, "methods": ["vanilla", "npo", "npo+pd"], "grid": {"pd_weight": [0.5, 1.0], "method.npo.beta": [0.1]}},
        "s.yaml",
        tmp_path,
    )
    names = [r.name for r in study.runs]
    assert names[:5] == [
        "vanilla/seed0",
        "npo__pd_weight=0.5__method.npo.beta=0.1/seed0",
        "npo__pd_weight=1.0__method.npo.beta=0.1/seed0",
        "npo+pd__pd_weight=0.5__method.npo.beta=0.1/seed0",
        "npo+pd__pd_weight=1.0__method.npo.beta=0.1/seed0",
    ]
    assert len(names) == 10 and names[5] == "vanilla/seed1"  # vanilla once per seed: the grid does not apply to it
    run = study.runs[4]
    assert (
        run.config["method"]["pd_weight"] == 1.0
        and run.config["method"]["npo"]["beta"] == 0.1
        and run.config["seed"] == 0
    )
    assert study.runs[9].config["seed"] == 1
    assert study.generation(1).seed == 1  # generation seed null: the run's own


def test_the_packaged_demo_study_generates_as_the_demo(tmp_path):
    from safeeraser.pipeline import DEMO_GENERATION, demo_study
    from safeeraser.unlearn.methods import METHOD_NAMES

    study = demo_study(seed=3)
    assert [r.name for r in study.runs] == ["vanilla", *METHOD_NAMES]
    assert study.generation(3) == DEMO_GENERATION
    assert {r.config["seed"] for r in study.runs} == {3}
    assert study.file.data.demo.seed == 3 and study.file.model.tiny.seed == 3


def test_data_or_model_built_otherwise_is_not_reused(tmp_path):
    import json

    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {**GOOD, "data": {"demo": {"images_per_category": 3, "seed": 0}}, "model": {"tiny": {"family": "llava"}}}
        )
    )
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "demo_meta.json").write_text(json.dumps({"seed": 1, "images_per_category": 3}))
    code, _, err = run_cli("sweep", "--config", study, "--out", out)
    assert code == 2 and "built with seed 1" in err and "'data'" in err and len(err.strip().splitlines()) == 1
    (out / "data" / "demo_meta.json").write_text(json.dumps({"seed": 0, "images_per_category": 3}))
    (out / "model").mkdir()
    (out / "model" / "safeeraser.json").write_text(json.dumps({"family": "qwen2_vl", "size": "tiny", "seed": 0}))
    code, _, err = run_cli("sweep", "--config", study, "--out", out)
    assert code == 2 and "built with family 'qwen2_vl'" in err and "'model'" in err
    assert sorted(p.name for p in out.iterdir()) == ["data", "model"]  # nothing else started


@pytest.mark.parametrize("size", ["7b", "13b"])
def test_the_paper_studies_list_their_runs_offline(tmp_path, size, monkeypatch):
    """The packaged paper study: the released recipe on LLaVA-1.5, 11 cells x 3 seeds, listed without weights or data."""
    from importlib import resources

    from safeeraser.study.spec import load_study

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = Path(str(resources.files("safeeraser").joinpath("configs", "studies", f"paper-llava15-{size}.yaml")))
    study = load_study(path)
    assert study.file.model == f"llava-hf/llava-1.5-{size}-hf" and study.file.preset == "paper"
    assert study.file.evaluation.changed() == {"empty_answers": "released", "judge_score": "released"}
    assert {r.config["optim"]["schedule"] for r in study.runs if r.method != "vanilla"} == {"released"}
    code, out, err = run_cli("sweep", "--config", path, "--out", tmp_path / "out", "--dry-run")
    assert code == 0, err
    assert "33 runs (11 cells x 3 seeds)" in err and out.count("to do") == 33


def test_the_evaluation_section_reaches_the_llm_judge_and_the_record(monkeypatch):
    from safeeraser.study.run import make_judge

    monkeypatch.setenv("OPENAI_API_KEY", "not-sent")  # the judge is built, never asked

    judge = make_judge(
        "openai", "gpt-4o", {"empty_answers": "released", "judge_protocol": "question-aware", "judge_score": "released"}
    )
    identity = judge.identity()
    assert identity["protocol"] == "question-aware" and identity.get("judge_score") == "released", identity
    assert make_judge("openai", "gpt-4o", {"empty_answers": "skip"}).identity()["protocol"] == "published"


def test_the_evaluation_section_is_recorded_only_when_set(tmp_path):
    from safeeraser.study.run import run_record
    from safeeraser.study.spec import parse_study

    plain = parse_study(GOOD, "study.yaml", tmp_path)
    assert "evaluation" not in run_record(
        plain, plain.runs[0], tmp_path, "model"
    )  # earlier studies' records still match
    released = parse_study({**GOOD, "evaluation": {"empty_answers": "released"}}, "study.yaml", tmp_path)
    assert run_record(released, released.runs[0], tmp_path, "model")["evaluation"] == {"empty_answers": "released"}
