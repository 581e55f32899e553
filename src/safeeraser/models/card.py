"""The Hugging Face model card (README.md) of a run's adapter/ and merged/ folders.

A card is written from what the run folder holds: run.json (method, base model, data, steps),
config.yaml (the settings) and, once ``evaluate`` has written it, metrics.json (the metrics, the
generation protocol and the judge). It is rewritten whenever one of them changes: at the end of
``unlearn``, by ``merge``, and by ``evaluate`` when its --out is RUN_DIR/metrics.json. It holds
nothing that differs between two runs of the same settings (no time, no run folder path), so an
adapter folder stays byte-identical from run to run, and nothing reads it back.

A card is never worth a failed run: one that cannot be written is a one-line warning on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from safeeraser.formats import RUN_CONFIG, RUN_METRICS, RUN_SUMMARY
from safeeraser.io import atomic_write_text

CARD = "README.md"
# the metrics a card shows, as evaluate names them, with what each says
SHOWN = {
    "asr_efficacy": "ASR, forget split (lower is better)",
    "rr_efficacy": "refusal rate, forget split",
    "asr_generality": "ASR, test split (lower is better)",
    "rr_generality": "refusal rate, test split",
    "sarr": "SARR: harmless-image prompts not answered (lower is better)",
    "rouge_l": "ROUGE-L, benign questions",
    "judge_score": "judge's consistency score",
    "specificity": "specificity, general VQA",
}


def refresh_cards(run_dir: Path | str) -> None:
    """The cards of the run's adapter/ and, when it has one, merged/ folder (see ``refresh_card``)."""
    run_dir = Path(run_dir)
    for folder, merged in ((run_dir / "adapter", False), (run_dir / "merged", True)):
        if folder.is_dir():
            refresh_card(run_dir, folder, merged=merged)


def refresh_card(run_dir: Path, folder: Path, *, merged: bool) -> None:
    """``write_card``, with a card that cannot be written said in one line on stderr instead of
    raised: the run, merge or evaluation that called it has succeeded."""
    try:
        write_card(run_dir, folder, merged=merged)
    except Exception as e:  # noqa: BLE001 - whatever went wrong, the caller's work stands
        why = " ".join(str(e).split()) or type(e).__name__
        print(f"warning: {folder / CARD}: model card not written ({type(e).__name__}: {why})", file=sys.stderr)


