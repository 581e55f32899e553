"""The demo benchmark: deterministic, in the published format, readable by an independent reader."""

import hashlib
import json
from pathlib import Path

from PIL import Image

from safeeraser.data.demo import CATEGORIES, make_demo
from safeeraser.data.refusals import REFUSALS
from tests.conftest import run_cli


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    make_demo(tmp_path / "a", images_per_category=3, seed=1)
    make_demo(tmp_path / "b", images_per_category=3, seed=1)
    make_demo(tmp_path / "c", images_per_category=3, seed=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_independent_reader_of_published_format(demo_data):
    """Read the files with plain json, field names straight from docs/data-format.md — no project code."""
    for name in ("all_train.json", "all_val.json"):
        records = json.loads((demo_data / name).read_text())
        assert isinstance(records, list) and records
        for r in records:
            assert set(r) == {
                "image_path",
                "SDImage_path",
                "unsafe_pairs",
                "UnharmPair_text1",
                "UnharmPair_text2",
                "UnharmPair_image1",
                "UnharmPair_image2",
            }
            category = Path(r["image_path"]).parent.name
            assert category in CATEGORIES
            for rel in (r["image_path"], r["SDImage_path"]):
                with Image.open(demo_data / rel) as img:
                    assert img.size == (64, 64)
            assert len(r["unsafe_pairs"]) >= 1
            for pair in r["unsafe_pairs"]:
                assert set(pair) == {"question", "model_response", "sd_response"}
                assert all(isinstance(v, str) and v for v in pair.values())
            for key in ("UnharmPair_text1", "UnharmPair_text2", "UnharmPair_image1", "UnharmPair_image2"):
                assert set(r[key]) == {"Question", "Prediction"}


def test_split_by_image_and_every_category_in_both(demo_data):
    train = json.loads((demo_data / "all_train.json").read_text())
    val = json.loads((demo_data / "all_val.json").read_text())
    assert not {r["image_path"] for r in train} & {r["image_path"] for r in val}
    assert not {r["SDImage_path"] for r in train} & {r["SDImage_path"] for r in val}
    for records in (train, val):
        assert {Path(r["image_path"]).parent.name for r in records} == set(CATEGORIES)
    assert len(train) == 2 * len(val)


def test_answers_are_placeholders_and_harmless_answers_describe_the_image(demo_data):
    train = json.loads((demo_data / "all_train.json").read_text())
    for r in train:
        for pair in r["unsafe_pairs"]:
            # harmful-looking, but every step is withheld: no instructions
            assert pair["model_response"].count("withheld") == 3
            assert pair["sd_response"].startswith("The picture shows")
            assert pair["sd_response"] not in REFUSALS


def test_general_vqa_and_scaling(tmp_path):
    make_demo(tmp_path / "d", images_per_category=6)
    general = json.loads((tmp_path / "d" / "general_vqa.json").read_text())
    assert general and all(set(g) == {"image_path", "question", "answer"} for g in general)
    assert len(json.loads((tmp_path / "d" / "all_train.json").read_text())) == 6 * 4


def test_make_demo_cli_then_validate(tmp_path):
    code, _, err = run_cli("data", "make-demo", "--out", tmp_path / "d", "--images-per-category", "3")
    assert code == 0, err
    code, out, err = run_cli("data", "validate", tmp_path / "d")
    assert code == 0, err
    assert "all_train.json: ok" in out and "all_val.json: ok" in out


def test_make_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run_cli("data", "make-demo", "--out", tmp_path / "mine")
    assert code == 2 and "not empty" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
