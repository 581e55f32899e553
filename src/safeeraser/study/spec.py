"""A study file: a grid of runs (methods × seeds × settings) and what they share (data, model,
unlearning preset and settings, generation protocol, judge). ``load_study`` reads and checks
it completely — every grid point's unlearning config included — before anything runs, so a
mistake is one line naming the file and the key.

    data: {demo: {images_per_category: 12}}   # or a dataset folder (relative to this file)
    model: {tiny: {steps: 600}}               # or a model folder / Hugging Face id
    preset: demo                              # as `unlearn --preset`
    config: null                              # as `unlearn --config` (relative to this file)
    settings: {max_steps: 100}                # as `unlearn --set`, for every run
    methods: [vanilla, po, po+pd]             # vanilla: the model without unlearning, once per seed
    seeds: [0, 1]
    grid: {pd_weight: [0.5, 1.0]}             # any setting: every combination is a cell
    generation: {protocol: published, max_new_tokens: 48}   # as `generate`; seed null = the run's seed
    judge: keyword                            # as `evaluate --judge`
    evaluation: {empty_answers: released, judge_score: released}   # as `evaluate --empty-answers`, --judge-protocol, --judge-score
    slurm: {partition: gpu, time_min: 720, gpus_per_run: 1}   # sweep --launcher slurm: each run a job (docs/studies.md)
    audit: {attacks: [quant4, relearn, figstep]}   # `safeeraser audit` of each run into its audit/ (attacks null: all)
    run_folder: "{cell}/seed{seed}"           # under DIR/runs/; fields {cell}, {method}, {seed}
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safeeraser.data.demo import IMAGES_PER_CATEGORY, MIN_IMAGES_PER_CATEGORY
from safeeraser.errors import UserError, field_problem
from safeeraser.generate import GENERATION_BATCH_SIZE
from safeeraser.models.families import DEFAULT_FAMILY

# Names that `unlearn` takes as flags, usable as grid and settings keys; any other key is a dotted setting.
KEY_ALIASES = {"pd_weight": "method.pd_weight", "lr": "optim.lr"}
DEFAULT_RUN_FOLDER = "{cell}/seed{seed}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoData(_Strict):
    images_per_category: int = Field(IMAGES_PER_CATEGORY, ge=MIN_IMAGES_PER_CATEGORY)
    seed: int = 0


class DemoDataSpec(_Strict):
    demo: DemoData


class TinyModel(_Strict):
    steps: int | None = Field(None, ge=0)  # None: make-tiny's default for the size
    seed: int = 0
    family: str = DEFAULT_FAMILY
    size: str = "tiny"


class TinyModelSpec(_Strict):
    tiny: TinyModel


class GenerationSpec(_Strict):
    protocol: str = "published"
    num_samples: int | None = Field(None, gt=0)
    max_new_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    sample_single: bool | None = None
    system_prompt: bool | None = None
    batch_size: int = Field(GENERATION_BATCH_SIZE, gt=0)
    seed: int | None = None  # None: each run generates with its own seed


class EvaluationSpec(_Strict):
    empty_answers: Literal["skip", "judge", "released"] = "skip"
    judge_protocol: Literal["published", "question-aware", "strict"] | None = None  # LLM judges (openai, hf)
    judge_score: Literal["ours", "released"] | None = None  # LLM judges' consistency score

    def changed(self) -> dict:
        """The settings given other than their defaults (a study that leaves them out records none)."""
        return self.model_dump(exclude_defaults=True)


class SlurmSpec(_Strict):
    """What each run's job asks of the cluster (sweep --launcher slurm); submitit turns it into sbatch options."""

    partition: str | None = None
    time_min: int = Field(24 * 60, gt=0)  # the job's time limit, minutes
    gpus_per_run: int = Field(1, ge=0)
    cpus_per_run: int | None = Field(None, gt=0)
    mem_gb: int | None = Field(None, gt=0)
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int | None = Field(None, gt=0)  # runs at once (default: Slurm's)
    job_name: str = "safeeraser"
    setup: list[str] = Field(
        default_factory=list
    )  # shell lines before each run, e.g. module load, source venv/bin/activate
    sbatch: dict[str, Any] = Field(default_factory=dict)  # any other #SBATCH option, e.g. {exclude: "node07"}


