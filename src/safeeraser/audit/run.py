"""`safeeraser audit`: stress tests of one unlearned run, measured with SafeEraser's own metrics.

AUDIT_DIR/baseline/ holds the un-attacked run (its predictions reused from the run folder when
they were generated under the audit's protocol from the same data and adapter, else generated
there), judged by the audit's judge. Each attack then runs in AUDIT_DIR/<attack>/ and, when it
finishes, leaves ``result.json`` there: a rerun skips it, and a killed attack resumes from its
partial files (the attacked data copy, generation's resume file, relearning's checkpoints).
AUDIT_DIR/audit.json (rewritten after every attack) and audit.md gather the results:

- a metric attack (quantization, the input attacks): the metrics as ``evaluate`` reports them
  (ASR/RR efficacy and generality, SARR, ROUGE-L where it applies), their change against the
  baseline (``delta``), the counts behind them, the seconds it took (for quantization, the library);
- ``relearn``: ASR on the harmful training pairs relearning left out, for the unlearned model
  (0 steps), after each step budget, and for the vanilla model (the base, no adapter: the ceiling),
  with the share of the forgotten ASR that came back;
- ``mia``: the membership-inference AUCs on the harmful answers, with the vanilla model's beside them.

An attack that cannot run here is ``{"status": "not run", "reason": ...}`` and is tried again on
the next run; it is never reported as zeros.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from safeeraser.audit.attacks import INPUT_ATTACKS, write_attacked_data
from safeeraser.audit.quantize import QUANT_ATTACKS
from safeeraser.audit.summary import AUDIT_FILE, TABLE, attack_rows, load_audit, to_markdown  # noqa: F401
from safeeraser.data.records import GENERAL_FILE, split_file
from safeeraser.environment import manifest
from safeeraser.errors import UserError
from safeeraser.formats import meta_path, run_predictions
from safeeraser.generate.predictions import PROTOCOLS, GenerationSettings, _file_digest, generate_predictions
from safeeraser.io import atomic_write_json, atomic_write_text, read_json
from safeeraser.metrics.evaluate import METRIC_KEYS

ATTACKS = (*QUANT_ATTACKS, "relearn", *INPUT_ATTACKS, "mia")
AUDIT_MD = "audit.md"
RESULT = "result.json"  # in AUDIT_DIR/<attack>/: the attack finished
METRICS = "metrics.json"
CHANGED = ("asr_efficacy", "rr_efficacy", "asr_generality", "rr_generality", "sarr", "rouge_l", "specificity")


class NotRun(Exception):
    """The attack cannot run here; the message says why."""


def parse_attacks(text: str | None) -> tuple[str, ...]:
    """``--attacks``: a comma-separated subset of ATTACKS (None or 'all': every one), in ATTACKS order."""
    if text is None or text.strip() == "all":
        return ATTACKS
    named = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in named if a not in ATTACKS]
    if unknown:
        raise UserError(
            f"unknown --attacks {', '.join(unknown)}: expected a comma-separated subset of {', '.join(ATTACKS)}"
        )
    if not named:
        raise UserError("--attacks names no attack")
    return tuple(a for a in ATTACKS if a in named)


def run_protocol(run_dir: Path | None) -> GenerationSettings:
    """The generation settings of the run's own predictions (their ``.meta.json``), else the published protocol."""
    for split in ("val", "train"):
        meta = meta_path(Path(run_dir) / run_predictions(split)) if run_dir else None
        if meta is not None and meta.is_file():
            generation = read_json(meta).get("generation") or {}
            known = {f.name for f in fields(GenerationSettings)}
            try:
                settings = GenerationSettings(**{k: v for k, v in generation.items() if k in known})
                settings.validate()
                return settings
            except (TypeError, UserError):
                raise UserError(f"{meta}: unreadable generation settings; name the protocol with --protocol") from None
    return PROTOCOLS["published"]


def run_judge(run_dir: Path | None) -> tuple[str, str | None]:
    """The judge (and its model) of the run's metrics.json when it names a single judge, else the keyword judge."""
    from safeeraser.judge import JUDGES

    path = Path(run_dir) / METRICS if run_dir else None
    if path is not None and path.is_file():
        metrics = read_json(path)
        name = metrics.get("judge") if isinstance(metrics, dict) else None
        if name in JUDGES:
            return name, (metrics.get("judge_identity") or {}).get("model") if name != "keyword" else None
    return "keyword", None


