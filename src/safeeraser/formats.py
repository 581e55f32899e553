"""The id strings the tool builds and reads back, each defined once here.

They are written into files (the ``where`` of a judgments row, the task and batch keys of a
partial prediction file) and some are hashed into seeds (an example's key draws its PO refusal,
a batch's key seeds its sampling): changing a format changes results, so nothing else spells one.

Places in a record (a judged answer's ``where``, and the tail of an example key):
- ``pair{j}``:           harmful question j on the harmful image
- ``pair{j}/sample{k}``: its k-th sampled answer (k from 1)
- ``pair{j}/sd``:        the same question on the harmless (SD) image
- an UnharmPair's published key (``UnharmPair_text1``, ...): a benign question
"""

from __future__ import annotations


def pair_where(pair: int) -> str:
    return f"pair{pair}"


def sample_where(pair: int, sample: int) -> str:
    return f"{pair_where(pair)}/sample{sample}"


def sd_where(pair: int) -> str:
    return f"{pair_where(pair)}/sd"


def question_of(where: str) -> str:
    """The harmful question a place belongs to (``pair{j}``): its samples and its harmless-image answer share it."""
    return where.split("/")[0]


def example_key(file: str, record: int, where: str | None = None) -> str:
    """A training example's stable id, ``<file>#<record>/<where>``."""
    return f"{file}#{record}" + (f"/{where}" if where is not None else "")


# Generation tasks: one prompt of a split, by record i and harmful question j.
def task_key(record: int, pair: int) -> str:
    """The K sampled answers on the harmful image."""
    return f"r{record}/p{pair}"


def sd_task_key(record: int, pair: int) -> str:
    """The single answer on the harmless image."""
    return f"{task_key(record, pair)}/sd"


def benign_task_key(record: int, unharm_key: str) -> str:
    """The single answer to an UnharmPair (by its published key)."""
    return f"r{record}/{unharm_key}"


def general_task_key(item: int) -> str:
    """The answer to general-VQA question ``item``."""
    return f"g{item}"


def batch_key(multi: bool, first_task: str, size: int) -> str:
    """A generation batch: sampled (``s``) or single (``g``) answers, its first task and its size."""
    return f"{'s' if multi else 'g'}:{first_task}:{size}"


# A run folder (``safeeraser unlearn --out``): what the report reads from it besides the metrics.
RUN_SUMMARY = "run.json"  # the method and how it ran; written last, so it marks a finished run
RUN_CONFIG = "config.yaml"  # the settings the run was trained with (resolved: every key)
RUN_AUDIT = "audit"  # a study run's `safeeraser audit`, when the study asks for one
CHECKPOINT = "checkpoint"  # the run's resumable checkpoint folder
CHECKPOINT_STATE = "state.json"  # in it: the step and the run's identity; written last, so it marks a whole checkpoint
RUN_LOG = "log.jsonl"  # every loss term per logged step, and the dynamics probe
RUN_METRICS = "metrics.json"  # `evaluate --out` in the run folder (the demo and sweep write it there)
LOSS_PLOT = "loss.png"  # the log drawn


def run_predictions(split: str) -> str:
    """A run folder's prediction file for ``split`` (train, val, general), as the demo and sweep write it."""
    return f"predictions_{split}.json"


def meta_path(pred):
    """The generation metadata written beside a prediction file: ``<name>.meta.json``."""
    from pathlib import Path

    pred = Path(pred)
    return pred.with_name(pred.stem + ".meta.json")


# A run's settings that say where it is watched, not what it learns: left out of its config_hash,
# its model card and a study's run record, so that turning a tracker on makes no run look like another.
TRACKING_KEYS = frozenset({"report_to"})
