"""Model families: the registry, and each family with a tiny copy run end to end on its real architecture.

The tiny copies are built from the family's config class and trained for a few vanilla steps only
(enough for real, non-uniform weights); their answers are not meant to be good, only to go
through the same code as the hub checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal

import pytest
import torch
from PIL import Image

from safeeraser.data.records import load_split
from safeeraser.data.views import Example, forget_examples
from safeeraser.generate.sampling import Prompt, Sampling, answer_all
from safeeraser.models.codec import IGNORE, Codec
from safeeraser.models.families import FAMILIES, family_named, tiny_families
from safeeraser.models.loading import attach_adapter, load_model
from tests.conftest import built_once, run_cli

ISSUE_FAMILIES = (
    "llava",
    "llava_next",
    "llava_onevision",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "mllama",
    "internvl",
    "gemma3",
    "idefics3",
    "smolvlm",
)
TINY_STEPS = 30


# --- the registry (fast) ------------------------------------------------------------------


def test_every_family_is_registered_by_its_model_type_with_real_classes_and_hub_ids():
    import transformers

    assert tuple(FAMILIES) == ISSUE_FAMILIES
    for family in FAMILIES.values():
        assert family.name in family.model_types
        assert family.hub_ids and all(re.fullmatch(r"[\w.-]+/[\w.-]+", h) for h in family.hub_ids)
        config = transformers.AutoConfig.for_model(family.name)  # the model_type transformers knows
        assert config.model_type == family.name
        assert hasattr(transformers, family.model_class)


def test_families_command_lists_them_as_json():
    code, out, _ = run_cli("model", "families", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["family"] for r in rows] == list(ISSUE_FAMILIES)
    qwen = next(r for r in rows if r["family"] == "qwen2_5_vl")
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in qwen["hub_ids"] and qwen["tiny"] and qwen["needs_torchvision"]


def test_an_unregistered_family_is_a_one_line_error_naming_the_registered_ones(tmp_path):
    code, out, err = run_cli("model", "make-tiny", "--data", tmp_path, "--out", tmp_path / "m", "--family", "blip2")
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "'blip2'" in err and "qwen2_5_vl, qwen3_vl, mllama" in err and 'docs/families.md, "Adding a family"' in err


def test_a_registered_family_without_an_encoding_path_says_so():
    from safeeraser.errors import UserError
    from safeeraser.models.family import UNENCODED, ModelFamily

    family = ModelFamily(
        name="blip2",
        model_types=("blip2",),
        model_class="Blip2ForConditionalGeneration",
        chat_template=None,
        **UNENCODED,
    )
    with pytest.raises(UserError, match="blip2.*no encoding path"):
        Codec(object(), family=family)


# --- each family with a tiny copy, end to end (slow) --------------------------------------

# family -> (its transformers class, its end-of-turn token, the projector PEFT trains)
TINY = {
    "llava_next": ("LlavaNextForConditionalGeneration", "</s>", "multi_modal_projector"),
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "<|im_end|>", "visual.merger"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "<|im_end|>", "visual.merger"),
    "gemma3": ("Gemma3ForConditionalGeneration", "<end_of_turn>", "multi_modal_projector"),
    # families that split images into crops or tiles
    "idefics3": ("Idefics3ForConditionalGeneration", "<end_of_utterance>", "connector"),
    "smolvlm": ("SmolVLMForConditionalGeneration", "<end_of_utterance>", "connector"),
    "internvl": ("InternVLForConditionalGeneration", "<|im_end|>", "multi_modal_projector"),
    "llava_onevision": ("LlavaOnevisionForConditionalGeneration", "<|im_end|>", "multi_modal_projector"),
    # a cross-attention family
    "mllama": ("MllamaForConditionalGeneration", "<|eot_id|>", "multi_modal_projector"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "<|im_end|>", "visual.merger"),
}


def test_every_family_with_a_tiny_copy_is_tested_here():
    assert set(tiny_families()) == {"llava", *TINY}


@pytest.fixture(scope="session", params=sorted(TINY))
def tiny(request, demo_data, tmp_path_factory):
    """(family, folder): a tiny copy (0.15-0.25 M parameters) after a few vanilla steps, built once per session."""
    from safeeraser.models.tiny import make_tiny

    name = request.param
    built = built_once(
        tmp_path_factory,
        f"families-{name}",
        lambda folder: make_tiny(demo_data, folder / name, family=name, steps=TINY_STEPS, progress=False),
    )
    return name, built / name


@pytest.fixture(scope="session")
def loaded_tiny(tiny):
    name, folder = tiny
    loaded = load_model(str(folder))
    return name, loaded, Codec(loaded.processor, family=loaded.family, system=loaded.family.system)


def _plain_class(name: str):
    import transformers

    return getattr(transformers, TINY[name][0])


@pytest.mark.slow
def test_tiny_copy_is_the_family_class_that_plain_transformers_loads(tiny, loaded_tiny):
    from transformers import AutoModelForImageTextToText

    name, folder = tiny
    _, loaded, _ = loaded_tiny
    assert loaded.family.name == name
    assert type(loaded.model) is _plain_class(name)
    assert type(AutoModelForImageTextToText.from_pretrained(folder)) is _plain_class(name)
    summary = json.loads((folder / "safeeraser.json").read_text())
    assert summary["family"] == name and summary["parameters"] < 1_000_000


@pytest.mark.slow
def test_answer_mask_is_the_answer_and_the_end_of_turn_token(loaded_tiny, demo_data):
    name, loaded, codec = loaded_tiny
    end_of_turn = TINY[name][1]
    example = forget_examples(load_split(demo_data, "train"))[0]
    item = codec.encode_example(example)
    answer_ids = [t for t, label in zip(item["input_ids"], item["labels"]) if label != IGNORE]
    # (LLaVA's answer follows "ASSISTANT:" after a space, which its first token carries)
    assert (
        codec.tokenizer.decode(answer_ids, skip_special_tokens=False)
        == loaded.family.answer_prefix + example.answer + end_of_turn
    )
    # the prompt + labelled tokens are what the family's chat template renders for that turn
    prompt = codec.prompt_text(example.question)
    turn = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example.question}]},
        {"role": "assistant", "content": [{"type": "text", "text": example.answer}]},
    ]
    rendered = loaded.processor.apply_chat_template(turn, tokenize=False)
    if name == "llava_onevision":
        # its hub template writes "<|im_start|>assistant " and a new line for a rendered answer
        # but "<|im_start|>assistant" and a new line as the generation prompt; the answer is
        # trained after the generation prompt, as it is generated
        rendered = rendered.replace("<|im_start|>assistant \n", "<|im_start|>assistant\n")
    answer = prompt + loaded.family.answer_prefix + example.answer
    assert rendered.startswith(answer)
    if end_of_turn in rendered:  # (LLaVA-1.5's template leaves the end-of-sequence token out)
        assert rendered.startswith(answer + end_of_turn)


@pytest.mark.slow
def test_prompt_ids_are_what_the_family_processor_builds(loaded_tiny, demo_data, tmp_path):
    """Where the real processor class loads (Gemma-3 here; Qwen needs torchvision), the codec's ids,
    token types and pixels equal its output; for Qwen the image expands to one token per 2 x 2 patches."""
    from safeeraser.data.images import open_rgb
    from safeeraser.models.parts import PartsProcessor

    name, loaded, codec = loaded_tiny
    example = forget_examples(load_split(demo_data, "train"))[0]
    item = codec.encode_prompt(example.image, example.question)
    if isinstance(loaded.processor, PartsProcessor) and name in CROPPED:
        _check_crops_parts_path(loaded, codec, item, example)
        return
    if isinstance(loaded.processor, PartsProcessor) and name == "internvl":
        _check_tiles_parts_path(loaded, codec, item)
        return
    if isinstance(loaded.processor, PartsProcessor) and name == "llava_onevision":
        _check_onevision_parts_path(loaded, codec, item)
        return
    if isinstance(loaded.processor, PartsProcessor):
        grid = item["image"]["image_grid_thw"][0]
        assert item["input_ids"].count(codec.image_token_id) == int(grid.prod()) // 4 > 0
        assert sum(item["mm_token_type_ids"]) == int(grid.prod()) // 4  # marks exactly the image tokens
        # the model reads them: without them Qwen2.5-VL falls back to 1-D positions instead of
        # M-RoPE (other logits) and Qwen2-VL refuses the batch
        batch = codec.collate_prompts([item])
        with torch.no_grad():
            with_types = loaded.model(**batch).logits
            try:
                without = loaded.model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"}).logits
            except ValueError:
                without = None
        assert without is None or not torch.allclose(with_types, without)
        return
    prompt = codec.prompt_text(example.question)
    # a template that writes the BOS (Gemma-3, Mllama) is tokenised without another, as the codec does
    plain = {"add_special_tokens": False} if prompt.startswith(codec.tokenizer.bos_token or "\0") else {}
    real = loaded.processor(text=[prompt], images=[open_rgb(example.image)], return_tensors="pt", **plain)
    assert item["input_ids"] == real["input_ids"][0].tolist()
    assert torch.equal(item["image"]["pixel_values"], real["pixel_values"])
    if loaded.family.token_types:
        types = loaded.family.token_types[0]
        assert item[types] == real[types][0].tolist() and any(item[types])
    if loaded.family.cross_attention:
        # Mllama: a left-padded batch of two images of other sizes (other tile counts) is what the
        # processor builds for it: ids, tiles, aspect-ratio ids and mask, and the cross-attention mask
        wide = tmp_path / "wide.png"
        Image.open(example.image).convert("RGB").resize((96, 32)).save(wide)
        second = "Say what it shows, please."
        batch = codec.collate_prompts([item, codec.encode_prompt(wide, second)])
        real = loaded.processor(
            text=[prompt, codec.prompt_text(second)],
            images=[[open_rgb(example.image)], [open_rgb(wide)]],
            padding=True,
            return_tensors="pt",
            **plain,
        )
        assert batch["aspect_ratio_ids"][0] != batch["aspect_ratio_ids"][1]
        for key in (
            "input_ids",
            "attention_mask",
            "pixel_values",
            "aspect_ratio_ids",
            "aspect_ratio_mask",
            loaded.family.cross_attention,
        ):
            assert torch.equal(batch[key], real[key]), key


# --- Idefics3 / SmolVLM: images split into crops ------------------------------------------

CROPPED = ("idefics3", "smolvlm")


def _check_crops_parts_path(loaded, codec, item, example):
    """SmolVLM's processor class needs torchvision: its parts path must build what the processor
    of the same prompt format, ``Idefics3Processor``, builds from the same tokenizer, image
    processor and ``image_seq_len`` (the real ``SmolVLMProcessor``: the torchvision-only test)."""
    from transformers import Idefics3Processor

    from safeeraser.data.images import open_rgb

    parts = loaded.processor
    same_format = Idefics3Processor(
        image_processor=parts.image_processor, tokenizer=parts.tokenizer, image_seq_len=parts.image_seq_len
    )
    real = same_format(
        text=[codec.prompt_text(example.question)], images=[open_rgb(example.image)], return_tensors="pt"
    )
    assert item["input_ids"] == real["input_ids"][0].tolist()
    assert torch.equal(item["image"]["pixel_values"], real["pixel_values"])
    assert torch.equal(item["image"]["pixel_attention_mask"], real["pixel_attention_mask"])


def _check_tiles_parts_path(loaded, codec, item):
    """InternVL's processor class needs torchvision (the real one: the torchvision-only test): a
    64-pixel image is 2 x 2 tiles and a thumbnail, each ``image_seq_length`` tokens between
    ``<img>`` and ``</img>``, and the model reads exactly that many image features."""
    tiles = item["image"]["pixel_values"].shape[0]
    assert tiles == int(item["image"]["num_patches"][0]) == 5
    ids = item["input_ids"]
    start, end = (
        ids.index(codec.tokenizer.convert_tokens_to_ids("<img>")),
        ids.index(codec.tokenizer.convert_tokens_to_ids("</img>")),
    )
    assert ids[start + 1 : end] == [codec.image_token_id] * (tiles * loaded.processor.image_seq_length)
    assert ids.count(codec.image_token_id) == end - start - 1
    with torch.no_grad():
        assert torch.isfinite(loaded.model(**codec.collate_prompts([item])).logits).all()


def _check_onevision_parts_path(loaded, codec, item):
    """LLaVA-OneVision's processor class needs torchvision (the real one: the torchvision-only
    test): a 64-pixel square image takes the 2 x 2 tile pinpoint, so it is 2n x 2n tile features,
    a new-line token per row and the whole image's n x n (n patches per tile side), and the model
    reads exactly that many image features."""
    config = loaded.model.config
    n = config.vision_config.image_size // config.vision_config.patch_size
    assert item["image"]["pixel_values"].shape[1] == 5  # 2 x 2 tiles + the whole image
    assert item["input_ids"].count(codec.image_token_id) == (2 * n) * (2 * n) + 2 * n + n * n
    with torch.no_grad():
        assert torch.isfinite(loaded.model(**codec.collate_prompts([item])).logits).all()


@pytest.mark.slow
def test_crops_are_padded_across_a_batch_and_the_padding_changes_nothing(loaded_tiny, demo_data, tmp_path):
    """An image split into 2 x 2 crops and a wide one split into 1 x 2 share a batch: the fewer
    crops are zero-padded (the model drops all-zero crops), the pixel attention mask marks the real
    pixels, and each row's logits equal those of the example alone."""
    name, loaded, codec = loaded_tiny
    if name not in CROPPED:
        pytest.skip("a check of the families that split images into crops")
    example = forget_examples(load_split(demo_data, "train"))[0]
    wide = tmp_path / "wide.png"
    Image.open(example.image).convert("RGB").resize((128, 48)).save(wide)
    items = [
        codec.encode_example(example),
        codec.encode_example(Example(wide, example.question, example.answer, "forget", "k2")),
    ]
    crops = [it["image"]["pixel_values"].shape[1] for it in items]
    assert crops[0] > crops[1]  # 2 x 2 crops + the whole image vs 1 x 2 + the whole image
    batch = codec.collate_train(items)
    assert batch["pixel_values"].shape[:2] == (2, crops[0]) and batch["pixel_attention_mask"].shape[:2] == (2, crops[0])
    assert not batch["pixel_values"][1, crops[1] :].any() and not batch["pixel_attention_mask"][1, crops[1] :].any()
    with torch.no_grad():
        together = loaded.model(**batch).logits
        for row, it in enumerate(items):
            alone = loaded.model(**codec.collate_train([it])).logits[0]
            assert torch.allclose(together[row, : alone.shape[0]], alone, atol=1e-4)


