"""`safeeraser sweep`: every run of a study through unlearn -> generate -> evaluate, then one report.

DIR/data and DIR/model are built first when the study asks for the demo benchmark or a tiny
model; each grid point is a run folder DIR/runs/<run_folder>. A run whose metrics.json exists
is finished and skipped; any other resumes stage by stage as the commands do (unlearn from its
last checkpoint, generation from its resume file). DIR/study-runs/<run folder>.json records what
each run was asked to be (written before it starts, outside the run folder, which `unlearn`
keeps as its own): a rerun with a changed study refuses to mix the two.
With ``jobs`` > 1 the runs go to that many worker processes; each run is seeded on its own, so
the results do not depend on the order or the process a run gets. On a machine with several GPUs
each worker is given one (``CUDA_VISIBLE_DEVICES``, set before it starts torch), in turn over
``devices`` (default: every visible GPU), so runs at once do not share a GPU unless there are
more workers than GPUs.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.formats import RUN_AUDIT, RUN_METRICS, run_predictions
from safeeraser.io import atomic_write_json, read_json
from safeeraser.models.families import DEFAULT_FAMILY
from safeeraser.study.spec import DemoDataSpec, RunSpec, Study, TinyModelSpec

RECORDS = "study-runs"  # DIR/study-runs/<run folder>.json: what each run was asked to be
METRICS = RUN_METRICS
SPLITS = ("train", "val", "general")


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(message)


def prepare(study: Study, out: Path, *, progress: bool) -> tuple[Path, str]:
    """The dataset folder and the model (folder or hub id), built into ``out`` where the study asks."""
    quiet = not progress
    spec = study.file
    if isinstance(spec.data, DemoDataSpec):
        from safeeraser.data.demo import MARKER, make_demo

        data = out / "data"
        demo = spec.data.demo
        _refuse_other_build(
            data / MARKER, {"images_per_category": demo.images_per_category, "seed": demo.seed}, study.source, "data"
        )
        if not (data / MARKER).exists():
            _log(f"demo benchmark -> {data}", quiet)
            make_demo(data, images_per_category=spec.data.demo.images_per_category, seed=spec.data.demo.seed)
    else:
        data = study.path(spec.data)
        if not data.is_dir():
            raise UserError(f"{study.source}: 'data': {data} is not a dataset folder")
    if isinstance(spec.model, TinyModelSpec):
        from safeeraser.models.tiny import MARKER as TINY_MARKER
        from safeeraser.models.tiny import make_tiny

        tiny = spec.model.tiny
        model = out / "model"
        wanted = {"family": tiny.family, "size": tiny.size, "seed": tiny.seed} | (
            {"steps": tiny.steps} if tiny.steps is not None else {}
        )
        _refuse_other_build(model / TINY_MARKER, wanted, study.source, "model", defaults={"family": DEFAULT_FAMILY})
        if not (model / TINY_MARKER).exists():
            _log(f"tiny vanilla {tiny.family} ({tiny.size}) -> {model}", quiet)
            make_tiny(
                data, model, size=tiny.size, seed=tiny.seed, steps=tiny.steps, family=tiny.family, progress=progress
            )
        return data, str(model)
    local = study.path(spec.model)
    return data, str(local) if local.exists() else spec.model


def _refuse_other_build(marker: Path, wanted: dict, source: str, key: str, defaults: dict | None = None) -> None:
    """A data or model folder built earlier into DIR is reused only when it was built as the study asks."""
    if not marker.exists():
        return
    built = {**(defaults or {}), **read_json(marker)}
    for name, value in wanted.items():
        if built.get(name) != value:
            raise UserError(
                f"{marker.parent}: built with {name} {built.get(name)!r}, but {source} asks '{key}' for {value!r}: use another --out"
            )


def run_record(study: Study, run: RunSpec, data: Path, model: str) -> dict:
    """What a run was asked to be: equal records, interchangeable runs."""
    from safeeraser.formats import TRACKING_KEYS

    spec = study.file
    generation = study.generation(run.seed)
    record = {
        "method": run.method,
        "seed": run.seed,
        "grid": {k: v for k, v in run.settings},
        "data": str(Path(data).resolve()),
        "model": str(Path(model).resolve()) if Path(model).exists() else model,
        # without the trackers (TRACKING_KEYS): watching a run is no reason to train it again
        "unlearn": {k: v for k, v in run.config.items() if k not in TRACKING_KEYS} if run.method != "vanilla" else None,
        "generation": f"{generation.label()}, seed {generation.seed}",
        "judge": spec.judge + (f" ({spec.judge_model})" if spec.judge_model else ""),
    }
    if spec.evaluation.changed():  # recorded only when set, so that earlier studies' records still match
        record["evaluation"] = spec.evaluation.changed()
    if spec.audit is not None:  # (likewise)
        record["audit"] = spec.audit.model_dump()
    return json.loads(json.dumps(record))  # as it reads back from the file (tuples become lists)


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found = _first_difference(x, y, f"{prefix}{key}.")
            if found:
                return found
        elif x != y:
            return f"{prefix}{key}: {x!r} then, {y!r} now"
    return ""


def record_path(out: Path, run: RunSpec) -> Path:
    return Path(out) / RECORDS / f"{run.name}.json"


def finished(out: Path, run: RunSpec, audit: list[str] | None = None) -> bool:
    """Evaluated, and audited with every attack in ``audit`` (an attack that could not run here counts:
    audit.json says why; `safeeraser audit` on the folder tries it again)."""
    folder = Path(out) / "runs" / run.name
    if not ((folder / METRICS).is_file() and record_path(out, run).is_file()):
        return False
    if audit is None:
        return True
    from safeeraser.audit.summary import AUDIT_FILE

    record = folder / RUN_AUDIT / AUDIT_FILE
    if not record.is_file():
        return False
    try:
        results = read_json(record).get("results") or {}
    except (UserError, AttributeError):  # unreadable: audited again (the audit resumes attack by attack)
        return False
    return all(attack in results for attack in audit)


def audited(study: Study) -> list[str] | None:
    return study.file.audit.attacks if study.file.audit is not None else None


def plan(study: Study, out: Path, data: Path, model: str) -> list[tuple[RunSpec, Path, dict, bool]]:
    """(run, folder, record, finished) for every run; a folder made for another study is refused before anything runs."""
    planned = []
    for run in study.runs:
        folder = out / "runs" / run.name
        record = run_record(study, run, data, model)
        if record_path(out, run).exists():
            old = read_json(record_path(out, run))
            if old != record:
                why = _first_difference(old, record) if isinstance(old, dict) else "unreadable"
                raise UserError(
                    f"{folder}: made for another study ({why}); write the study to another --out, or delete that run folder and {record_path(out, run)}"
                )
        planned.append((run, folder, record, finished(out, run, audited(study))))
    return planned


def make_judge(spec: str, model: str | None, evaluation: dict | None = None):
    """The study's judge, its options routed as ``evaluate``'s (``judge.judge_options``):
    ``judge_model`` and the evaluation section's judge_protocol and judge_score."""
    from safeeraser.judge import judge_options, make_judges
    from safeeraser.judge.cache import default_path

    evaluation = evaluation or {}
    flags = {
        "--judge-model": model,
        "--judge-protocol": evaluation.get("judge_protocol"),
        "--judge-score": evaluation.get("judge_score"),
    }
    return make_judges(spec, judge_options(spec, flags, default_cache=default_path()))


