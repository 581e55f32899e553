"""A study's runs as submitit jobs: on a Slurm cluster, or through submitit's local executor.

Each unfinished run is one job running ``study.run.run_one``, the same function ``--jobs`` runs, so
a run folder is the same whichever way it was made; the study's files are written once every job
is done. ``DIR/submitit/`` holds submitit's own folders (each job's pickled call, logs and result)
and ``jobs.json``, the job that was last sent for each run: a later ``sweep`` of the same study
waits for a Slurm job of an unfinished run that is still pending or running, and sends again the
runs whose job failed, was cancelled or is missing. A finished run is never sent again (the run
folder says it is finished, as for ``--jobs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.io import atomic_write_json, read_json

LAUNCHERS = ("local", "slurm", "submitit-local")
FOLDER = "submitit"
LEDGER = "jobs.json"
ALIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(
            "--launcher slurm / submitit-local need submitit: pip install submitit (or pip install 'safeeraser[cluster]')"
        ) from None
    return submitit


def executor(launcher: str, out: Path, slurm):
    """The submitit executor of ``launcher`` with the study's ``slurm`` settings (study.spec.SlurmSpec)."""
    submitit = require_submitit()
    folder = out / FOLDER / "%j"
    if launcher == "submitit-local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        ex.update_parameters(timeout_min=slurm.time_min)
        return ex
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    if ex.cluster != "slurm":
        raise UserError(
            "--launcher slurm: no Slurm here (sbatch not found); run sweep on the cluster's login node, or use --launcher submitit-local"
        )
    params = {
        "name": slurm.job_name,
        "timeout_min": slurm.time_min,
        "gpus_per_node": slurm.gpus_per_run,
        "cpus_per_task": slurm.cpus_per_run,
        "mem_gb": slurm.mem_gb,
        "slurm_partition": slurm.partition,
        "slurm_account": slurm.account,
        "slurm_qos": slurm.qos,
        "slurm_constraint": slurm.constraint,
        "slurm_array_parallelism": slurm.array_parallelism,
        "slurm_setup": list(slurm.setup) or None,
        "slurm_additional_parameters": dict(slurm.sbatch) or None,
    }
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def run_jobs(
    launcher: str, jobs_list: list[dict], out: Path, slurm, *, parallel: int, task: Callable, log: Callable[[str], None]
) -> None:
    """Send every job of ``jobs_list`` (``task(job)`` each), wait for all; ``parallel`` jobs at a time locally."""
    if not jobs_list:
        return
    ex = executor(launcher, out, slurm)
    ledger_path = out / FOLDER / LEDGER
    ledger = read_json(ledger_path) if ledger_path.exists() else {}
    waiting = []  # (job description, submitit job) of jobs sent by an earlier sweep that are still alive
    to_send = []
    for job in jobs_list:
        alive = _alive(launcher, out, ledger.get(job["folder"]))
        if alive is not None:
            log(f"waiting for job {alive.job_id} of an earlier sweep: {_name(job, out)}")
            waiting.append((job, alive))
        else:
            to_send.append(job)
    if launcher == "slurm":
        sent = list(zip(to_send, ex.map_array(task, to_send))) if to_send else []
        _record(ledger_path, ledger, sent)
        for job, handle in sent:
            log(f"sent job {handle.job_id}: {_name(job, out)}")
        _wait(waiting + sent, out, log)
        return
    # local: at most `parallel` jobs at a time, each a process of its own
    pending = list(to_send)
    running: list = []
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            handle = ex.submit(task, job)
            _record(ledger_path, ledger, [(job, handle)])
            log(f"sent job {handle.job_id}: {_name(job, out)}")
            running.append((job, handle))
        time.sleep(0.5)
        finished = [(job, handle) for job, handle in running if handle.done()]
        running = [r for r in running if r not in finished]
        _wait(finished, out, log)


def _name(job: dict, out: Path) -> str:
    return str(Path(job["folder"]).relative_to(out / "runs"))


def _record(path: Path, ledger: dict, sent: list) -> None:
    for job, handle in sent:
        ledger[job["folder"]] = str(handle.job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, ledger)


def _alive(launcher: str, out: Path, job_id: str | None):
    """The Slurm job an earlier sweep sent, while it is pending or running; else None (send again).
    Local jobs end with the sweep that started them, so they are always sent again."""
    if launcher != "slurm" or job_id is None:
        return None
    submitit = require_submitit()
    job = submitit.SlurmJob(folder=out / FOLDER / "%j", job_id=job_id)
    return job if job.state in ALIVE else None


def _wait(handles: list, out: Path, log: Callable[[str], None]) -> None:
    for job, handle in handles:
        try:
            result = handle.result()
        except Exception as e:  # submitit re-raises the job's exception with its traceback as text
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserError(
                f"job {handle.job_id} ({_name(job, out)}) failed: {first}; its log: {out / FOLDER / str(handle.job_id)}; rerun the same sweep to send it again"
            ) from None
        log(f"job {handle.job_id} done: {_name(job, out)} ({result['seconds']:.0f}s)")