def _torchvision() -> bool:
    from safeeraser.models.parts import torchvision_importable

    return torchvision_importable()


@pytest.mark.slow
@pytest.mark.skipif(not _torchvision(), reason="the real Qwen processors need torchvision")
def test_parts_path_builds_what_the_real_qwen_processor_builds(loaded_tiny, tiny, demo_data):
    """Where torchvision imports (GPU installs), the processor-from-parts path and the real
    ``Qwen2_5_VLProcessor`` give the same ids, image grid and pixels for the same prompt."""
    from transformers import AutoProcessor

    from safeeraser.data.images import open_rgb
    from safeeraser.models.parts import PartsProcessor

    name, folder = tiny
    if not name.startswith("qwen"):
        pytest.skip("a Qwen check")
    family = family_named(name)
    codec = Codec(
        PartsProcessor.from_pretrained(folder, fallback_template=family.chat_template, image_token=family.image_token),
        family=family,
    )
    example = forget_examples(load_split(demo_data, "train"))[0]
    item = codec.encode_prompt(example.image, example.question)
    real = AutoProcessor.from_pretrained(folder)(
        text=[codec.prompt_text(example.question)], images=[open_rgb(example.image)], return_tensors="pt"
    )
    assert item["input_ids"] == real["input_ids"][0].tolist()
    assert torch.equal(item["image"]["image_grid_thw"], real["image_grid_thw"])
    assert item["mm_token_type_ids"] == real["mm_token_type_ids"][0].tolist()
    assert torch.allclose(item["image"]["pixel_values"], real["pixel_values"], atol=1e-5)


