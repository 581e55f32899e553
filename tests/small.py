"""Fixtures for tests that need a model's shapes and code paths but not its behaviour: a small
demo benchmark (3 images per category) and an untrained tiny LLaVA built on it in seconds.
Import them into a test module (``from tests.small import small_demo, untrained_tiny``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import built_once


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    from safeeraser.data.demo import make_demo

    return (
        built_once(tmp_path_factory, "small", lambda folder: make_demo(folder / "data", images_per_category=3)) / "data"
    )


@pytest.fixture(scope="session")
def untrained_tiny(small_demo, tmp_path_factory) -> Path:
    """The tiny LLaVA with its tokenizer and processor, at its random initialisation (no training steps)."""
    from safeeraser.models.tiny import make_tiny

    return (
        built_once(
            tmp_path_factory,
            "untrained",
            lambda folder: make_tiny(small_demo, folder / "tiny", steps=0, progress=False),
        )
        / "tiny"
    )
