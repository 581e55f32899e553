"""Unlearning configuration: published defaults, then a YAML file, then command-line overrides.

Every default lives in ``configs/default.yaml``; the schema here only types and bounds them —
except each method's own section ``method.<name>``, whose schema and defaults the method's module
declares (``unlearn/methods/``), so that a method is one module.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from safeeraser.errors import UserError, field_problem
from safeeraser.formats import RUN_CONFIG


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(_Strict):
    r: int = Field(gt=0)
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target: str | None
    train_projector: bool


class OptimSettings(_Strict):
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    warmup_ratio: float = Field(ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant", "released"]
    grad_clip: float | None = Field(gt=0)
    released_processes: int = Field(gt=0)


# Flat keys of earlier releases, each now a method's own setting: still read (in files, --set and
# old runs' config.yaml) and still readable as attributes.
LEGACY_METHOD_KEYS = {
    "npo_beta": ("npo", "beta"),
    "kl_direction": ("kl", "direction"),
    "kl_positions": ("kl", "positions"),
    "po_batch": ("po", "batch"),
}


class TextSettings(_Strict):
    capitalize: bool
    train_eos: bool


class _CommonMethodSettings(_Strict):
    """What every method shares; each method's own section is added from the registry below."""

    pd_weight: float | None = Field(ge=0)
    pd_retain_weight: float | None = Field(ge=0)
    forget_nll_bound: float | None = Field(gt=0)

    @property
    def npo_beta(self) -> float:
        return self.npo.beta

    @property
    def kl_direction(self) -> str:
        return self.kl.direction

    @property
    def kl_positions(self) -> str:
        return self.kl.positions

    @property
    def po_batch(self) -> str:
        return self.po.batch


def _method_settings() -> type[BaseModel]:
    from safeeraser.unlearn.methods import BASE_METHODS, EXTRA_SETTINGS

    sections = {
        name: (m.settings, Field(default_factory=m.settings))
        for name, m in BASE_METHODS.items()
        if m.settings is not None
    }
    sections |= {name: (schema, Field(default_factory=schema)) for name, schema in EXTRA_SETTINGS.items()}
    return create_model("MethodSettings", __base__=_CommonMethodSettings, **sections)


MethodSettings = _method_settings()


# the experiment trackers `--report-to` may name: those of accelerate's that log scalars per step
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")


class UnlearnConfig(_Strict):
    seed: int
    system_prompt: bool
    system_sentence: Literal["training", "inference"]
    dtype: Literal["auto", "bfloat16", "float32"]
    refusals: str | None
    lora: LoraSettings
    optim: OptimSettings
    epochs: float = Field(gt=0)
    max_steps: int | None = Field(gt=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(gt=0)
    max_length: int | None = Field(gt=0)
    max_answer_tokens: int | None = Field(gt=0)
    order: Literal["shuffled", "file"]
    text: TextSettings
    method: MethodSettings  # type: ignore[valid-type]
    checkpoint_every: int = Field(ge=0)
    eval_every: int = Field(ge=0)
    eval_samples: int = Field(gt=0)
    log_every: int = Field(gt=0)
    select: str | None
    early_stop: int = Field(ge=0)
    # (every default is in configs/default.yaml, with what it means; resolve_config starts from it)
    gradient_checkpointing: bool
    mixed_precision: Literal["no", "bf16", "fp16"] | None
    load_in_4bit: bool
    log_examples: bool
    report_to: list[Literal[TRACKERS]]  # type: ignore[valid-type]

    @field_validator("report_to", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """``--set report_to=tensorboard,wandb`` reads as a string: a comma-separated list."""
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


def packaged_config(name: str) -> dict:
    folder = resources.files("safeeraser").joinpath("configs")
    known = sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
    if name not in known:
        raise UserError(f"unknown --preset {name!r}: expected one of {', '.join(k for k in known if k != 'default')}")
    return yaml.safe_load(folder.joinpath(f"{name}.yaml").read_text())


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    return data


def parse_override(text: str) -> dict:
    """``optim.lr=1e-3`` -> ``{"optim": {"lr": 0.001}}`` (the value is read as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def resolve_config(
    file: Path | None = None,
    overrides: list[dict] | None = None,
    *,
    preset: str | None = None,
    origins: list[str] | None = None,
) -> UnlearnConfig:
    """Defaults <- packaged preset (e.g. ``demo``) <- YAML file <- overrides, validated.

    ``origins`` names where each override came from, for the error message (default: the command line).
    """
    # (layer, where its settings come from), lowest first: an error names the last layer that set the key
    layers = [(packaged_config("default"), "default settings")]
    if preset:
        layers.append((packaged_config(preset), f"--preset {preset}"))
    if file is not None:
        layers.append((read_yaml(file), str(file)))
    overrides = overrides or []
    layers += list(zip(overrides, origins or ["command line"] * len(overrides)))
    layers = [(_nest_legacy_keys(layer), where) for layer, where in layers]
    data: dict = {}
    for layer, _ in layers:
        data = _merge(data, layer)
    try:
        return UnlearnConfig.model_validate(data)
    except ValidationError as e:
        bad = field_problem(e)
        origin = next((where for layer, where in reversed(layers) if _sets(layer, bad.loc)), "config")
        raise UserError(f"{origin}: '{bad.field}': {bad.problem}{bad.more}") from None


def _nest_legacy_keys(layer: dict) -> dict:
    """A layer with ``method.npo_beta`` and kin moved to ``method.npo.beta`` (the same setting).

    Done layer by layer, before merging, so that a later layer wins whichever spelling each uses.
    """
    method = layer.get("method")
    if not isinstance(method, dict) or not any(key in method for key in LEGACY_METHOD_KEYS):
        return layer
    method = dict(method)
    for key, (section, name) in LEGACY_METHOD_KEYS.items():
        if key in method:
            value = method.pop(key)
            nested = method.get(section)
            method[section] = {**(nested if isinstance(nested, dict) else {}), name: value}
    return {**layer, "method": method}


def _sets(layer: dict, loc: tuple) -> bool:
    """Whether a layer of settings gives the setting at ``loc`` (a path of keys)."""
    node: Any = layer
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and part < len(node):  # an item of a list (report_to)
            node = node[part]
            continue
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def run_config(adapter: Path | None = None, config: Path | None = None) -> tuple[UnlearnConfig, Path | None]:
    """The settings a trained adapter was trained with, and the file they came from: ``config``
    when given, else the ``config.yaml`` of the run folder that holds the adapter (``adapter`` is a
    run folder or its ``adapter/``), else the released defaults (None)."""
    if config is None and adapter is not None:
        adapter = Path(adapter)
        config = next((c for c in (adapter / RUN_CONFIG, adapter.parent / RUN_CONFIG) if c.is_file()), None)
    return resolve_config(config), config


def dump_config(config: UnlearnConfig) -> str:
    return yaml.safe_dump(config.model_dump(), sort_keys=False)
