"""Quantization attacks: the merged model's linear weights really are bitsandbytes-quantized."""

import json

import pytest
import torch

from safeeraser.generate.predictions import GenerationSettings, generate_predictions
from safeeraser.models.loading import load_model
from tests.small import small_demo, untrained_tiny  # noqa: F401  (fixtures)

bnb = pytest.importorskip("bitsandbytes")
from safeeraser.audit.quantize import QUANT_ATTACKS, library, merge_and_quantize, quantized_backend  # noqa: E402


def linear_weights(model) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().clone() for name, m in model.named_modules() if type(m) is torch.nn.Linear}


@pytest.mark.parametrize("bits", [8, 4])
def test_every_linear_layer_but_the_output_is_quantized_onto_the_grid(untrained_tiny, bits):  # noqa: F811
    loaded = load_model(str(untrained_tiny), device=torch.device("cpu"))
    before = linear_weights(loaded.model)
    merge_and_quantize(loaded, bits)
    model = loaded.model
    output = model.get_output_embeddings()
    assert type(output) is torch.nn.Linear  # the output layer stays in full precision
    quantized = {
        name: m for name, m in model.named_modules() if isinstance(m, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit))
    }
    assert set(quantized) == {
        name for name, w in before.items() if w.shape != output.weight.shape or not torch.equal(w, output.weight)
    }
    assert len(quantized) > 20
    for name, layer in quantized.items():
        original = before[name]
        if bits == 8:
            assert isinstance(layer, bnb.nn.Linear8bitLt) and isinstance(layer.weight, bnb.nn.Int8Params)
            assert layer.weight.dtype == torch.int8
            step = layer.weight.SCB[:, None] / 127  # one scale per output row
            restored = layer.weight.data.float() * step
            assert torch.all((restored - original).abs() <= step)  # a point of the row's int8 grid next to the weight
            assert torch.equal(
                layer.weight.data.abs().amax(1), torch.full_like(layer.weight.SCB, 127, dtype=torch.int8)
            )  # absmax scaling
        else:
            assert isinstance(layer, bnb.nn.Linear4bit) and isinstance(layer.weight, bnb.nn.Params4bit)
            assert (
                layer.weight.dtype == torch.uint8 and layer.weight.numel() * 2 == original.numel()
            )  # two 4-bit codes a byte
            state = layer.weight.quant_state
            restored = bnb.functional.dequantize_4bit(layer.weight.data, state)
            blocks = restored.reshape(-1, state.blocksize) / state.absmax[:, None]
            nf4 = bnb.functional.get_4bit_type("nf4", device="cpu")
            assert (blocks[..., None] - nf4).abs().min(-1).values.max() < 1e-5  # every weight one of the 16 NF4 values
        # and the full-precision weights were not on it: quantization moved them
        assert not torch.equal(restored, original)


def test_generation_runs_on_the_quantized_model_and_records_it(untrained_tiny, small_demo, tmp_path):  # noqa: F811
    settings = GenerationSettings(num_samples=1, max_new_tokens=4, batch_size=8)
    backend = quantized_backend(str(untrained_tiny), None, QUANT_ATTACKS["quant4"], batch_size=8, system_prompt=True)
    out = tmp_path / "pred.json"
    meta = generate_predictions(str(untrained_tiny), small_demo, "val", out, settings, backend=backend, progress=False)
    assert meta["backend"] == {
        "kind": "hf",
        "transform": {"quantization": backend.transform_identity["quantization"], "library": library()},
    }
    assert library().startswith("bitsandbytes ")
    assert json.loads(out.read_text())[0]["unsafe_pairs"][0]["model_response1"] is not None
