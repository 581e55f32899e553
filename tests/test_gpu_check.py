"""The GPU check's dry run on the CPU: every section runs (tiny widths, real image and sequence
shapes) and the summary holds what the GPU run reports; and the real configuration is LLaVA-1.5-7B's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_real_configuration_is_llava_15_7b():
    import torch
    from transformers import LlavaForConditionalGeneration

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_check import LLAVA_15_7B, llava_config
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config(LLAVA_15_7B))
    assert sum(p.numel() for p in model.parameters()) == 7_063_427_072  # llava-hf/llava-1.5-7b-hf


@pytest.mark.slow
def test_dry_run_runs_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--dry-run",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["dry_run"] and summary["device"] == "cpu" and "error" not in summary
    sections = summary["sections"]
    assert sections["llava_model"]["config"]["image_tokens"] == 576
    for method in ("po+pd", "kl+pd"):
        run = sections[f"unlearn_{method}"]
        assert run["steps"] == 2 and run["gradient_checkpointing"] and run["lora"]["r"] == 32
        assert run["seconds_per_step"] > 0 and run["last_step"]["step"] == 2
    generation = sections["generation"]
    assert generation["protocol"] == "published (max_new_tokens=8)"
    assert generation["prompts"] >= 24 and generation["generated_tokens"] > 0
    assert generation["final_batch_size"] == 16
    qwen = sections["qwen2_5_vl"]
    assert "skipped" in qwen or qwen["lora_parameters_with_grad"] > 0
