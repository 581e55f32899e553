"""Several unlearning processes on CPU from ``accelerate launch --cpu --num_processes N``.

accelerate's CPU launcher starts N processes only through MPI (``--mpirun_hostfile``); without
it, it starts the script once, with ``MASTER_ADDR`` set and no world size. ``unlearn`` notices
that case, reads N from the launcher's own command line, and starts the N ranks itself on this
machine (gloo over loopback), each with the rank variables ``torchrun`` would set. The ranks'
output passes through; the first rank that fails ends the others, and its exit code is ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RANK_VARIABLES = ("WORLD_SIZE", "RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _parent_argv() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def lone_cpu_launch(env: dict | None = None) -> bool:
    """accelerate's CPU launcher was asked for several processes and nothing started the ranks."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true") or "MASTER_ADDR" not in env:
        return False  # not a CPU launch, or one of a single process (no MASTER_ADDR then)
    return not any(v in env for v in RANK_VARIABLES)  # MPI, torchrun or run_ranks set these


def requested_cpu_processes(parent_argv: list[str] | None = None, env: dict | None = None) -> int:
    """N when accelerate's CPU launcher was asked for N > 1 processes and started only this one; else 1."""
    if not lone_cpu_launch(env):
        return 1
    argv = _parent_argv() if parent_argv is None else parent_argv
    launcher = next((i for i, a in enumerate(argv[:3]) if "accelerate" in a), None)
    if launcher is None:
        return 1
    for i, arg in enumerate(argv):
        if i <= launcher:
            continue
        if arg in ("-m", "--module") or arg.endswith(("safeeraser", "safeeraser/__main__.py")):
            break  # the launcher's own options end where the script begins
        for flag in ("--num_processes", "--num-processes"):
            value = (
                arg[len(flag) + 1 :]
                if arg.startswith(flag + "=")
                else (argv[i + 1] if arg == flag and i + 1 < len(argv) else None)
            )
            if value is not None and value.isdigit():
                return max(int(value), 1)
    return 1


def run_ranks(n: int, argv: list[str] | None = None) -> int:
    """Start ``python -m safeeraser ARGV`` as ranks 0..n-1 on this machine; return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    base = {
        **os.environ,
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": os.environ.get("MASTER_PORT", "29500"),
    }
    if "OMP_NUM_THREADS" not in base:  # share the cores instead of every rank claiming all of them
        base["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    procs = []
    for rank in range(n):
        env = {**base, "WORLD_SIZE": str(n), "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(n)}
        procs.append(subprocess.Popen([sys.executable, "-m", "safeeraser", *argv], env=env))
    code = 0
    try:
        while procs:
            for p in list(procs):
                rc = p.poll()
                if rc is None:
                    continue
                procs.remove(p)
                if rc != 0 and code == 0:
                    code = rc if rc > 0 else 128 - rc  # killed by a signal: the shell's convention
                    for other in procs:  # the survivors would wait forever for the failed rank
                        other.send_signal(signal.SIGTERM)
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank through the process group; wait for them
        for p in procs:
            p.wait()
        raise
    return code