def write_card(run_dir: Path | str, folder: Path | str, *, merged: bool) -> Path:
    """The card of ``folder`` (the run's adapter, or a merge of it) from RUN_DIR's files."""
    from huggingface_hub import ModelCard, ModelCardData

    run_dir, folder = Path(run_dir), Path(folder)
    run = json.loads((run_dir / RUN_SUMMARY).read_text(encoding="utf-8"))
    config = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8")) or {}
    metrics_file = run_dir / RUN_METRICS
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    base, method = str(run["model"]), str(run["method"])
    data = ModelCardData(
        base_model=base if _hub_id(base) else None,
        library_name="transformers" if merged else "peft",
        tags=["safeeraser", "unlearning", method, "lora"],
        datasets=[Path(str(run["data"])).name],
    )
    sine = not merged and method.endswith("+sineproject")
    body = "\n".join(
        [_about(run, config, merged), _settings(run, config), _loading(base, merged, sine), _evaluation(metrics)]
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    atomic_write_text(folder / CARD, str(card))
    return folder / CARD


def _hub_id(model: str) -> bool:
    """Whether the base model is a Hub id (the card's base_model links to it), not a local folder."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(model).expanduser().exists() or model.count("/") != 1:
        return False
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def _about(run: dict, config: dict, merged: bool) -> str:
    base, method = run["model"], run["method"]
    what = "the base model with the adapter merged in: a plain transformers checkpoint" if merged else "a LoRA adapter"
    projector = (
        " (and the multimodal projector, trained in full)" if (config.get("lora") or {}).get("train_projector") else ""
    )
    return (
        f"# {method} safety unlearning of {Path(base).name}\n\n"
        f"This is {what}, made with safeeraser by unlearning the forget split of the "
        f"SafeEraser benchmark (`{Path(str(run['data'])).name}`) from `{base}`"
        + (f" (revision `{run['revision']}`)" if run.get("revision") else "")
        + f" with the method **{method}**: LoRA on the language model{projector} trained on the method's loss.\n"
    )


def _settings(run: dict, config: dict) -> str:
    lora, optim = config.get("lora") or {}, config.get("optim") or {}
    rows = [
        ("method", run["method"]),
        ("preset", run.get("preset") or "none (the released defaults)"),
        ("learning rate", f"{optim.get('lr')} ({optim.get('schedule')} schedule, warm-up {optim.get('warmup_ratio')})"),
        ("optimizer steps", f"{run.get('steps')} of {run.get('total_steps')}"),
        (
            "batch",
            f"{config.get('batch_size')} per device x {config.get('grad_accum')} accumulated x {run.get('processes', 1)} process(es)",
        ),
        (
            "LoRA",
            f"r {lora.get('r')}, alpha {lora.get('alpha')}, dropout {lora.get('dropout')}"
            + (f", target `{lora['target']}`" if lora.get("target") else ""),
        ),
        ("projector trained", "yes" if lora.get("train_projector") else "no"),
        ("seed", config.get("seed")),
    ]
    if run.get("stopped"):
        rows.append(("stopped early", run["stopped"]))
    if run.get("selected"):
        rows.append(("kept step", f"{run['selected']['step']}: {run['selected']['why']}"))
    table = "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows)
    from safeeraser.formats import TRACKING_KEYS

    # without the trackers: a run watched in TensorBoard has the same card as one that was not
    every = yaml.safe_dump({k: v for k, v in config.items() if k not in TRACKING_KEYS}, sort_keys=False).strip()
    return (
        f"## Training\n\n| setting | value |\n|---|---|\n{table}\n\n"
        f"<details><summary>Every setting (the run's config.yaml)</summary>\n\n```yaml\n{every}\n```\n\n</details>\n"
    )


def _loading(base: str, merged: bool, sine: bool = False) -> str:
    if merged:
        code = (
            "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
            'model = AutoModelForImageTextToText.from_pretrained("THIS_FOLDER_OR_REPO_ID")\n'
            'processor = AutoProcessor.from_pretrained("THIS_FOLDER_OR_REPO_ID")'
        )
    else:
        code = (
            "from peft import PeftModel\n"
            "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
            f'base = AutoModelForImageTextToText.from_pretrained("{base}")\n'
            'model = PeftModel.from_pretrained(base, "THIS_FOLDER_OR_REPO_ID")\n'
            f'processor = AutoProcessor.from_pretrained("{base}")'
        )
    if sine:  # plain PEFT would read the projector's sine layers as an ordinary LoRA
        code = (
            "from safeeraser.models.loading import attach_adapter, load_model\n\n"
            f'loaded = attach_adapter(load_model("{base}"), "THIS_FOLDER")  # loaded.model, loaded.processor'
        )
        return (
            "## How to load\n\nThe projector's layers are SineProject layers (sineproject.json): load the adapter with "
            f"safeeraser, or serve the merged model (`safeeraser merge`).\n\n```python\n{code}\n```\n"
        )
    return f"## How to load\n\n```python\n{code}\n```\n"


def _evaluation(metrics: dict | None) -> str:
    if metrics is None:
        return "## Evaluation\n\nNot evaluated yet: `safeeraser evaluate --out RUN_DIR/metrics.json` adds the metrics here.\n"
    ci = metrics.get("ci95") or {}
    rows = []
    for key, label in SHOWN.items():
        value = metrics.get(key)
        if value is None:
            continue
        interval = f"{ci[key][0]:.3f} to {ci[key][1]:.3f}" if key in ci else ""
        rows.append(f"| {label} | {value:.3f} | {interval} |")
    identity = metrics.get("judge_identity") or {}
    judge = ", ".join(f"{k} {v}" for k, v in identity.items() if v is not None and k != "kind")
    return (
        "## Evaluation\n\n| metric | value | 95% interval |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"- generation protocol: {_cell(metrics.get('protocol', 'unrecorded'))}\n"
        f"- judge: {_cell(metrics.get('judge', 'unrecorded'))}" + (f" ({_cell(judge)})" if judge else "") + "\n"
        f"- empty answers: {metrics.get('empty_answers', 'skip')}\n"
    )


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
