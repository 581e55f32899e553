"""SineProject and MMUnlearner end to end on two families' tiny copies (LLaVA and Qwen2-VL): the
`unlearn` command trains them, the adapter loads back, and `merge` folds SineProject's projector
into plain weights that plain transformers loads with the adapter model's outputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from safeeraser.data.records import load_split
from safeeraser.data.views import view_examples
from safeeraser.models.codec import Codec
from safeeraser.models.loading import attach_adapter, load_model
from safeeraser.unlearn.methods import Forward
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.unlearn.test_training import config

pytestmark = pytest.mark.slow

FAMILY = "qwen2_vl"  # the non-LLaVA family (its projector: visual.merger)


@pytest.fixture(scope="module")
def qwen_model(demo_data, tmp_path_factory):
    from safeeraser.models.tiny import make_tiny

    out = tmp_path_factory.mktemp("successors") / FAMILY
    make_tiny(demo_data, out, family=FAMILY, steps=20, progress=False)
    return out


@pytest.fixture(params=["llava", FAMILY])
def model(request):
    return request.getfixturevalue("tiny_model" if request.param == "llava" else "qwen_model")


def logits(model, loaded, data) -> torch.Tensor:
    codec = Codec(loaded.processor, family=loaded.family)
    batch = codec.collate_train(
        [codec.encode_example(e) for e in view_examples(load_split(data, "train"), "forget")[:2]]
    )
    with torch.no_grad():
        return Forward(model).logits(batch)


@pytest.mark.parametrize("method", ["po+pd+sineproject", "mmunlearner+pd"])
def test_unlearn_runs_them_and_the_adapter_loads_back(method, model, demo_data, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(
        "unlearn",
        "--model",
        model,
        "--data",
        demo_data,
        "--method",
        method,
        "--out",
        run,
        "--preset",
        "demo",
        "--max-steps",
        "2",
    )
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["method"] == method
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    logged = {
        "po+pd+sineproject": {"refusal+retain_nll", "decouple_nll"},
        "mmunlearner+pd": {"forget_nll", "retain_nll", "decouple_nll"},
    }[method]
    assert set(rows[-1]) - {"eval"} == {"step", "lr", "loss"} | logged  # (the demo preset probes the last step)
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    base = load_model(str(model))
    projector = base.family.projector
    if method.endswith("sineproject"):
        # the projector frozen (no full copy saved), its update in the sine layers' A and B
        assert not [k for k in weights if projector in k and "lora_" not in k]
        sine = json.loads((run / "adapter" / "sineproject.json").read_text())
        assert sine["frequency"] == 100.0 and sine["modules"] and all(projector in m for m in sine["modules"])
        b = [v for k, v in weights.items() if projector in k and "lora_B" in k]
        assert len(b) == len(sine["modules"]) and any(v.abs().max() > 0 for v in b)  # trained
    else:
        assert [k for k in weights if projector in k and "lora_" not in k] and not (
            run / "adapter" / "sineproject.json"
        ).exists()  # trained in full
    adapted = attach_adapter(load_model(str(model)), run)
    assert not torch.allclose(logits(adapted.model, adapted, demo_data), logits(base.model, base, demo_data), atol=1e-4)
    # the adapter's card says how to load it: through safeeraser where plain PEFT would misread it
    assert ("sineproject.json" in (run / "adapter" / "README.md").read_text()) == method.endswith("sineproject")


def test_merge_folds_sineproject_into_plain_weights(model, demo_data, tmp_path):
    import transformers

    run = tmp_path / "sine"
    unlearn(str(model), demo_data, "sineproject", run, config(max_steps=3), progress=False)
    code, _, err = run_cli("merge", "--run", run)
    assert code == 0, err
    adapted = attach_adapter(load_model(str(model)), run)
    merged = getattr(transformers, adapted.family.model_class).from_pretrained(run / "merged").eval()
    assert type(merged).__module__.startswith("transformers.")
    assert torch.allclose(logits(merged, adapted, demo_data), logits(adapted.model, adapted, demo_data), atol=1e-4)
    # the merged projector is W0 + the sine update: changed, and by at most 1/sqrt(in) per entry
    new, old = load_file(str(run / "merged" / "model.safetensors")), load_file(str(model / "model.safetensors"))
    names = json.loads((run / "adapter" / "sineproject.json").read_text())["modules"]
    changed = 0
    for name in names:
        key = next(k for k in new if k.endswith(name.split(".", 1)[-1] + ".weight") and k in old)
        diff = (new[key].float() - old[key].float()).abs()
        assert diff.max() <= 1 / math.sqrt(old[key].shape[1]) + 1e-6
        changed += int(diff.max() > 0)
    assert changed  # the update is merged in
    # everything outside the projector and the language model's LoRA targets is untouched
    assert all(torch.equal(new[k], old[k]) for k in old if "embed" in k or "norm" in k)


def test_the_saliency_mask_restricts_the_forget_term_in_training(qwen_model, demo_data, tmp_path):
    def adapter(name, **mmunlearner):
        unlearn(
            str(qwen_model),
            demo_data,
            "mmunlearner",
            tmp_path / name,
            config(max_steps=2, method={"mmunlearner": mmunlearner}),
            progress=False,
        )
        return load_file(str(tmp_path / name / "adapter" / "adapter_model.safetensors"))

    # a threshold no weight reaches: the forget term moves nothing, so its weight changes nothing
    shut = adapter("shut1", threshold=1e30), adapter("shut5", threshold=1e30, forget_weight=5.0)
    assert all(torch.equal(shut[0][k], shut[1][k]) for k in shut[0])
    # at the released threshold it does
    open_ = adapter("open1"), adapter("open5", forget_weight=5.0)
    assert any(not torch.equal(open_[0][k], open_[1][k]) for k in open_[0])