def _comparable(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in ("batch_size", "label")}


@dataclass
class Audit:
    model: str
    data: Path
    out: Path
    adapter: Path | None
    settings: GenerationSettings
    judge_spec: str
    judge_model: str | None
    seed: int
    revision: str | None
    progress: bool
    judge: object = None

    def log(self, message: str) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(message)

    def request(self) -> dict:
        """What the audit measures; a rerun into the same folder must ask for the same."""
        return {
            "model": str(Path(self.model).resolve()) if Path(self.model).exists() else self.model,
            **({"revision": self.revision} if self.revision else {}),
            "adapter": str(self.adapter.resolve()) if self.adapter else None,
            "data": str(self.data.resolve()),
            "generation": f"{self.settings.label()}, seed {self.settings.seed}",
            "judge": self.judge_spec + (f" ({self.judge_model})" if self.judge_model else ""),
            "seed": self.seed,
        }

    def generate(self, data: Path, split: str, out: Path, *, adapter: Path | None = "run", backend=None) -> Path:
        """Predictions of ``split`` into ``out`` (kept when finished; resumed from its partial file)."""
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            generate_predictions(
                self.model,
                data,
                split,
                out,
                self.settings,
                adapter=self.adapter if adapter == "run" else adapter,
                backend=backend,
                revision=self.revision,
                progress=self.progress,
            )
        return out

    def evaluate(self, data: Path, out: Path, **predictions) -> dict:
        from safeeraser.metrics.evaluate import evaluate

        if out.is_file():
            return read_json(out)
        return evaluate(data, out, self.judge, **predictions, progress=False)


def reusable_predictions(audit: Audit, split: str) -> Path | None:
    """The run folder's own predictions of ``split``, if made under the audit's protocol and seed from the
    same data, model and adapter."""
    if audit.adapter is None:
        return None
    pred = audit.adapter / run_predictions(split)
    meta_path = pred.with_name(pred.stem + ".meta.json")
    if not (pred.is_file() and meta_path.is_file()):
        return None
    meta = read_json(meta_path)
    from safeeraser.models.loading import adapter_folder

    source = audit.data / GENERAL_FILE if split == "general" else split_file(audit.data, split)
    same = (
        _comparable(meta.get("generation") or {}) == _comparable(audit.settings.record())
        and meta.get("data_digest") == _file_digest(source)
        and meta.get("adapter_digest") == _file_digest(adapter_folder(audit.adapter) / "adapter_model.safetensors")
        and (meta.get("backend") or {}).get("kind") == "hf"
        and Path(str(meta.get("model"))).resolve() == Path(audit.model).resolve()
    )
    return pred if same else None


def _splits(data: Path, *, general: bool) -> list[str]:
    return ["train", "val"] + (["general"] if general and (data / GENERAL_FILE).is_file() else [])


def baseline(audit: Audit) -> dict:
    """The un-attacked run's metrics under the audit's judge, with where its predictions came from."""
    folder = audit.out / "baseline"
    predictions, reused = {}, []
    for split in _splits(audit.data, general=True):
        found = reusable_predictions(audit, split)
        if found is not None:
            reused.append(split)
        predictions[f"pred_{split}"] = found or audit.generate(audit.data, split, folder / run_predictions(split))
    metrics = audit.evaluate(audit.data, folder / METRICS, **predictions)
    return {
        "metrics": _shown(metrics),
        "ci95": metrics.get("ci95"),
        "counts": _counts(metrics),
        "metrics_file": str(folder / METRICS),
        "predictions": "reused from the run folder: " + ", ".join(reused) if reused else "generated",
    }


def _shown(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in METRIC_KEYS}


def _counts(metrics: dict) -> dict:
    return {
        k: (metrics.get("counts") or {}).get(k, {}).get("n")
        for k in METRIC_KEYS
        if (metrics.get("counts") or {}).get(k)
    }


def _delta(metrics: dict, reference: dict) -> dict:
    return {
        k: metrics[k] - reference[k] for k in CHANGED if metrics.get(k) is not None and reference.get(k) is not None
    }


def _measured(metrics: dict, reference: dict, folder: Path) -> dict:
    shown = _shown(metrics)
    return {
        "status": "done",
        "metrics": shown,
        "delta": _delta(shown, reference),
        "ci95": metrics.get("ci95"),
        "counts": _counts(metrics),
        "metrics_file": str(folder / METRICS),
    }


