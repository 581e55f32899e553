"""Opening images with one-line errors."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from safeeraser.errors import UserError


def open_rgb(path: Path, *, where: str = "") -> Image.Image:
    """Load an image fully into memory as RGB; a missing or broken file is a UserError."""
    prefix = f"{where}: " if where else ""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"{prefix}image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{prefix}not a readable image: {path} ({type(e).__name__})") from None
