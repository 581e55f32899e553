"""A study's report: its runs' report (``report.build``) with the across-seed summary
(``report.seeds``: per cell, every metric's mean, standard deviation and t-interval over the
seeds, and the Pareto front)."""

from __future__ import annotations

from pathlib import Path

from safeeraser.report.seeds import PARETO_OBJECTIVES, cell_text, mark_pareto, several_seeds, summarise, to_markdown  # noqa: F401


def write_study_report(study, planned, out: Path, *, warn=None) -> list[Path]:
    """The report of a study's runs (results.*, plots, index.html) with its across-seed summary."""
    from safeeraser.audit.summary import AUDIT_FILE
    from safeeraser.formats import RUN_AUDIT, RUN_METRICS
    from safeeraser.io import read_json
    from safeeraser.report.build import build_report

    runs = []
    for run, folder, _, _ in planned:
        runs.append(
            {
                "cell": run.cell,
                "method": run.method,
                "settings": {k: v for k, v in run.settings},
                "seed": run.seed,
                "run": str(folder),
                "metrics": read_json(folder / RUN_METRICS),
            }
        )
    rows = summarise(runs)
    folders = [folder for _, folder, _, _ in planned]
    methods = [run.method for run, _, _, _ in planned]
    # one run per method: the report names runs by method, as for any set of runs; else by folder
    labels = None if len(set(methods)) == len(methods) else {folder: run.name for run, folder, _, _ in planned}
    # the runs' audits (a study with an audit section): the report's Robustness section, by run
    audits = {
        folder / RUN_AUDIT: run.name for run, folder, _, _ in planned if (folder / RUN_AUDIT / AUDIT_FILE).is_file()
    }
    return build_report(folders, out, warn=warn, labels=labels, study=rows, audits=list(audits), audit_labels=audits)
