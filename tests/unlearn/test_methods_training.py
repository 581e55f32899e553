"""Each added method, a few steps on the tiny LLaVA of the demo data, moves what it should."""

import torch

from safeeraser.data.records import load_split
from safeeraser.data.views import view_examples
from safeeraser.models.codec import IGNORE, Codec
from safeeraser.models.loading import attach_adapter, load_model
from safeeraser.unlearn.methods import Forward
from safeeraser.unlearn.trainer import unlearn
from tests.unlearn.test_training import config, view_nll


def run(tiny_model, demo_data, method, out, steps=20, **overrides):
    result = unlearn(str(tiny_model), demo_data, method, out, config(max_steps=steps, **overrides), progress=False)
    assert result.steps == steps and result.stopped is None


def test_simnpo_wga_and_undial_raise_the_forget_nll(tiny_model, demo_data, tmp_path):
    # The tiny model answers its forget set at about 0.002 nats/token, where every ascent starts
    # slowly (the gradient of -log p vanishes as p -> 1), and SimNPO and WGA also train on retain:
    # a constant learning rate, and for WGA a higher one, let them take off within a short run.
    before = view_nll(tiny_model, demo_data, "forget")
    for method, steps, optim in (("simnpo", 40, {}), ("wga", 30, {"lr": 1e-2}), ("undial", 20, {})):
        run(tiny_model, demo_data, method, tmp_path / method, steps=steps, optim={"schedule": "constant", **optim})
        after = view_nll(tiny_model, demo_data, "forget", tmp_path / method)
        assert after > before + 1.0, (method, before, after)


def test_dpo_and_idkdpo_widen_the_refusal_over_harmful_margin(tiny_model, demo_data, tmp_path):
    def margin(adapter=None):  # how much likelier (per token) the refusal is than the harmful answer
        return view_nll(tiny_model, demo_data, "forget", adapter) - view_nll(tiny_model, demo_data, "refusal", adapter)

    before = margin()
    for method in ("dpo", "idkdpo"):
        run(tiny_model, demo_data, method, tmp_path / method)
        assert margin(tmp_path / method) > before + 1.0, method


def test_rmu_pulls_the_layer_toward_the_control_vector_on_forget_answers(tiny_model, demo_data, tmp_path):
    layer, c, seed = 0, 6.5, 0  # the demo preset's layer; the defaults' c and seed

    def distance(adapter=None) -> float:
        loaded = load_model(str(tiny_model))
        if adapter is not None:
            attach_adapter(loaded, adapter)
        codec = Codec(loaded.processor)
        examples = view_examples(load_split(demo_data, "train"), "forget")[:32]
        batch = codec.collate_train([codec.encode_example(e) for e in examples])
        u = torch.rand(loaded.model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            h = Forward(loaded.model).hidden(batch, layer)
        answer = batch["labels"] != IGNORE
        return float(((h[answer] - c * u / u.norm()) ** 2).mean())

    before = distance()
    run(tiny_model, demo_data, "rmu", tmp_path / "rmu")
    assert distance(tmp_path / "rmu") < 0.5 * before
