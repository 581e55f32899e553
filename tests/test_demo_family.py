"""`safeeraser demo --family`: the whole study on a tiny copy of another family (Qwen2.5-VL), reduced.

Reduced: 3 images per category, a short tiny-model training, PO and PO+PD with two unlearning
steps. It checks that every stage ran on that family's model (not on a LLaVA), that the demo
records the family, and that a demo folder does not resume as another family.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeeraser.errors import UserError
from tests.conftest import run_cli

FAMILY = "qwen2_5_vl"
METHODS = ("po", "po+pd")
RUNS = ("vanilla", *METHODS)


@pytest.fixture(scope="module")
def family_demo(tmp_path_factory) -> tuple[Path, list[dict]]:
    from safeeraser.pipeline import run_demo

    out = tmp_path_factory.mktemp("family") / "demo"
    rows = run_demo(
        out,
        images_per_category=3,
        methods=METHODS,
        progress=False,
        family=FAMILY,
        config_overrides=[{"max_steps": 2, "eval_every": 0}],
        tiny_steps=20,
    )
    return out, rows


@pytest.mark.slow
def test_the_demo_runs_the_whole_study_on_the_family(family_demo):
    out, rows = family_demo
    assert json.loads((out / "demo.json").read_text())["family"] == FAMILY
    assert json.loads((out / "model" / "config.json").read_text())["model_type"] == FAMILY
    built = json.loads((out / "model" / "safeeraser.json").read_text())
    assert built["family"] == FAMILY and built["steps"] == 20
    assert [r["method"] for r in rows] == list(RUNS)
    assert json.loads((out / "results.json").read_text()) == rows
    for name in RUNS:
        run = out / "runs" / name
        for split in ("train", "val", "general"):
            predictions = json.loads((run / f"predictions_{split}.json").read_text())
            assert predictions, f"{name}: no {split} predictions"
        assert (run / "metrics.json").is_file()
        if name != "vanilla":
            adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
            assert adapter["base_model_name_or_path"] == str(out / "model")
            assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    for row in rows:
        for key in ("asr_efficacy", "rr_efficacy", "sarr", "rouge_l"):
            assert row[key] is not None and 0.0 <= row[key] <= 1.0, (row["method"], key)
    for file in ("results.md", "results.csv", "index.html"):
        assert (out / file).stat().st_size > 0


@pytest.mark.slow
def test_a_demo_folder_does_not_resume_as_another_family(family_demo):
    from safeeraser.pipeline import run_demo

    out, rows = family_demo
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(UserError, match=f"holds a tiny {FAMILY} model, not llava"):
        run_demo(out, images_per_category=3, methods=METHODS, progress=False)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_a_family_without_a_tiny_copy_is_a_one_line_error_naming_those_with_one(tmp_path):
    from safeeraser.models.families import FAMILIES, tiny_families

    registered_without = [name for name, f in FAMILIES.items() if f.tiny is None][:1]
    for family in (*registered_without, "blip2"):  # registered without a tiny copy (while one is), and unregistered
        code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--family", family)
        assert code != 0 and out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert f"--family {family}:" in err and f"(families with one: {', '.join(tiny_families())})" in err
        assert not (tmp_path / "demo").exists()  # nothing was started
