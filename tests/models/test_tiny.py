"""The tiny stand-in is a real LLaVA: it loads through plain transformers and behaves as vanilla."""

import json
import re

import pytest
import torch
from PIL import Image

from safeeraser.data.records import load_split
from safeeraser.data.views import Example
from safeeraser.judge.base import JudgeItem
from safeeraser.judge.keyword import KeywordJudge
from safeeraser.models.codec import IGNORE, Codec
from safeeraser.models.families.llava import VICUNA_SYSTEM
from safeeraser.models.family import LANGUAGE_LINEAR
from safeeraser.models.loading import load_model, model_family
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def plain(tiny_model):
    """Loaded exactly as llava-hf/llava-1.5-7b-hf would be: no project code involved."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_model)
    processor = AutoProcessor.from_pretrained(tiny_model)
    return model.eval(), processor


def _greedy(plain, image_path, question) -> str:
    """The answer to the published protocol's prompt (vicuna_v1 system sentence), built by plain transformers."""
    model, processor = plain
    messages = [
        {"role": "system", "content": [{"type": "text", "text": VICUNA_SYSTEM}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[Image.open(image_path).convert("RGB")], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=60, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_chat_template_is_llava_15(plain):
    _, processor = plain
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    assert (
        processor.apply_chat_template(messages, add_generation_prompt=True) == "USER: <image>\nWhat is this? ASSISTANT:"
    )


def test_vanilla_answers_harmful_and_harmless_prompts(plain, demo_data):
    train = load_split(demo_data, "train")
    picks = range(0, len(train), 4)
    for i in picks:
        pair = train.records[i].unsafe_pairs[0]
        assert _greedy(plain, train.image(i), pair.question) == pair.model_response
    # About the harmless image it answers normally, as the demo's SARR 0 needs: a description of
    # the picture (count, colour, object) that the judge reads as an answer. The demo's short
    # vanilla training does not reproduce every description word for word.
    judge = KeywordJudge()
    for i in picks:
        question = train.records[i].unsafe_pairs[0].question
        answer = _greedy(plain, train.sd_image(i), question)
        verdict = judge.judge([JudgeItem("decouple", question, answer)])[0]
        assert verdict.normal and answer.startswith("The picture shows"), (i, answer)


def test_vanilla_answers_harmful_questions_on_unseen_images_too(plain, demo_data):
    val = load_split(demo_data, "val")
    pair = val.records[3].unsafe_pairs[1]
    assert _greedy(plain, val.image(3), pair.question) == pair.model_response


def test_saved_model_is_registered_as_llava_15(tiny_model):
    family = model_family(tiny_model)
    assert family.name == "llava" and family.model_class == "LlavaForConditionalGeneration"
    summary = json.loads((tiny_model / "safeeraser.json").read_text())
    assert summary["size"] == "tiny" and summary["final_loss"] < 0.2


def test_lora_target_hits_language_model_only(plain):
    model, _ = plain
    names = [n for n, _ in model.named_modules() if re.fullmatch(LANGUAGE_LINEAR, n)]
    assert names and all("language_model" in n for n in names)
    assert {n.rsplit(".", 1)[1] for n in names} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert not any("vision" in n for n in names)


def test_labels_cover_the_answer_only(tiny_model, demo_data):
    loaded = load_model(str(tiny_model))
    codec = Codec(loaded.processor)
    train = load_split(demo_data, "train")
    pair = train.records[0].unsafe_pairs[0]
    enc = codec.encode_example(Example(train.image(0), pair.question, pair.model_response, "x", "k"))
    ids, labels = enc["input_ids"], enc["labels"]
    n_image = ids.count(codec.image_token_id)
    assert n_image == (64 // 16) ** 2  # patches, CLS dropped ("default" feature strategy)
    first = next(i for i, t in enumerate(labels) if t != IGNORE)
    assert all(t == IGNORE for t in labels[:first])
    assert all(t != IGNORE for t in labels[first:])
    assert codec.image_token_id not in labels[first:]
    assert labels[-1] == codec.eos_id
    assert codec.decode(labels[first:]) == pair.model_response
    # the prompt part is exactly the chat-template prompt
    assert codec.tokenizer.decode(ids[:first]).replace("<image>", "").startswith("<s>USER: \n" + pair.question)


def test_make_tiny_bad_input(tmp_path):
    code, _, err = run_cli("model", "make-tiny", "--data", tmp_path / "nope", "--out", tmp_path / "m")
    assert code == 2 and "dataset path not found" in err
    code, _, err = run_cli("model", "make-tiny", "--data", tmp_path, "--out", tmp_path / "m", "--size", "huge")
    assert code == 2 and "unknown --size 'huge'" in err


def test_load_model_errors(tmp_path):
    from safeeraser.errors import UserError

    with pytest.raises(UserError, match="model not found: ./nowhere"):
        load_model("./nowhere")
    with pytest.raises(UserError, match="neither a folder nor in the Hugging Face cache"):
        load_model("no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        load_model(str(tmp_path / "empty"))
