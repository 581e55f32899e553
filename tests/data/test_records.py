"""Reading the published format: typed records, views, and one-line errors for bad input."""

import json
import shutil

import pytest

from safeeraser.data.records import load_split
from safeeraser.data.refusals import REFUSALS
from safeeraser.data.views import decouple_examples, forget_examples, refusal_examples, retain_examples
from tests.conftest import run_cli


@pytest.fixture
def small(tmp_path):
    """A small, writable dataset: 3 images per category."""
    from safeeraser.data.demo import make_demo

    make_demo(tmp_path / "d", images_per_category=3)
    return tmp_path / "d"


def _rewrite(folder, name, edit):
    path = folder / name
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


def test_views_follow_the_spec(small):
    split = load_split(small, "train")
    forget, refusal, decouple, retain = (
        f(split) for f in (forget_examples, refusal_examples, decouple_examples, retain_examples)
    )
    pairs = sum(len(r.unsafe_pairs) for r in split)
    assert len(forget) == len(refusal) == len(decouple) == pairs
    assert len(retain) == 4 * len(split)
    r0 = split.records[0]
    assert forget[0].image == split.image(0) and forget[0].answer == r0.unsafe_pairs[0].model_response
    assert decouple[0].image == split.sd_image(0) and decouple[0].question == r0.unsafe_pairs[0].question
    assert decouple[0].answer == r0.unsafe_pairs[0].sd_response
    assert all(e.answer in REFUSALS for e in refusal)
    assert len({e.answer for e in refusal}) > 3  # varied refusals, not one string
    assert retain[0].question == r0.unharm_text1.question and retain[0].answer == r0.unharm_text1.prediction


def test_category_from_folder_or_explicit_field(small):
    _rewrite(small, "all_train.json", lambda rs: rs[0].update(category="Custom"))
    split = load_split(small, "train")
    assert split.records[0].category == "Custom"
    assert split.records[1].category == split.records[1].image_path.split("/")[-2]


def test_absent_unharm_pairs_are_allowed_and_round_trip(small):
    def drop(rs):
        del rs[0]["UnharmPair_text1"], rs[0]["UnharmPair_image2"]
        rs[0]["extra_field"] = {"kept": True}

    _rewrite(small, "all_train.json", drop)
    split = load_split(small, "train")
    assert [k for k, _ in split.records[0].unharm_pairs()] == ["UnharmPair_text2", "UnharmPair_image1"]
    back = split.records[0].to_json()
    assert "UnharmPair_text1" not in back and back["extra_field"] == {"kept": True}
    assert back == json.loads((small / "all_train.json").read_text())[0]


def test_json_lines_is_read_too(small):
    records = json.loads((small / "all_train.json").read_text())
    (small / "all_train.json").unlink()
    (small / "all_train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert len(load_split(small, "train")) == len(records)
    code, _, err = run_cli("data", "validate", small)
    assert code == 0, err


def test_paths_resolve_against_the_parent_folder_too(small):
    shutil.move(str(small / "all_val.json"), str(small / "dataset" / "all_val.json"))
    # image paths start with "dataset/": they resolve against the JSON folder's parent
    split = load_split(small / "dataset" / "all_val.json", "val")
    assert split.image(0).is_file()


BAD_INPUTS = [
    ("malformed JSON", lambda d: (d / "all_train.json").write_text('[{"image_path": "x",'), "invalid JSON at line 1"),
    (
        "truncated JSON Lines",
        lambda d: (
            (d / "all_train.json").unlink(),
            (d / "all_train.jsonl").write_text('{"image_path": 1}\n{"image_pa'),
        ),
        "line 2: invalid JSON Lines record",
    ),
    (
        "not an array",
        lambda d: (d / "all_train.json").write_text('{"records": []}'),
        "expected a JSON array of records or JSON Lines, got an object (keys: records)",
    ),
    ("empty file", lambda d: (d / "all_train.json").write_text(""), "file is empty"),
    ("empty array", lambda d: (d / "all_train.json").write_text("[]"), "no records"),
    (
        "record not an object",
        lambda d: (d / "all_train.json").write_text("[1]"),
        "record 0: expected a JSON object, got int",
    ),
    (
        "missing field",
        lambda d: _rewrite(d, "all_train.json", lambda rs: rs[2].pop("unsafe_pairs")),
        "all_train.json: record 2: field 'unsafe_pairs': missing",
    ),
    (
        "wrong type",
        lambda d: _rewrite(d, "all_train.json", lambda rs: rs[1]["unsafe_pairs"][0].update(question=7)),
        "record 1: field 'unsafe_pairs[0].question': input should be a valid string (got int)",
    ),
    (
        "wrong type in UnharmPair",
        lambda d: _rewrite(d, "all_val.json", lambda rs: rs[0].update(UnharmPair_text1="oops")),
        "all_val.json: record 0: field 'UnharmPair_text1'",
    ),
    (
        "empty unsafe_pairs",
        lambda d: _rewrite(d, "all_train.json", lambda rs: rs[3].update(unsafe_pairs=[])),
        "record 3: field 'unsafe_pairs': is empty",
    ),
    (
        "missing image",
        lambda d: _rewrite(d, "all_train.json", lambda rs: rs[0].update(image_path="dataset/Violence/none.png")),
        "record 0: field 'image_path': image not found: dataset/Violence/none.png",
    ),
    (
        "not an image",
        lambda d: (d / "dataset" / "sd" / "Weapon" / "0001.png").write_text("not a png"),
        "field 'SDImage_path': not a readable image",
    ),
    (
        "path escapes the root",
        lambda d: _rewrite(d, "all_val.json", lambda rs: rs[0].update(image_path="../../../etc/passwd")),
        "points outside the dataset root",
    ),
    (
        "absolute path",
        lambda d: _rewrite(d, "all_val.json", lambda rs: rs[0].update(SDImage_path="/etc/hostname")),
        "field 'SDImage_path': image path '/etc/hostname' points outside",
    ),
    (
        "empty image path",
        lambda d: _rewrite(d, "all_val.json", lambda rs: rs[0].update(image_path="")),
        "field 'image_path': empty image path",
    ),
    ("no split files", lambda d: [p.unlink() for p in d.glob("all_*.json")], "no all_train.json or all_val.json"),
]


@pytest.mark.parametrize("name,damage,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_validate_bad_input(small, name, damage, message):
    damage(small)
    code, _, err = run_cli("data", "validate", small)
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_validate_missing_path(tmp_path):
    code, _, err = run_cli("data", "validate", tmp_path / "nope")
    assert code == 2 and "dataset path not found" in err


def test_stats(small):
    code, out, err = run_cli("data", "stats", small, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["file"] for r in rows] == ["all_train.json", "all_val.json"]
    assert rows[0]["records"] == 12 and rows[0]["unsafe_pairs"] == 36 and sum(rows[0]["by_category"].values()) == 12
