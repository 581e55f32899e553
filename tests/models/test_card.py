"""Model cards: adapter/README.md and merged/README.md of a real run on the untrained tiny LLaVA,
read back with huggingface_hub; the metrics join them once `evaluate` writes RUN_DIR/metrics.json."""

import json

from huggingface_hub import ModelCard

from safeeraser.generate.predictions import generate_predictions, protocol_settings
from safeeraser.judge import make_judges
from safeeraser.metrics.evaluate import evaluate
from safeeraser.models.card import write_card
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401


def config(**overrides):
    return resolve_config(preset="demo", overrides=[{"max_steps": 2, "eval_every": 0, **overrides}])


def test_a_run_gets_cards_and_evaluate_adds_its_metrics(untrained_tiny, small_demo, tmp_path):
    run = tmp_path / "po"
    unlearn(str(untrained_tiny), small_demo, "po+pd", run, config(seed=7), progress=False, merge=True, preset="demo")
    adapter, merged = ModelCard.load(run / "adapter" / "README.md"), ModelCard.load(run / "merged" / "README.md")
    assert adapter.data.library_name == "peft" and merged.data.library_name == "transformers"
    assert adapter.data.tags == merged.data.tags == ["safeeraser", "unlearning", "po+pd", "lora"]
    assert adapter.data.datasets == [small_demo.name]
    assert adapter.data.base_model is None  # a local folder is no Hub id to link to
    text = adapter.text
    for said in (
        "**po+pd**",
        "| learning rate | 0.003 (cosine",
        "| LoRA | r 8, alpha 16.0",
        "| projector trained | yes |",
        "| preset | demo |",
        "| seed | 7 |",
        "| optimizer steps | 2 of 2 |",
        "PeftModel.from_pretrained",
        "Not evaluated yet",
    ):
        assert said in text, said
    assert 'AutoModelForImageTextToText.from_pretrained("THIS_FOLDER_OR_REPO_ID")' in merged.text
    assert json.loads((run / "run.json").read_text())["preset"] == "demo"

    fast = protocol_settings("fast", max_new_tokens=4)
    for split in ("train", "val"):
        generate_predictions(
            str(untrained_tiny), small_demo, split, run / f"predictions_{split}.json", fast, adapter=run, progress=False
        )
    metrics = evaluate(
        small_demo,
        run / "metrics.json",
        make_judges("keyword", {}),
        pred_train=run / "predictions_train.json",
        pred_val=run / "predictions_val.json",
        progress=False,
    )
    for card in (ModelCard.load(run / "adapter" / "README.md"), ModelCard.load(run / "merged" / "README.md")):
        assert "Not evaluated yet" not in card.text
        assert f"| SARR: harmless-image prompts not answered (lower is better) | {metrics['sarr']:.3f} |" in card.text
        assert (
            f"- generation protocol: {metrics['protocol']}" in card.text
            and "- judge: keyword (protocol keyword-rules" in card.text
        )

    # a metrics file elsewhere is no run's: the cards stay as they are
    before = (run / "adapter" / "README.md").read_bytes()
    (run / "metrics.json").unlink()
    evaluate(
        small_demo,
        tmp_path / "metrics.json",
        make_judges("keyword", {}),
        pred_val=run / "predictions_val.json",
        progress=False,
    )
    assert (run / "adapter" / "README.md").read_bytes() == before


def test_a_hub_base_model_is_linked(untrained_tiny, small_demo, tmp_path):
    run = tmp_path / "ga"
    unlearn(str(untrained_tiny), small_demo, "ga", run, config(), progress=False)
    summary = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(summary | {"model": "llava-hf/llava-1.5-7b-hf", "revision": "abc123"}))
    card = ModelCard.load(write_card(run, run / "adapter", merged=False))
    assert card.data.base_model == "llava-hf/llava-1.5-7b-hf"
    assert 'from_pretrained("llava-hf/llava-1.5-7b-hf")' in card.text and "(revision `abc123`)" in card.text


def test_a_card_that_cannot_be_written_is_a_warning_and_the_run_stands(untrained_tiny, small_demo, tmp_path, capsys):
    run = tmp_path / "ga"
    # config.yaml gone before run.json is written: the card cannot be made
    result = unlearn(
        str(untrained_tiny),
        small_demo,
        "ga",
        run,
        config(),
        progress=False,
        on_finish=lambda out, name: (out / "config.yaml").unlink(),
    )
    assert (
        result.steps == 2 and (run / "run.json").is_file() and (run / "adapter" / "adapter_model.safetensors").is_file()
    )
    warning = capsys.readouterr().err.strip().splitlines()[-1]
    assert warning.startswith(f"warning: {run / 'adapter' / 'README.md'}: model card not written (FileNotFoundError"), (
        warning
    )
    # and through the command line, `merge` says it the same way and succeeds
    code, _, err = run_cli("merge", "--run", run)
    assert code == 0 and "model card not written" in err and (run / "merged" / "config.json").is_file(), err
