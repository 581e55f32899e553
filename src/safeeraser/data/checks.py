"""`data validate` and `data stats`: whole-dataset checks and counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from safeeraser.data.images import open_rgb
from safeeraser.data.records import Split, load_split_file, split_files


@dataclass
class SplitStats:
    file: str
    records: int = 0
    unsafe_pairs: int = 0
    unharm_pairs: int = 0
    images: int = 0
    sd_images: int = 0
    by_category: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "records": self.records,
            "unsafe_pairs": self.unsafe_pairs,
            "unharm_pairs": self.unharm_pairs,
            "images": self.images,
            "sd_images": self.sd_images,
            "by_category": dict(sorted(self.by_category.items())),
        }


def split_stats(split: Split) -> SplitStats:
    stats = SplitStats(file=split.name, records=len(split))
    stats.images = len({r.image_path for r in split})
    stats.sd_images = len({r.sd_image_path for r in split})
    for record in split:
        stats.unsafe_pairs += len(record.unsafe_pairs)
        stats.unharm_pairs += len(record.unharm_pairs())
        stats.by_category[record.category] += 1
    return stats


def validate(path: Path, *, allow_outside_root: bool = False, check_images: bool = True) -> list[SplitStats]:
    """Read every published file under ``path``; resolve and open every image.

    Raises UserError at the first problem, naming the file, the record and the field.
    """
    out = []
    for file in split_files(path):
        split = load_split_file(file, allow_outside_root=allow_outside_root)
        check_split_images(split, open_images=check_images)
        out.append(split_stats(split))
    return out


def check_split_images(split: Split, *, open_images: bool = True) -> None:
    """Resolve (and open) every image of a split, so that a bad one stops a run before it starts."""
    opened: set[Path] = set()
    for i, record in enumerate(split):
        for name, rel in (("image_path", record.image_path), ("SDImage_path", record.sd_image_path)):
            image = split.resolve(rel, index=i, field_name=name)
            if open_images and image not in opened:
                open_rgb(image, where=split.where(i, name))
                opened.add(image)


def stats(path: Path, *, allow_outside_root: bool = False) -> list[SplitStats]:
    return [split_stats(load_split_file(f, allow_outside_root=allow_outside_root)) for f in split_files(path)]