def quant_attack(audit: Audit, attack: str, folder: Path, base: dict) -> dict:
    from safeeraser.audit import quantize

    why = quantize.unavailable()
    if why:
        raise NotRun(why)
    bits = QUANT_ATTACKS[attack]
    backend = quantize.quantized_backend(
        audit.model,
        audit.adapter,
        bits,
        batch_size=audit.settings.batch_size,
        system_prompt=audit.settings.system_prompt,
        revision=audit.revision,
    )
    predictions = {
        f"pred_{s}": audit.generate(audit.data, s, folder / run_predictions(s), backend=backend)
        for s in _splits(audit.data, general=True)
    }
    metrics = audit.evaluate(audit.data, folder / METRICS, **predictions)
    return _measured(metrics, base["metrics"], folder) | {
        "library": quantize.library(),
        "scheme": quantize.SCHEMES[bits],
    }


def input_attack(audit: Audit, attack: str, folder: Path, base: dict) -> dict:
    data = write_attacked_data(audit.data, folder / "data", attack, seed=audit.seed)
    predictions = {
        f"pred_{s}": audit.generate(data, s, folder / run_predictions(s)) for s in _splits(data, general=False)
    }
    metrics = audit.evaluate(data, folder / METRICS, **predictions)
    return _measured(metrics, base["metrics"], folder) | {
        "data": str(data),
        "not_applicable": {
            "rouge_l": "the attack changes the harmful prompts only; the benign ones are left out of its data",
            "specificity": "not measured under input attacks",
        },
    }


def _missing(e: ModuleNotFoundError, module: str) -> str:
    if e.name and module.startswith(e.name):
        return f"{module} is not in this version of safeeraser"
    return f"{e.name} is not installed (pip install 'safeeraser[audit]')"


def relearn_attack(audit: Audit, attack: str, folder: Path, base: dict) -> dict:
    try:
        from safeeraser.audit.relearn import relearn, relearn_slice
    except ModuleNotFoundError as e:
        raise NotRun(_missing(e, "safeeraser.audit.relearn")) from None
    trained, measured_keys = relearn_slice(audit.data, seed=audit.seed)
    states = relearn(
        audit.model,
        audit.data,
        folder / "train",
        adapter=audit.adapter,
        seed=audit.seed,
        resume=True,
        progress=audit.progress,
    )
    measured = folder / "train" / "measured_data"

    def asr(name: str, adapter) -> dict:
        pred = audit.generate(measured, "train", folder / name / run_predictions("train"), adapter=adapter)
        return audit.evaluate(measured, folder / name / METRICS, pred_train=pred)

    unlearned = asr("step0", "run")
    vanilla = asr("vanilla", None) if audit.adapter is not None else unlearned
    start, ceiling = unlearned["asr_efficacy"], vanilla["asr_efficacy"]
    curve = [
        {
            "steps": 0,
            "asr_efficacy": start,
            "rr_efficacy": unlearned["rr_efficacy"],
            "n": _counts(unlearned).get("asr_efficacy"),
        }
    ]
    for steps in sorted(states):
        m = asr(f"step{steps}", states[steps])
        curve.append(
            {
                "steps": steps,
                "asr_efficacy": m["asr_efficacy"],
                "rr_efficacy": m["rr_efficacy"],
                "n": _counts(m).get("asr_efficacy"),
            }
        )
    for point in curve:
        gap = None if ceiling is None or start is None else ceiling - start
        point["recovered"] = (
            (point["asr_efficacy"] - start) / gap if gap and point["asr_efficacy"] is not None else None
        )
    last = read_json(folder / f"step{curve[-1]['steps']}" / METRICS)
    return _measured(last, _shown(unlearned), folder / f"step{curve[-1]['steps']}") | {
        "curve": curve,
        "vanilla_asr": ceiling,
        "trained_pairs": len(trained),
        "measured_pairs": len(measured_keys),
        "note": "ASR on the harmful training pairs relearning left out; delta against the unlearned model on those same pairs",
    }


