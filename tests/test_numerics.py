"""The kernels' instruction set pinned before torch loads: for the demo, for --reproducible, never
over a value the user set; recorded in the manifest, where it takes the CPU model out of the
numbers' identity."""

import json
import os
import subprocess
import sys

import pytest

from safeeraser.environment import numeric_identity
from safeeraser.numerics import SWITCHES, cpu_has_avx2

# what the process's own command line pins, read back after the command ran (demo --help runs nothing)
PROBE = """
import json, os, sys
sys.argv = ["safeeraser", *%r]
from safeeraser.cli import main
try:
    main()
except SystemExit:
    pass
import torch
print(json.dumps({"env": {k: os.environ.get(k) for k in %r}, "torch": str(torch.backends.cpu.get_cpu_capability())}))
"""


def _probe(argv: list[str], **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in SWITCHES and k != "SAFEERASER_REPRODUCIBLE"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (argv, list(SWITCHES))], capture_output=True, text=True, env=clean, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_avx2 = pytest.mark.skipif(not cpu_has_avx2(), reason="pinning applies to x86-64 CPUs with AVX2 only")


@needs_avx2
@pytest.mark.slow
def test_the_demo_and_reproducible_runs_pin_and_other_commands_do_not():
    assert _probe(["demo", "--help"])["env"] == SWITCHES
    assert _probe(["demo", "--help"])["torch"] == "AVX2"
    assert _probe(["--reproducible", "unlearn", "--help"])["env"] == SWITCHES
    assert _probe(["unlearn", "--help"])["env"] == dict.fromkeys(SWITCHES)
    assert _probe(["unlearn", "--help"], SAFEERASER_REPRODUCIBLE="1")["env"] == SWITCHES
    assert _probe(["demo", "--help"], SAFEERASER_REPRODUCIBLE="0")["env"] == dict.fromkeys(SWITCHES)


@needs_avx2
def test_a_level_the_user_set_is_kept_and_torch_reads_it():
    kept = _probe(["demo", "--help"], ATEN_CPU_CAPABILITY="default")
    assert kept["env"]["ATEN_CPU_CAPABILITY"] == "default" and kept["torch"] == "DEFAULT"


def test_the_pin_replaces_the_cpu_model_in_the_numbers_identity():
    m = {
        "packages": {"torch": "2.13.0"},
        "python": "3.11",
        "device": "cpu",
        "threads": 2,
        "cpu": {"model": "AMD EPYC", "isa": "AVX2", "flags": []},
    }
    assert numeric_identity(m)["cpu"] == {"model": "AMD EPYC", "isa": "AVX2"}
    pinned = {**m, "cpu_isa_pin": dict(SWITCHES)}
    assert numeric_identity(pinned)["cpu"] == {"isa": "AVX2", "pinned": True}
    other_cpu = {**pinned, "cpu": {"model": "Intel Xeon", "isa": "AVX2", "flags": ["avx512f"]}}
    assert numeric_identity(other_cpu) == numeric_identity(pinned)
    partly = {**m, "cpu_isa_pin": {"ATEN_CPU_CAPABILITY": "avx2"}}  # MKL and oneDNN free: the model still matters
    assert "model" in numeric_identity(partly)["cpu"]
    assert "model" in numeric_identity({**pinned, "device": "NVIDIA H100 (CUDA 12.8)"})["cpu"]
