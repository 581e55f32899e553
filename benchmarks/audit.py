"""Time of `safeeraser audit` on one demo run, and the cost of each attack, on 2 cores.

    python benchmarks/audit.py                               # demo-out/runs/po+pd, every attack
    python benchmarks/audit.py --demo DIR --method gd+pd     # another demo folder or run
    python benchmarks/audit.py --attacks quant4,figstep      # a subset

Needs a finished demo (`safeeraser demo --out demo-out`, or `--methods po+pd` for that run
alone). The audit runs from scratch into benchmarks/.cache/audit-<method> (deleted first) in a
subprocess limited to 2 threads, from the demo folder's parent, so that the run's own predictions
are found and reused as the baseline. Prints and writes benchmarks/results/audit.json: wall and
CPU seconds of the whole audit, each attack's seconds and status as audit.json records them, the
1-minute load average before and after, and the machine. On a shared machine the CPU seconds are
the better measure of the work; the wall time holds only when the load says it was idle.
The demo's budget: the whole audit of one run under 5 minutes on 2 cores.
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
BUDGET_S = 300


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="demo-out", help="A finished demo folder.")
    parser.add_argument("--method", default="po+pd", help="The run to audit (a folder of DEMO/runs).")
    parser.add_argument("--attacks", default=None, help="Comma-separated subset (default: all).")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    demo = Path(args.demo).resolve()
    run = demo / "runs" / args.method
    if not (run / "metrics.json").is_file():
        print(
            f"error: {run}: not a finished demo run (safeeraser demo --out {args.demo} --methods {args.method})",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out) if args.out else ROOT / "benchmarks" / ".cache" / f"audit-{args.method}"
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT / "src")}
    # from the demo's parent, with the paths the demo recorded, so the run's predictions are reused
    base = demo.parent
    command = [
        sys.executable,
        "-m",
        "safeeraser",
        "audit",
        "--model",
        str((demo / "model").relative_to(base)),
        "--adapter",
        str(run.relative_to(base)),
        "--data",
        str((demo / "data").relative_to(base)),
        "--out",
        str(out.resolve()),
        *(["--attacks", args.attacks] if args.attacks else []),
    ]
    load_before = os.getloadavg()[0]
    cpu0, began = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=base, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - began, _children_cpu() - cpu0
    if done.returncode != 0:
        print(f"error: the audit exited with {done.returncode}", file=sys.stderr)
        return done.returncode
    record = json.loads((out / "audit.json").read_text())
    result = {
        "run": str(run),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "under_budget": wall < BUDGET_S,
        "budget_s": BUDGET_S,
        "baseline_s": record["baseline"]["seconds"],
        "baseline_predictions": record["baseline"]["predictions"],
        "attacks": {
            a: {
                "status": r["status"],
                "seconds": r.get("seconds"),
                **({"reason": r["reason"]} if "reason" in r else {}),
            }
            for a, r in record["results"].items()
        },
        "load1_before": round(load_before, 2),
        "load1_after": round(os.getloadavg()[0], 2),
        "threads": 2,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "audit.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
