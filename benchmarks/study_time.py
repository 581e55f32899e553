"""End-to-end time of a study: `safeeraser sweep --config configs/study-demo.yaml` from nothing
(demo data, tiny vanilla model, 2 seeds x {vanilla, po, po+pd, simnpo, simnpo+pd}, report).

    python benchmarks/study_time.py                  # into benchmarks/.cache/study-time (deleted first)
    python benchmarks/study_time.py --jobs 2         # two runs at once (each process then gets 1 thread)
    python benchmarks/study_time.py --config FILE    # another study

Prints and writes benchmarks/results/study_time.json: wall seconds, the CPU seconds of the sweep
process and its children, the 1-minute load average and `uptime` before and after, the runs made
and the machine. The wall time says little unless the load says the machine was otherwise idle:
the CPU seconds are the better measure of the work on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "study-demo.yaml"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / ".cache" / "study-time"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Resume an existing --out instead of starting over (then nothing is timed from scratch).",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if args.jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    before = {"uptime": _uptime(), "load1": os.getloadavg()[0]}
    cpu0, began = _children_cpu(), time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "safeeraser",
        "sweep",
        "--config",
        args.config,
        "--out",
        str(out),
        "--jobs",
        str(args.jobs),
    ]
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - began, _children_cpu() - cpu0
    after = {"uptime": _uptime(), "load1": os.getloadavg()[0]}
    if done.returncode:
        print(f"error: the sweep failed (exit {done.returncode})", file=sys.stderr)
        return done.returncode
    cells = json.loads((out / "study.json").read_text())
    result = {
        "command": " ".join(["safeeraser", *command[3:]]),
        "jobs": args.jobs,
        "omp_num_threads": env.get("OMP_NUM_THREADS"),
        "runs": sum(len(c["runs"]) for c in cells),
        "cells": len(cells),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "before": before,
        "after": after,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "study_time.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