def _real_smolvlm(parts):
    pytest.importorskip("num2words", reason="SmolVLMProcessor imports num2words")
    from transformers import SmolVLMProcessor, SmolVLMVideoProcessor

    return SmolVLMProcessor(
        image_processor=parts.image_processor,
        tokenizer=parts.tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=parts.image_seq_len,
    )


def _real_internvl(parts):
    from transformers import InternVLProcessor, InternVLVideoProcessor

    return InternVLProcessor(
        image_processor=parts.image_processor,
        tokenizer=parts.tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=parts.image_seq_length,
    )


def _real_onevision(parts):
    from transformers import LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    return LlavaOnevisionProcessor(
        image_processor=parts.image_processor,
        tokenizer=parts.tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(),
        num_image_tokens=parts.num_image_tokens,
        vision_feature_select_strategy=parts.vision_feature_select_strategy,
        vision_aspect_ratio=parts.vision_aspect_ratio,
    )


REAL_PROCESSORS = {"smolvlm": _real_smolvlm, "internvl": _real_internvl, "llava_onevision": _real_onevision}


@pytest.mark.slow
@pytest.mark.skipif(
    not _torchvision(), reason="the real SmolVLM, InternVL and LLaVA-OneVision processors need torchvision"
)
def test_parts_path_builds_what_the_real_processor_builds(tiny, demo_data):
    """Where torchvision imports (GPU installs), the parts path and the real processor class
    (``SmolVLMProcessor``, ``InternVLProcessor``, ``LlavaOnevisionProcessor``, from the same folder's tokenizer, image processor
    and processor settings, with its video processor) give the same ids and image inputs."""
    from safeeraser.data.images import open_rgb
    from safeeraser.models.parts import PartsProcessor

    name, folder = tiny
    if name not in REAL_PROCESSORS:
        pytest.skip("a check of the parts-path families with their own processor settings")
    family = family_named(name)
    parts = PartsProcessor.from_pretrained(
        folder, fallback_template=family.chat_template, image_token=family.image_token
    )
    codec = Codec(parts, family=family)
    real = REAL_PROCESSORS[name](parts)
    example = forget_examples(load_split(demo_data, "train"))[0]
    item = codec.encode_prompt(example.image, example.question)
    out = real(text=[codec.prompt_text(example.question)], images=[open_rgb(example.image)], return_tensors="pt")
    assert item["input_ids"] == out["input_ids"][0].tolist()
    assert torch.allclose(item["image"]["pixel_values"], out["pixel_values"], atol=1e-5)
    if "pixel_attention_mask" in family.image_inputs:
        assert torch.equal(item["image"]["pixel_attention_mask"].bool(), out["pixel_attention_mask"].bool())