def run_one(job: dict) -> dict:
    """unlearn -> generate (three splits) -> evaluate one run; each stage resumes or is skipped when done.

    ``job`` holds plain values only, so that it crosses into a worker process as it is.
    """
    from safeeraser.environment import manifest
    from safeeraser.formats import RUN_SUMMARY
    from safeeraser.generate.predictions import generate_predictions
    from safeeraser.metrics.evaluate import evaluate
    from safeeraser.report.plots import plot_run
    from safeeraser.unlearn.config import UnlearnConfig
    from safeeraser.unlearn.methods import VANILLA
    from safeeraser.unlearn.trainer import unlearn

    began = time.perf_counter()
    run, data, model, progress = Path(job["folder"]), Path(job["data"]), job["model"], job["progress"]
    record = Path(job["record_path"])
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, job["record"])
    if job["method"] == VANILLA:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / RUN_SUMMARY, {"method": VANILLA, "model": model, "environment": manifest()})
        adapter = None
    else:
        config = UnlearnConfig.model_validate(job["config"])
        unlearn(
            model,
            data,
            job["method"],
            run,
            config,
            resume=True,
            progress=progress,
            on_finish=plot_run,
            preset=job.get("preset"),
        )
        adapter = run
    for split in SPLITS:
        pred = run / run_predictions(split)
        if not pred.exists():
            generate_predictions(model, data, split, pred, job["generation"], adapter=adapter, progress=progress)
    evaluate(
        data,
        run / METRICS,
        make_judge(job["judge"], job["judge_model"], job["evaluation"]),
        pred_train=run / run_predictions("train"),
        pred_val=run / run_predictions("val"),
        pred_general=run / run_predictions("general"),
        empty_answers=job["evaluation"]["empty_answers"],
        progress=False,
    )
    if job.get("audit") is not None:
        from safeeraser.audit.run import run_audit

        run_audit(
            model,
            data,
            run / RUN_AUDIT,
            adapter=adapter,
            attacks=tuple(job["audit"]),
            judge=job["judge"],
            judge_model=job["judge_model"],
            settings=job["generation"],
            seed=job["generation"].seed,
            progress=progress,
        )
    return {
        "folder": str(run),
        "seconds": time.perf_counter() - began,
        "device": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (their indices when unset)."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named:
        return [d.strip() for d in named.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def worker_devices(jobs: int, devices: list[str] | None) -> list[str] | None:
    """The device of each worker slot (``CUDA_VISIBLE_DEVICES`` values), or None to leave it alone:
    one process, or no GPU and none named."""
    if devices is not None and not devices:
        raise UserError("--devices names no device (expected e.g. 0,1,2,3)")
    if jobs == 1:
        if devices is not None:
            raise UserError(
                "--devices spreads several workers over GPUs: pass --jobs N too (one run at a time uses the GPU CUDA_VISIBLE_DEVICES names)"
            )
        return None
    devices = devices if devices is not None else visible_gpus()
    if not devices:
        return None
    return [devices[k % len(devices)] for k in range(jobs)]


def run_study(
    study: Study,
    out: Path,
    *,
    jobs: int = 1,
    devices: list[str] | None = None,
    progress: bool = True,
    report: bool = True,
    launcher: str = "local",
) -> dict:
    """Run every unfinished run of ``study`` into ``out`` and write the report; returns counts and folders.
    ``devices``: the GPUs to spread the ``jobs`` workers over (default: every visible one).
    ``launcher``: local (processes here), slurm or submitit-local (each run a submitit job, ``study.cluster``)."""
    from safeeraser.study.cluster import LAUNCHERS

    if jobs < 1:
        raise UserError(f"--jobs must be positive (got {jobs})")
    if launcher not in LAUNCHERS:
        raise UserError(f"unknown --launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if launcher != "local" and devices:
        raise UserError(
            f"--devices spreads local workers over GPUs: with --launcher {launcher} the scheduler places each job (slurm.gpus_per_run)"
        )
    if launcher != "local":
        from safeeraser.study.cluster import require_submitit

        require_submitit()  # a missing launcher is said before anything is built
    slots = worker_devices(jobs, devices) if launcher == "local" else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    quiet = not progress
    began = time.perf_counter()
    data, model = prepare(study, out, progress=progress)
    planned = plan(study, out, data, model)
    todo = [(run, folder, record) for run, folder, record, finished in planned if not finished]
    skipped = len(planned) - len(todo)
    if skipped:
        _log(f"{skipped} of {len(planned)} runs already finished: kept", quiet)
    jobs_list = [
        {
            "folder": str(folder),
            "data": str(data),
            "model": model,
            "method": run.method,
            "config": run.config,
            "generation": study.generation(run.seed),
            "judge": study.file.judge,
            "judge_model": study.file.judge_model,
            "evaluation": study.file.evaluation.model_dump(),
            "preset": study.file.preset,
            "audit": audited(study),
            "record": record,
            "record_path": str(record_path(out, run)),
            "progress": progress and jobs == 1 and launcher == "local",
        }
        for run, folder, record in todo
    ]
    if launcher != "local":
        from safeeraser.study.cluster import run_jobs

        run_jobs(launcher, jobs_list, out, study.file.slurm, parallel=jobs, task=run_one, log=lambda m: _log(m, quiet))
    elif jobs == 1 or len(jobs_list) <= 1:
        for k, job in enumerate(jobs_list, start=1):
            _log(f"run {k}/{len(jobs_list)}: {Path(job['folder']).relative_to(out / 'runs')}", quiet)
            run_one(job)
    else:
        _parallel(jobs_list, jobs, out, quiet, slots)
    result = {"runs": [str(folder) for _, folder, _, _ in planned], "ran": len(todo), "skipped": skipped}
    if report:
        from safeeraser.study.summary import write_study_report

        write_study_report(study, planned, out, warn=lambda w: _log(w, quiet))
    _log(
        f"study finished in {time.perf_counter() - began:.0f}s: {len(todo)} runs made, {skipped} kept; open {out / 'index.html'}",
        quiet,
    )
    return result


def _take_device(slots, taken) -> None:
    """A worker's initializer: take the next slot's device before torch starts CUDA in this process."""
    with taken.get_lock():
        slot = taken.value
        taken.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = slots[slot % len(slots)]


def _parallel(jobs_list: list[dict], jobs: int, out: Path, quiet: bool, slots: list[str] | None = None) -> None:
    # spawn: a fresh interpreter per worker (forking a process that holds torch's threads is unsafe)
    context = get_context("spawn")
    pinned = {"initializer": _take_device, "initargs": (slots, context.Value("i", 0))} if slots else {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, **pinned) as pool:
        pending = {pool.submit(run_one, job): job for job in jobs_list}
        done_count = 0
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                job = pending.pop(future)
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                done_count += 1
                where = f", device {future.result()['device']}" if future.result().get("device") is not None else ""
                _log(
                    f"run {done_count}/{len(jobs_list)} done: {Path(job['folder']).relative_to(out / 'runs')} ({future.result()['seconds']:.0f}s{where})",
                    quiet,
                )


def status(study: Study, out: Path) -> list[tuple[str, str]]:
    """(run folder name, finished / started / to do) for every run, without building or running anything."""
    out = Path(out)
    rows = []
    for run in study.runs:
        state = (
            "finished"
            if finished(out, run, audited(study))
            else "started"
            if record_path(out, run).exists()
            else "to do"
        )
        rows.append((run.name, state))
    return rows
