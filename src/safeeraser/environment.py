"""What a run ran on: versions, device, threads, CPU and commit, so numbers can be traced and compared.

``manifest()`` describes the current process; ``numeric_identity()`` is the part of it that decides
floating-point results (two runs with equal identities, seeds and configs should match bit for
bit); ``differences()`` says, one line per field, how the environments of several runs differ;
``config_hash()`` names a configuration by a short digest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# distributions whose versions can move the numbers; vllm is listed only when installed
PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "tokenizers",
    "safetensors",
    "numpy",
    "rouge-score",
    "Pillow",
)
OPTIONAL_PACKAGES = ("vllm",)
CPU_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma", "f16c")
GIT_TIMEOUT_S = 5.0

# fields of a manifest that determine floating-point results, as dotted paths (packages.* added per run)
_NUMERIC_FIELDS = ("python", "device", "threads", "cpu.model", "cpu.isa")


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def packages() -> dict[str, str | None]:
    found = {name: package_version(name) for name in PACKAGES}
    for name in OPTIONAL_PACKAGES:
        version = package_version(name)
        if version is not None:
            found[name] = version
    return found


def _git(folder: Path, *args: str) -> str | None:
    """stdout of ``git -C folder ARGS``, or None when git is missing, fails or hangs."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}  # never take the index lock of a shared tree
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit(folder: str | Path) -> str | None:
    """The commit checked out where ``folder`` lives, with ``+dirty`` when tracked files are changed.

    None when ``folder`` holds no file tracked by git (not a checkout, or an installed copy that
    merely sits inside some repository, e.g. a virtualenv in an ignored folder), when git is
    missing, or when it fails. Never raises.
    """
    try:
        folder = Path(folder)
        if not folder.is_dir():
            return None
        tracked = _git(folder, "ls-files", "--", ".")
        if not tracked or not tracked.strip():
            return None
        head = _git(folder, "rev-parse", "--verify", "HEAD")
        if not head or not head.strip():
            return None
        commit = head.strip()
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        if status is None:
            return commit
        return commit + "+dirty" if status.strip() else commit
    except Exception:  # a manifest must never stop a run
        return None


@functools.cache
def project_commit() -> str | None:
    """The project's commit when safeeraser is imported from a git checkout (cached per process)."""
    return git_commit(Path(__file__).resolve().parent)


@functools.cache
def _cpuinfo() -> tuple[str | None, frozenset[str]]:
    """CPU model name and flags from /proc/cpuinfo (Linux); the model from platform elsewhere."""
    model, flags = None, frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = " ".join(value.split())
        elif key in ("flags", "features") and not flags:  # "Features" on Arm
            flags = frozenset(value.split())
    if not model:
        model = platform.processor() or platform.machine() or None
    return model, flags


@functools.cache
def _isa() -> str | None:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return None


def cpu() -> dict:
    model, flags = _cpuinfo()
    return {"model": model, "isa": _isa(), "flags": [f for f in CPU_FLAGS if f in flags]}


@functools.cache
def device() -> str | None:
    """ "cpu", or the accelerator(s) and their runtime, e.g. "NVIDIA H200 (CUDA 12.8)", "2 x NVIDIA A100 (CUDA 12.4)"."""
    try:
        import torch
    except ImportError:
        return None
    try:
        if torch.cuda.is_available():
            names: dict[str, int] = {}
            for i in range(torch.cuda.device_count()):
                name = torch.cuda.get_device_name(i)
                names[name] = names.get(name, 0) + 1
            devices = ", ".join(name if n == 1 else f"{n} x {name}" for name, n in names.items())
            hip = getattr(torch.version, "hip", None)
            runtime = f"ROCm {hip}" if hip else f"CUDA {torch.version.cuda}"
            return f"{devices} ({runtime})"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
    except Exception:
        pass
    return "cpu"


def threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except Exception:
        return None


def manifest() -> dict:
    """The environment of this process: versions, device, threads, CPU and the project's commit."""
    from safeeraser import __version__
    from safeeraser.numerics import pinned

    return {
        "safeeraser": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "packages": packages(),
        "device": device(),
        "threads": threads(),
        "cpu": cpu(),
        "cpu_isa_pin": pinned(),
        "git_commit": project_commit(),
    }


def numeric_identity(m: dict) -> dict:
    """The part of manifest ``m`` that determines floating-point results.

    Two runs with equal identities (and equal seeds, configs and data) should give bit-identical
    outputs; anything else (the commit, the CPU's other flags, the platform string) is left out.
    """
    cpu_part = m.get("cpu") or {}
    # with the kernels' instruction set pinned (numerics.py) the CPU model no longer moves the numbers
    cpu_fields = (
        {"isa": cpu_part.get("isa"), "pinned": True}
        if _pinned_everywhere(m)
        else {"model": cpu_part.get("model"), "isa": cpu_part.get("isa")}
    )
    return {
        "packages": dict(m.get("packages") or {}),
        "python": m.get("python"),
        "device": m.get("device"),
        "threads": m.get("threads"),
        "cpu": cpu_fields,
    }


def _pinned_everywhere(m: dict) -> bool:
    """Every library of a CPU run capped at the same level (a GPU run's numbers are the GPU's)."""
    from safeeraser.numerics import SWITCHES

    pin = m.get("cpu_isa_pin") or {}
    return m.get("device") == "cpu" and all(
        str(pin.get(name, "")).lower() == value.lower() for name, value in SWITCHES.items()
    )


def config_hash(obj: Any) -> str:
    """First 16 hex digits of the sha256 of ``obj``'s canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _get(m: dict, path: str) -> Any:
    node: Any = m
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _show(value: Any, absent: str) -> str:
    return absent if value is None else str(value)


def _compare(field: str, values: dict[str, Any], absent: str) -> str | None:
    """``field: A (run, run) vs B (run)`` when runs differ, groups in the order runs were given."""
    groups: dict[str, list[str]] = {}
    for run, value in values.items():
        groups.setdefault(_show(value, absent), []).append(run)
    if len(groups) < 2:
        return None
    return f"{field}: " + " vs ".join(f"{value} ({', '.join(runs)})" for value, runs in groups.items())


def differences(manifests: dict[str, dict | None]) -> list[str]:
    """One line per field that differs between runs (run name -> manifest).

    Only fields that can move the numbers are compared (see ``numeric_identity``); runs without a
    manifest (older runs) are named on a line of their own, and a differing commit comes last.
    """
    recorded = {run: m for run, m in manifests.items() if m}
    missing = [run for run, m in manifests.items() if not m]
    lines = []
    if missing:
        lines.append("no environment recorded: " + ", ".join(missing))
    identities = {run: numeric_identity(m) for run, m in recorded.items()}
    names: list[str] = []
    for identity in identities.values():
        names += [name for name in identity["packages"] if name not in names]
    for name in names:
        line = _compare(
            f"packages.{name}", {run: ident["packages"].get(name) for run, ident in identities.items()}, "absent"
        )
        if line:
            lines.append(line)
    for field in _NUMERIC_FIELDS:
        line = _compare(field, {run: _get(ident, field) for run, ident in identities.items()}, "unknown")
        if line:
            lines.append(line)
    commits = {run: m.get("git_commit") for run, m in recorded.items()}
    short = {
        run: None if c is None else (c[:12] + ("+dirty" if c.endswith("+dirty") else "")) for run, c in commits.items()
    }
    line = _compare("git_commit", short, "unknown")
    if line:
        lines.append(line)
    return lines
