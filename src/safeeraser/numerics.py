"""The same floating-point results on any x86-64 CPU with AVX2: the kernels' instruction set fixed.

torch, the MKL it calls and oneDNN each pick their CPU kernels by the instruction sets the
processor offers, and kernels of different widths add in different orders: at the same locked
versions an AVX-512 machine drew another demo table than the AVX2 machine the published one was
made on. Each library has a documented switch that caps the level it uses; with all four at
AVX2 that AVX-512 machine gave the published demo's numbers exactly. The caps must be set before
the libraries compute anything, so ``pin_cpu_isa`` runs before torch is first used.

The demo pins by default (its table is published and checked); any other command pins with
``safeeraser --reproducible COMMAND`` or ``SAFEERASER_REPRODUCIBLE=1`` (``0`` switches the
demo's pin off). Not by default elsewhere: on an AVX-512 machine the cap gives up its wider
kernels, and a real model's numbers come from a GPU, which these switches do not touch.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

LEVEL = "AVX2"
# the documented switch of each library and the value that caps it at AVX2
SWITCHES = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own CPU kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's highest instruction set
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: the AVX2 code path
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's JIT kernels
}
ENV = "SAFEERASER_REPRODUCIBLE"


def wanted(default: bool) -> bool:
    """Whether to pin: ``SAFEERASER_REPRODUCIBLE`` (1/0) when set, else ``default``."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return default


def cpu_has_avx2() -> bool | None:
    """True or False on an x86-64 Linux machine (from /proc/cpuinfo); None where it cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "flags":
            return "avx2" in value.split()
    return None


def pin_cpu_isa() -> str:
    """Cap the four libraries at AVX2 in this process's environment (a value already set is kept);
    returns what happened, in words. Call before torch computes anything."""
    has = cpu_has_avx2()
    if not has:
        why = "not an x86-64 CPU with AVX2" if has is False else "the CPU's instruction sets cannot be read here"
        return f"instruction set not pinned: {why}"
    for name, value in SWITCHES.items():
        os.environ.setdefault(name, value)
    return f"instruction set pinned at {LEVEL}"


def pinned() -> dict[str, str] | None:
    """The switches set in this process's environment (ours or the user's), or None."""
    found = {name: os.environ[name] for name in SWITCHES if os.environ.get(name)}
    return found or None
