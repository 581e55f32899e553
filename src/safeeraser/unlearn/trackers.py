"""Experiment trackers (``report_to``): accelerate's own, fed each step's log row.

accelerate owns the trackers (``Accelerator(log_with=...)``, ``init_trackers``, ``log``,
``end_training``) and logs on the main process only; this module says which to start, where they
write (RUN_DIR/trackers/), and what each step sends: the loss terms and ``lr`` of the log row under
their own names, the dynamics probe's values as ``eval/<name>``, and the resolved config,
flattened (``optim.lr``), as hyperparameters. Nothing here reads or changes what is learnt.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from safeeraser.errors import UserError

FOLDER = "trackers"  # in the run folder: every tracker that writes files writes them here
# the package each tracker needs, as pip names it
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def check_installed(names: list[str]) -> None:
    """Refuse, before any model is loaded, a tracker whose package is missing."""
    for name in names:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise UserError(
                f"--report-to {name}: the {PACKAGES[name]} package is not installed; pip install {PACKAGES[name]}"
            )


def accelerator_kwargs(names: list[str], out: Path) -> dict:
    """What ``Accelerator`` takes to start the trackers, writing under RUN_DIR/trackers/."""
    if not names:
        return {}
    return {"log_with": list(names), "project_dir": str(out / FOLDER)}


def start(accelerator, out: Path, config: dict) -> None:
    """Each tracker's run, named after the run folder, with the config as its hyperparameters."""
    names = [str(t) for t in accelerator.log_with]
    if not names:
        return
    folder = (out / FOLDER).resolve()
    init = {"wandb": {"dir": str(folder)}}
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        mlflow.set_tracking_uri((folder / "mlruns").as_uri())  # not ./mlruns wherever the command ran
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)  # wandb wants its dir to exist
    try:
        accelerator.init_trackers(out.name, config=hyperparameters(config), init_kwargs=init)
    except Exception as e:  # a tracker's own failure (no login, no server), said in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--report-to {','.join(names)}: a tracker could not start: {first}") from None


def hyperparameters(config: dict) -> dict:
    """The config flattened (``{"optim": {"lr": 1}}`` -> ``optim.lr``), each value one that every
    tracker accepts: a number, string or bool as it is, anything else (null, a list) as its JSON."""
    flat = {}

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)

    walk(config, "")
    return flat


def step_values(row: dict) -> dict:
    """A log row's numbers as the trackers get them: the loss terms and ``lr`` by their log names,
    the probe's as ``eval/<name>``; the step is given apart, and lists (``examples``) are left out."""
    values = {k: v for k, v in row.items() if k != "step" and _number(v)}
    values.update({f"eval/{k}": v for k, v in (row.get("eval") or {}).items() if _number(v)})
    return values


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
