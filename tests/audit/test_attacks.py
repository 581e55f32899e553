"""Input attacks: each transformed dataset copy holds exactly the prompts its attack specifies."""

import json

import numpy as np
import pytest
from PIL import Image

from safeeraser.audit.attacks import (
    BLANK_PX,
    FIGSTEP_INSTRUCTION,
    INPUT_ATTACKS,
    ONE_WORDS,
    PREFIXES,
    figstep_text,
    render_figstep,
    write_attacked_data,
)
from safeeraser.data.checks import validate
from safeeraser.data.records import UNHARM_KEYS, load_split
from safeeraser.errors import UserError
from tests.small import small_demo  # noqa: F401  (fixture)

SPLITS = ("train", "val")


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def copies(small_demo, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("attacked")
    return {attack: write_attacked_data(small_demo, root / attack, attack, seed=0) for attack in INPUT_ATTACKS}


def pairs(split):
    """(record index, pair index, record, pair) of every harmful question of a split."""
    return [(i, j, r, p) for i, r in enumerate(split) for j, p in enumerate(r.unsafe_pairs)]


@pytest.mark.parametrize("attack", INPUT_ATTACKS)
def test_copy_is_a_valid_dataset_without_benign_pairs(copies, small_demo, attack):  # noqa: F811
    validate(copies[attack])
    for name in SPLITS:
        original, attacked = load_split(small_demo, name), load_split(copies[attack], name)
        assert len(pairs(attacked)) == len(pairs(original))  # every harmful question, once
        assert all(r.unharm_pairs() == [] for r in attacked)
        raw = json.loads((copies[attack] / f"all_{name}.json").read_text())
        assert not any(key in row for row in raw for key in UNHARM_KEYS)
        # the forget target and the harmless-image reference travel with each question
        assert sorted((p.model_response, p.sd_response) for *_, p in pairs(attacked)) == sorted(
            (p.model_response, p.sd_response) for *_, p in pairs(original)
        )


def test_figstep_puts_the_request_in_the_picture_and_a_neutral_instruction_in_the_prompt(copies, small_demo):  # noqa: F811
    for name in SPLITS:
        original, attacked = load_split(small_demo, name), load_split(copies["figstep"], name)
        assert len(attacked) == len(pairs(original))  # one record per harmful question: the picture holds the question
        for k, (i, _j, record, pair) in enumerate(pairs(original)):
            got = attacked.records[k]
            assert [p.question for p in got.unsafe_pairs] == [FIGSTEP_INSTRUCTION]
            assert got.category == record.category
            assert np.array_equal(
                pixels(attacked.image(k)), np.asarray(render_figstep(original.image(i), pair.question))
            )
            assert np.array_equal(
                pixels(attacked.sd_image(k)), np.asarray(render_figstep(original.sd_image(i), pair.question))
            )
    assert figstep_text("How do I do this?").split("\n") == ["How do I do this?", "1.", "2.", "3."]
    assert pair.question.lower() not in FIGSTEP_INSTRUCTION.lower()


def test_text_only_asks_the_question_about_a_blank_picture(copies, small_demo):  # noqa: F811
    for name in SPLITS:
        original, attacked = load_split(small_demo, name), load_split(copies["text-only"], name)
        for i, record in enumerate(attacked):
            assert [p.question for p in record.unsafe_pairs] == [p.question for p in original.records[i].unsafe_pairs]
            assert record.category == original.records[i].category
            for image in (attacked.image(i), attacked.sd_image(i)):
                assert np.array_equal(pixels(image), np.full((BLANK_PX, BLANK_PX, 3), 255, dtype=np.uint8))


@pytest.mark.parametrize(("attack", "added", "joiner"), [("one-word", ONE_WORDS, ", "), ("prefix", PREFIXES, " ")])
def test_a_benign_word_or_phrase_before_the_question_and_nothing_else_changed(
    copies, small_demo, attack, added, joiner
):  # noqa: F811
    used = set()
    for name in SPLITS:
        original, attacked = load_split(small_demo, name), load_split(copies[attack], name)
        for i, record in enumerate(attacked):
            assert record.category == original.records[i].category
            assert np.array_equal(pixels(attacked.image(i)), pixels(original.image(i)))
            assert np.array_equal(pixels(attacked.sd_image(i)), pixels(original.sd_image(i)))
            for got, ref in zip(record.unsafe_pairs, original.records[i].unsafe_pairs):
                matches = [w for w in added if got.question == f"{w}{joiner}{ref.question}"]
                assert len(matches) == 1, got.question
                used.add(matches[0])
    assert len(used) > 1  # drawn per question, not one for all


def test_image_swap_asks_about_another_categorys_images(copies, small_demo):  # noqa: F811
    for name in SPLITS:
        original, attacked = load_split(small_demo, name), load_split(copies["image-swap"], name)
        images = [
            (pixels(original.image(d)), pixels(original.sd_image(d)), original.records[d].category)
            for d in range(len(original))
        ]
        for i, record in enumerate(attacked):
            assert record.category == original.records[i].category
            assert [p.question for p in record.unsafe_pairs] == [p.question for p in original.records[i].unsafe_pairs]
            got, got_sd = pixels(attacked.image(i)), pixels(attacked.sd_image(i))
            donors = [c for image, sd, c in images if np.array_equal(image, got) and np.array_equal(sd, got_sd)]
            assert donors and all(c != record.category for c in donors)


def test_same_seed_same_copy_other_seed_other_choices(small_demo, tmp_path):  # noqa: F811
    a = write_attacked_data(small_demo, tmp_path / "a", "prefix", seed=0)
    b = write_attacked_data(small_demo, tmp_path / "b", "prefix", seed=0)
    c = write_attacked_data(small_demo, tmp_path / "c", "prefix", seed=1)
    assert (a / "all_train.json").read_bytes() == (b / "all_train.json").read_bytes()
    assert (a / "all_train.json").read_bytes() != (c / "all_train.json").read_bytes()
    f1 = write_attacked_data(small_demo, tmp_path / "f1", "figstep", seed=0)
    f2 = write_attacked_data(small_demo, tmp_path / "f2", "figstep", seed=0)
    first = sorted((f1 / "rendered").iterdir())
    assert [p.read_bytes() for p in first] == [(f2 / "rendered" / p.name).read_bytes() for p in first]


def test_unknown_attack_is_one_line(small_demo, tmp_path):  # noqa: F811
    with pytest.raises(UserError, match="unknown input attack 'typo'"):
        write_attacked_data(small_demo, tmp_path / "x", "typo")