class AuditSpec(_Strict):
    """``safeeraser audit`` of every run, into the run's ``audit/`` folder, after its evaluation."""

    attacks: list[str] | None = None  # None: every attack (as `audit` without --attacks)


class StudyFile(_Strict):
    data: Any  # a dataset folder, or DemoDataSpec (checked in parse_study, so that errors name the key inside)
    model: Any  # a model folder or hub id, or TinyModelSpec
    preset: str | None = None
    config: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    methods: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    judge: str = "keyword"
    judge_model: str | None = None
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)  # only for sweep --launcher slurm / submitit-local
    audit: AuditSpec | None = None  # None: no audit
    run_folder: str = DEFAULT_RUN_FOLDER


@dataclass(frozen=True)
class RunSpec:
    """One grid point: the run folder's name under ``runs/``, its cell (method and grid settings) and seed."""

    name: str
    cell: str
    method: str
    seed: int
    settings: tuple[tuple[str, Any], ...] = ()
    config: dict = field(default_factory=dict, compare=False, hash=False)  # the resolved unlearning config


@dataclass
class Study:
    file: StudyFile
    source: str  # where it was read from, for messages
    base: Path  # relative paths in the file are relative to this folder
    runs: list[RunSpec]

    @property
    def seeds(self) -> list[int]:
        return list(self.file.seeds)

    def generation(self, seed: int):
        from safeeraser.generate.predictions import protocol_settings

        g = self.file.generation.model_dump()
        protocol, gen_seed = g.pop("protocol"), g.pop("seed")
        return protocol_settings(protocol, **g, seed=seed if gen_seed is None else gen_seed)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p


def nest(key: str, value: Any) -> dict:
    """``optim.lr`` and a value -> ``{"optim": {"lr": value}}`` (``pd_weight`` and ``lr`` as `unlearn`'s flags)."""
    parts = KEY_ALIASES.get(key, key).split(".")
    out: dict = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def _merge_all(layers: list[dict]) -> dict:
    from safeeraser.unlearn.config import _merge

    out: dict = {}
    for layer in layers:
        out = _merge(out, layer)
    return out