@pytest.mark.slow
def test_lora_adapts_every_decoder_layer_and_nothing_in_the_vision_tower(tiny):
    """The family's LoRA target, as unlearning builds it: one adapted query projection per decoder
    layer (Mllama's cross-attention layers included), none in the vision tower."""
    from safeeraser.unlearn.config import resolve_config
    from safeeraser.unlearn.trainer import _lora

    name, folder = tiny
    loaded = load_model(str(folder))
    peft_model = _lora(loaded.model, loaded.family, resolve_config(None, [], preset="demo"))
    adapted = [n.removesuffix(".lora_A") for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    queries = [n for n in adapted if n.endswith("q_proj")]
    assert len(queries) == loaded.model.config.get_text_config().num_hidden_layers
    assert not [n for n in adapted if "vision" in n or "visual" in n]
    if loaded.family.cross_attention:
        assert any(".cross_attn." in n for n in queries)


@pytest.mark.slow
def test_images_of_different_sizes_train_in_one_batch(loaded_tiny, demo_data, tmp_path):
    name, loaded, codec = loaded_tiny
    example = forget_examples(load_split(demo_data, "train"))[0]
    wide = tmp_path / "wide.png"
    Image.open(example.image).convert("RGB").resize((128, 64)).save(wide)
    items = [
        codec.encode_example(example),
        codec.encode_example(Example(wide, example.question + " Look.", example.answer, "forget", "k2")),
    ]
    assert len(items[0]["input_ids"]) != len(items[1]["input_ids"])  # right padding happens
    batch = codec.collate_train(items)
    family = loaded.family
    expected = {"input_ids", "attention_mask", "labels", *(k for k in family.image_inputs if k in items[0]["image"])}
    expected |= {family.token_types[0]} if family.token_types else set()
    expected |= {family.cross_attention} if family.cross_attention else set()
    assert set(batch) == expected
    loss = loaded.model(**batch).loss
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_batched_greedy_equals_one_prompt_at_a_time(loaded_tiny, demo_data):
    name, loaded, codec = loaded_tiny
    val = load_split(demo_data, "val")
    prompts = [Prompt(val.image(i), val.records[i].unsafe_pairs[0].question) for i in range(4)]
    prompts += [Prompt(val.image(i), qa.question) for i in range(2) for _, qa in val.records[i].unharm_pairs()[:2]]
    greedy = Sampling(max_new_tokens=16)
    batched = answer_all(loaded.model, codec, prompts, greedy, batch_size=len(prompts))
    single = answer_all(loaded.model, codec, prompts, greedy, batch_size=1)
    assert batched == single
    assert any(a for answers in batched for a in answers)  # it generated text
    assert (
        len({len(codec.encode_prompt(p.image, p.question)["input_ids"]) for p in prompts}) > 1
    )  # padding really happened


@contextlib.contextmanager
def _one_thread():
    """torch on one thread, as ``Cli``'s processes run (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


GENERATE = ["--split", "general", "--protocol", "fast", "--batch-size", "8", "--max-new-tokens", "6", "--seed", "5"]


@pytest.mark.slow
def test_unlearn_generate_with_resume_and_evaluate(tiny, demo_data, tmp_path):
    from peft import PeftModel

    from tests.reliability.conftest import Cli

    name, folder = tiny
    for method in ("po+pd", "kl"):
        code, _, err = run_cli(
            "unlearn",
            "--model",
            folder,
            "--data",
            demo_data,
            "--method",
            method,
            "--out",
            tmp_path / method,
            "--preset",
            "demo",
            "--max-steps",
            "3",
        )
        assert code == 0, err
        assert "3/3 steps" in err
    run = tmp_path / "po+pd"

    # the adapter loads with plain PEFT on the plain class and is the model the project generates with
    plain = PeftModel.from_pretrained(_plain_class(name).from_pretrained(folder), run / "adapter").eval()
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["modules_to_save"] == [TINY[name][2]]
    ours = attach_adapter(load_model(str(folder)), run)
    codec = Codec(ours.processor, family=ours.family)
    example = forget_examples(load_split(demo_data, "train"))[0]
    batch = codec.collate_train([codec.encode_example(example)])
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, ours.model(**batch).logits)
        base = _plain_class(name).from_pretrained(folder).eval()(**batch).logits
    assert not torch.equal(plain(**batch).logits, base)  # the adapter changed the model

    # generation: interrupted after its first batch, then resumed, ends as an uninterrupted run
    # (the killed run is a process of its own; the uninterrupted and the resumed run are run here,
    # on one thread as the killed one: a process fewer to start per family)
    args = ["generate", "--model", folder, "--adapter", run, "--data", demo_data, *GENERATE]
    clean = tmp_path / "clean.json"
    with _one_thread():
        code, _, err = run_cli(*args, "--out", clean)
    assert code == 0, err
    out = tmp_path / "pred_general.json"
    partial = tmp_path / "pred_general.json.partial.jsonl"
    first = Cli([*args, "--out", out], tmp_path / "log-1")
    first.wait_until(lambda: partial.exists() and partial.read_bytes().count(b"\n") >= 2, "a batch was finished")
    first.stop(signal.SIGKILL)
    assert not out.exists()
    with _one_thread():
        code, said, err = run_cli(*args, "--out", out)
    assert code == 0, err
    assert int(re.search(r"\((\d+) resumed\)", said + err).group(1)) > 0
    assert out.read_bytes() == clean.read_bytes()

    code, _, err = run_cli("evaluate", "--data", demo_data, "--pred-general", out, "--out", tmp_path / "metrics.json")
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["specificity"] <= 100.0  # judged from the real predictions
