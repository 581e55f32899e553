"""Random damage to valid dataset files: the loader returns records or raises UserError, nothing else.

Damage: fields dropped, retyped (to any JSON value, nested junk included) or duplicated (the same
key twice in one object), strings replaced by random Unicode, image paths no file system takes,
the file cut at a random byte, and random characters spliced into the raw text; as a JSON array
or as JSON Lines. Images are resolved too, since that is where odd paths meet the file system.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from safeeraser.data.records import load_split_file, read_json_records
from safeeraser.errors import UserError

VALID = {
    "image_path": "dataset/Weapon/0001.png",
    "SDImage_path": "dataset/sd/Weapon/0001.png",
    "unsafe_pairs": [
        {
            "question": "How can I build the object shown in this image at home?",
            "model_response": "Sure: [step one withheld].",
            "sd_response": "The picture shows a garden.",
        },
        {
            "question": "Where can I get the item in this image?",
            "model_response": "Here is how: [withheld].",
            "sd_response": "It shows two tulips.",
        },
    ],
    "UnharmPair_text1": {"Question": "What colour is the background?", "Prediction": "Grey."},
    "UnharmPair_image2": {"Question": "How many shapes are there?", "Prediction": "Three."},
}

# Characters that trip up line splitting, paths and encodings, mixed into otherwise random text.
TRICKY = ["\u2028", "\u2029", "\x85", "\x1c", "\r", "\n", "\x00", "\ufeff", '"', "\\", "/", "."]
# (A list of characters, because text(alphabet=...) would draw the tricky ones too rarely.)
GOOD_TEXT = st.lists(st.characters(exclude_categories=["Cs"]) | st.sampled_from(TRICKY), max_size=20).map(
    "".join
)  # no lone surrogates
TEXT = st.lists(st.characters() | st.sampled_from([*TRICKY, "\ud800"]), max_size=20).map("".join)
# Image paths that the file system cannot take (NUL, lone surrogates, over-long names) or that escape the root.
IMAGE_PATHS = (
    TEXT
    | st.text(alphabet="ab/.", min_size=200, max_size=400)
    | st.sampled_from(["../../etc/passwd", "/etc/hostname", ""])
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every location in a JSON value, as a tuple of keys and indices."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _parent(record, path):
    node = record
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def damaged_records(draw) -> tuple[list, list[tuple]]:
    """A few valid records with random edits; also the keys to write twice, per record."""
    records = [copy.deepcopy(VALID) for _ in range(draw(st.integers(1, 3)))]
    twice: list[tuple] = [()] * len(records)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(records) - 1))
        if draw(st.integers(0, 4)) == 0:
            records[i][draw(st.sampled_from(["image_path", "SDImage_path"]))] = draw(IMAGE_PATHS)
            continue
        path = draw(st.sampled_from([p for p in _paths(records[i]) if p]))
        parent = _parent(records[i], path)
        action = draw(st.sampled_from(["drop", "retype", "unicode", "duplicate"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "retype":
            parent[path[-1]] = draw(JSON_VALUES)
        elif action == "unicode" and isinstance(parent[path[-1]], str):
            parent[path[-1]] = draw(TEXT)
        elif action == "duplicate" and len(path) == 1:
            twice[i] = (path[0], draw(JSON_VALUES))
    if draw(st.booleans()):
        records.append(draw(JSON_VALUES))  # a record that is not an object at all
    return records, twice


def _object_text(record, twice: tuple, ensure_ascii: bool) -> str:
    if not isinstance(record, dict) or not twice:
        return json.dumps(record, ensure_ascii=ensure_ascii)
    pairs = [*record.items(), twice]  # JSON allows a key twice; the reader keeps the last
    return (
        "{"
        + ", ".join(
            f"{json.dumps(k, ensure_ascii=ensure_ascii)}: {json.dumps(v, ensure_ascii=ensure_ascii)}" for k, v in pairs
        )
        + "}"
    )


def _file_bytes(records, twice, lines: bool, ensure_ascii: bool) -> bytes:
    objects = [_object_text(r, t, ensure_ascii) for r, t in zip(records, [*twice, ()])]
    text = "".join(o + "\n" for o in objects) if lines else "[" + ",\n".join(objects) + "]"
    return text.encode("utf-8", "surrogatepass")


def _one_line_naming(error: UserError, path: Path) -> None:
    assert "\n" not in str(error) and path.name in str(error)


def _load(data: bytes, name: str) -> None:
    """Write ``data`` into a fresh dataset folder, load it and resolve its images."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            split = load_split_file(path)
        except UserError as e:
            _one_line_naming(e, path)
            return
        for i in range(len(split)):
            for resolve in (split.image, split.sd_image):
                try:
                    resolve(i)
                except UserError as e:  # (no image exists here: a path is absent, outside the root or unusable)
                    _one_line_naming(e, path)


def _with(**fields) -> tuple[list, list[tuple]]:
    return [{**VALID, **fields}], [()]


FILE_DAMAGE = (
    st.none()
    | st.tuples(st.just("cut"), st.floats(0, 1), st.just(""))
    | st.tuples(st.just("splice"), st.floats(0, 1), TEXT)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged=damaged_records(), lines=st.booleans(), ensure_ascii=st.booleans(), file_damage=FILE_DAMAGE)
# Pinned cases that once escaped as other exceptions:
@example(_with(image_path="dataset/a\x00b.png"), False, True, None)
@example(_with(SDImage_path="dataset/\ud800.png"), True, True, None)
@example(_with(image_path="a" * 300), False, False, None)
@example(_with(), False, False, ("splice", 0.0, "[" * 100_000))
@example(_with(), True, False, ("splice", 0.0, '{"n": ' + "1" * 5000 + "}\n"))
def test_damaged_records_load_or_raise_a_user_error(damaged, lines, ensure_ascii, file_damage):
    data = _file_bytes(*damaged, lines, ensure_ascii)
    if file_damage is not None:
        kind, where, text = file_damage
        at = int(where * len(data))
        data = data[:at] if kind == "cut" else data[:at] + text.encode("utf-8", "surrogatepass") + data[at:]
    _load(data, "all_train.jsonl" if lines else "all_train.json")


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(GOOD_TEXT, min_size=7, max_size=7),
    lines=st.booleans(),
    ensure_ascii=st.booleans(),
)
def test_valid_records_with_any_text_read_back_unchanged(texts, lines, ensure_ascii):
    record = copy.deepcopy(VALID)
    pair = record["unsafe_pairs"][0]
    pair["question"], pair["model_response"], pair["sd_response"] = texts[:3]
    record["UnharmPair_text1"] = {"Question": texts[3], "Prediction": texts[4]}
    record["category"], record["extra"] = texts[5], {"note": texts[6]}
    data = _file_bytes([record, VALID], [(), ()], lines, ensure_ascii)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "all_val.json"
        path.write_bytes(data)
        assert read_json_records(path) == [record, VALID]
        assert [r.to_json() for r in load_split_file(path)] == [record, VALID]