def value_text(value: Any) -> str:
    """A grid value as it reads in a folder name and a table: YAML's spelling (0.5, true, null)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _validate(model: type[BaseModel], data: Any, source: str, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        bad = field_problem(e)
        where = ".".join(p for p in (prefix, bad.field) if p)
        raise UserError(f"{source}: '{where}': {bad.problem}{bad.more}") from None


def parse_study(data: Any, source: str, base: Path) -> Study:
    """Check a study read from YAML; ``source`` names it in every error."""
    from safeeraser.unlearn.config import resolve_config
    from safeeraser.unlearn.methods import VANILLA, canonical_name

    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of study settings at the top level")
    spec = _validate(StudyFile, data, source)
    for key, built, words in (
        ("data", DemoDataSpec, "a dataset folder or {demo: {images_per_category: N}}"),
        ("model", TinyModelSpec, "a model folder, a Hugging Face id or {tiny: {steps: N}}"),
    ):
        value = getattr(spec, key)
        if isinstance(value, dict):
            setattr(spec, key, _validate(built, value, source, key))
        elif not isinstance(value, str) or not value.strip():
            raise UserError(f"{source}: '{key}': expected {words} (got {type(value).__name__})")
    methods = []
    for i, name in enumerate(spec.methods):
        try:
            method = VANILLA if name.strip().lower() == VANILLA else canonical_name(name)
        except UserError as e:
            raise UserError(f"{source}: 'methods[{i}]': {e}") from None
        if method in methods:
            raise UserError(f"{source}: 'methods[{i}]': {method} is listed twice")
        methods.append(method)
    llm_options = [k for k in ("judge_protocol", "judge_score") if getattr(spec.evaluation, k) is not None]
    if llm_options and not any(kind in spec.judge for kind in ("openai", "hf")):
        raise UserError(
            f"{source}: 'evaluation.{llm_options[0]}': only an LLM judge (openai, hf) takes it, not judge {spec.judge!r}"
        )
    if spec.audit is not None:
        from safeeraser.audit.run import parse_attacks

        try:
            attacks = parse_attacks(",".join(spec.audit.attacks) if spec.audit.attacks is not None else None)
        except UserError as e:
            raise UserError(f"{source}: 'audit.attacks': {str(e).replace('--attacks ', 'attacks ')}") from None
        spec.audit.attacks = list(attacks)
    if len(set(spec.seeds)) != len(spec.seeds):
        raise UserError(f"{source}: 'seeds': a seed is listed twice ({spec.seeds})")
    for key, values in spec.grid.items():
        if not values:
            raise UserError(f"{source}: 'grid.{key}': expected a non-empty list of values")
        if len({value_text(v) for v in values}) != len(values):
            raise UserError(f"{source}: 'grid.{key}': a value is listed twice ({values})")
    for key in ("seed",):
        if key in spec.settings or key in spec.grid:
            raise UserError(
                f"{source}: '{'settings' if key in spec.settings else 'grid'}.{key}': the study's seeds are given by 'seeds'"
            )
    if spec.preset is not None:
        from safeeraser.unlearn.config import packaged_config

        try:
            packaged_config(spec.preset)
        except UserError as e:
            raise UserError(f"{source}: 'preset': {str(e).replace('--preset ', 'preset ')}") from None
    config_file = None
    if spec.config is not None:
        config_file = Path(spec.config).expanduser()
        config_file = config_file if config_file.is_absolute() else base / config_file
    study = Study(spec, source, base, [])
    try:
        study.generation(0).validate()
    except UserError as e:
        raise UserError(f"{source}: 'generation': {str(e).replace('--protocol ', 'protocol ')}") from None

    fixed = _merge_all([nest(k, v) for k, v in spec.settings.items()])
    keys = list(spec.grid)
    runs: list[RunSpec] = []
    names: dict[str, RunSpec] = {}
    for seed in spec.seeds:
        for method in methods:
            combos = [()] if method == VANILLA else list(itertools.product(*(spec.grid[k] for k in keys)))
            for combo in combos:
                settings = tuple(zip(keys, combo)) if method != VANILLA else ()
                cell = method + "".join(f"__{k}={value_text(v)}" for k, v in settings)
                point = _merge_all([nest(k, v) for k, v in settings])
                config = resolve_config(
                    config_file,
                    [{"seed": seed}, fixed, point],
                    preset=spec.preset,
                    origins=[f"{source}: seeds", f"{source}: settings", f"{source}: grid"],
                )
                try:
                    name = spec.run_folder.format(cell=cell, method=method, seed=seed)
                except (KeyError, IndexError, ValueError) as e:
                    raise UserError(
                        f"{source}: 'run_folder': {spec.run_folder!r} is not a folder template with {{cell}}, {{method}}, {{seed}} ({e})"
                    ) from None
                if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
                    raise UserError(f"{source}: 'run_folder': {name!r} is not a folder name under runs/")
                run = RunSpec(name, cell, method, seed, settings, config.model_dump())
                if name in names:
                    raise UserError(
                        f"{source}: 'run_folder': {spec.run_folder!r} gives two runs one folder ({name}): add {{cell}} and {{seed}}"
                    )
                names[name] = run
                runs.append(run)
    study.runs = runs
    return study


def load_study(path: Path) -> Study:
    """Read and check a study YAML file (``read_yaml``'s one-line errors for a missing or broken file)."""
    from safeeraser.unlearn.config import read_yaml

    path = Path(path)
    data = read_yaml(path)
    return parse_study(data, str(path), path.resolve().parent)


def packaged_study(name: str) -> dict:
    """A study shipped with the package (``configs/studies/NAME.yaml``), as a mapping to adjust."""
    folder = resources.files("safeeraser").joinpath("configs", "studies")
    text = folder.joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)
