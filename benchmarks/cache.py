"""Demo data and models the benchmarks run on, built once into a cache folder and reused.

Each entry is built by the library's own ``make_demo`` / ``make_tiny`` and is complete when its
marker file exists (both write atomically), so an interrupted build is simply redone.
"""

from __future__ import annotations

from pathlib import Path

from safeeraser.data.demo import make_demo
from safeeraser.models.tiny import MARKER, make_tiny

# The `small` model (~100M parameters) is only measured, never judged on its answers: a few
# vanilla steps give it trained-looking weights without spending the time budget on training.
SMALL_STEPS = 3


def demo_data(cache: Path, images_per_category: int) -> Path:
    out = cache / f"data-{images_per_category}"
    if not (out / "demo_meta.json").exists():
        print(f"  building demo data ({images_per_category} images per category) -> {out}", flush=True)
        make_demo(out, images_per_category=images_per_category)
    return out


def model(cache: Path, size: str) -> Path:
    """The vanilla model of ``size`` trained on the default-size demo data."""
    out = cache / f"model-{size}"
    if not (out / MARKER).exists():
        print(f"  building the {size} model -> {out} (once; the tiny one takes about 2 min)", flush=True)
        make_tiny(demo_data(cache, 12), out, size=size, steps=SMALL_STEPS if size == "small" else None, progress=False)
    return out