def mia_attack(audit: Audit, attack: str, folder: Path, base: dict) -> dict:
    try:
        from safeeraser.audit.mia import membership_inference
    except ModuleNotFoundError as e:
        raise NotRun(_missing(e, "safeeraser.audit.mia")) from None

    def scored(name: str, adapter) -> dict:
        path = folder / f"{name}.json"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                path, membership_inference(audit.model, audit.data, adapter=adapter, revision=audit.revision)
            )
        return read_json(path)

    run = scored("mia", audit.adapter)
    vanilla = scored("mia_vanilla", None) if audit.adapter is not None else run
    return {
        "status": "done",
        "auc": run["auc"],
        "distance": run["distance"],
        "vanilla_auc": vanilla["auc"],
        "vanilla_distance": vanilla["distance"],
        "members": run["members"],
        "non_members": run["non_members"],
        "k": run["k"],
        "library": run.get("library"),
    }


RUNNERS = {
    **{a: quant_attack for a in QUANT_ATTACKS},
    "relearn": relearn_attack,
    **{a: input_attack for a in INPUT_ATTACKS},
    "mia": mia_attack,
}


def run_audit(
    model: str,
    data: Path | str,
    out: Path | str,
    *,
    adapter: Path | str | None = None,
    attacks: tuple[str, ...] = ATTACKS,
    judge: str = "keyword",
    judge_model: str | None = None,
    settings: GenerationSettings | None = None,
    seed: int = 0,
    revision: str | None = None,
    progress: bool = True,
) -> dict:
    """Run the baseline and each of ``attacks`` into ``out``; returns what audit.json holds.

    ``settings`` default to the run's own (``run_protocol``), generated at ``seed``."""
    from safeeraser.judge import judge_options, make_judges
    from safeeraser.judge.cache import default_path
    from safeeraser.models.loading import adapter_folder

    data, out = Path(data), Path(out)
    split_file(data, "train"), split_file(data, "val")  # a missing dataset is said before anything runs
    adapter = Path(adapter) if adapter is not None else None
    if adapter is not None:
        adapter_folder(adapter)
    unknown = [a for a in attacks if a not in RUNNERS]
    if unknown:
        raise UserError(f"unknown attacks {', '.join(unknown)}: expected some of {', '.join(ATTACKS)}")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    settings = replace(settings or run_protocol(adapter), seed=seed)
    settings.validate()
    audit = Audit(model, data, out, adapter, settings, judge, judge_model, seed, revision, progress)
    previous = read_json(out / AUDIT_FILE) if (out / AUDIT_FILE).is_file() else None
    if previous is not None and previous.get("request") != audit.request():
        old, new = previous.get("request") or {}, audit.request()
        why = next(
            (
                f"{k}: {old.get(k)!r} then, {new.get(k)!r} now"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ),
            "unreadable",
        )
        raise UserError(f"{out}: an audit with other settings ({why}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    audit.judge = make_judges(judge, judge_options(judge, {"--judge-model": judge_model}, default_cache=default_path()))
    began = time.perf_counter()
    record = {
        "request": audit.request(),
        "attacks": list(attacks),
        "protocol": settings.record(),
        "results": dict((previous or {}).get("results") or {}),
    }
    audit.log(f"audit: baseline (protocol {settings.label()}, judge {judge})")
    t0 = time.perf_counter()
    record["baseline"] = baseline(audit) | {"seconds": round(time.perf_counter() - t0, 3)}
    for k, attack in enumerate(attacks, start=1):
        folder = out / attack
        if (folder / RESULT).is_file():
            record["results"][attack] = read_json(folder / RESULT)
            audit.log(f"audit: {attack} ({k}/{len(attacks)}): finished earlier, kept")
            continue
        audit.log(f"audit: {attack} ({k}/{len(attacks)})")
        t0 = time.perf_counter()
        try:
            result = RUNNERS[attack](audit, attack, folder, record["baseline"])
        except NotRun as e:
            result = {"status": "not run", "reason": str(e)}
            audit.log(f"audit: {attack}: not run: {e}")
        else:
            result["seconds"] = round(time.perf_counter() - t0, 3)
            atomic_write_json(folder / RESULT, result)
        record["results"][attack] = result
        _write(out, record, began)
    _write(out, record, began)
    return record


def _write(out: Path, record: dict, began: float) -> None:
    record["seconds"] = round(time.perf_counter() - began, 3)
    record["environment"] = manifest()
    atomic_write_json(out / AUDIT_FILE, record)
    atomic_write_text(out / AUDIT_MD, to_markdown(record))
