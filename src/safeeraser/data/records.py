"""The published SafeEraser format's typed records (docs/data-format.md).

This module is the one place that knows the published field names. Everything
downstream works on ``Record`` / ``UnsafePair`` / ``QAPair`` and the ``Split`` that holds them.
Files are read unchanged: unknown fields are kept and written back as they came.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safeeraser.errors import UserError, field_problem
from safeeraser.io import parse_json, parse_json_lines, read_text

UNHARM_KEYS = ("UnharmPair_text1", "UnharmPair_text2", "UnharmPair_image1", "UnharmPair_image2")
SPLIT_FILES = {"train": "all_train", "val": "all_val"}
# JSON may escape half of a UTF-16 surrogate pair alone; such a string cannot be written or used as a path.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class QAPair(BaseModel):
    """A benign question on the harmful image with the original model's answer (retain set)."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    question: str = Field(alias="Question")
    prediction: str = Field(alias="Prediction")


class UnsafePair(BaseModel):
    """A harmful question about the harmful image.

    ``model_response`` is the original model's harmful answer (the forget target) and
    ``sd_response`` a normal answer to the same question about the harmless image.
    Prediction files add ``model_response1..k``; they are kept as extra fields. The released
    inference script deletes ``model_response`` from its prediction files, so it is optional
    here and required of datasets by ``load_split_file`` (``predictions=False``).
    """

    model_config = ConfigDict(extra="allow", strict=True)
    question: str
    model_response: str | None = None
    sd_response: str

    def samples(self) -> list[str]:
        """The sampled answers ``model_response1..k`` of a prediction file, in order."""
        extra = self.model_extra or {}
        found = []
        k = 1
        while f"model_response{k}" in extra:
            found.append(extra[f"model_response{k}"])
            k += 1
        return found


class Record(BaseModel):
    """One harmful image with its harmful questions, its harmless twin and its benign QA."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    image_path: str
    sd_image_path: str = Field(alias="SDImage_path")
    unsafe_pairs: list[UnsafePair] = Field(min_length=1)
    unharm_text1: QAPair | None = Field(default=None, alias="UnharmPair_text1")
    unharm_text2: QAPair | None = Field(default=None, alias="UnharmPair_text2")
    unharm_image1: QAPair | None = Field(default=None, alias="UnharmPair_image1")
    unharm_image2: QAPair | None = Field(default=None, alias="UnharmPair_image2")
    explicit_category: str | None = Field(default=None, alias="category")

    @property
    def category(self) -> str:
        """The explicit ``category`` field, else the parent folder of ``image_path``."""
        if self.explicit_category:
            return self.explicit_category
        return Path(self.image_path).parent.name or "unknown"

    def unharm_pairs(self) -> list[tuple[str, QAPair]]:
        """The UnharmPairs present, as (published key, pair), in published order."""
        return [(key, pair) for key in UNHARM_KEYS if (pair := getattr(self, _ATTR_OF_UNHARM_KEY[key])) is not None]

    def to_json(self) -> dict[str, Any]:
        """The record in the published shape (absent keys stay absent)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


_ATTR_OF_UNHARM_KEY = {key: name for name, info in Record.model_fields.items() if (key := info.alias) in UNHARM_KEYS}


class Resolver:
    """Resolves a file's relative image paths against the dataset root.

    The root is the folder that holds the JSON, then its parent. Paths that leave
    the parent folder are refused unless ``allow_outside_root``.
    """

    def __init__(self, json_path: Path, allow_outside_root: bool = False):
        here = json_path.resolve().parent
        self.roots = (here, here.parent)
        self.allow_outside_root = allow_outside_root

    def resolve(self, relative: str, where: str) -> Path:
        if not relative:
            raise UserError(f"{where}: empty image path")
        candidate = Path(relative)
        bases = [None] if candidate.is_absolute() else list(self.roots)
        for base in bases:
            try:
                path = (candidate if base is None else base / candidate).resolve()
                found = path.is_file()
            except (OSError, ValueError) as e:  # a NUL byte, a name too long for the file system, ...
                raise UserError(f"{where}: unusable image path {relative!r} ({type(e).__name__}: {e})") from None
            if not self.allow_outside_root and not path.is_relative_to(self.roots[-1]):
                raise UserError(
                    f"{where}: image path {relative!r} points outside the dataset root "
                    f"{self.roots[-1]} (pass --allow-outside-root to permit it)"
                )
            if found:
                return path
        tried = ", ".join(str(r) for r in self.roots)
        raise UserError(f"{where}: image not found: {relative} (looked under {tried})")


@dataclass
class Split:
    """The records of one published file, with the resolver for their image paths."""

    path: Path
    records: list[Record]
    allow_outside_root: bool = False
    resolver: Resolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.path, self.allow_outside_root)

    @property
    def name(self) -> str:
        return self.path.name

    def where(self, index: int, field_name: str) -> str:
        return f"{self.name}: record {index}: field '{field_name}'"

    def resolve(self, relative: str, *, index: int, field_name: str) -> Path:
        return self.resolver.resolve(relative, self.where(index, field_name))

    def image(self, index: int) -> Path:
        return self.resolve(self.records[index].image_path, index=index, field_name="image_path")

    def sd_image(self, index: int) -> Path:
        return self.resolve(self.records[index].sd_image_path, index=index, field_name="SDImage_path")

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_json_records(path: Path) -> list[Any]:
    """Parse a JSON array or JSON Lines file into raw objects, with one-line errors.

    These are the user's files: a JSON Lines file's last line counts even without its newline.
    """
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{path}: file is empty")
    if stripped[0] == "[":
        rows = parse_json(text, str(path))
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON array of records")
    else:
        try:
            whole = parse_json(text, str(path))
        except UserError:
            whole = None
        if isinstance(whole, dict) and "image_path" not in whole:
            keys = ", ".join(list(whole)[:5]) or "none"
            raise UserError(f"{path}: expected a JSON array of records or JSON Lines, got an object (keys: {keys})")
        rows = parse_json_lines(text, path)
    if _SURROGATE_ESCAPE.search(text):
        for i, row in enumerate(rows):
            try:
                json.dumps(row, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(
                    f"{path}: record {i}: holds a lone surrogate escape (\\ud800-\\udfff): not valid Unicode text"
                ) from None
    return rows


def parse_record(raw: Any, *, where: str) -> Record:
    """Validate one raw object as a Record; errors name the field."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    try:
        return Record.model_validate(raw)
    except ValidationError as e:
        bad = field_problem(e)
        problem = bad.problem
        if bad.kind == "too_short" and bad.loc == ("unsafe_pairs",):
            problem = "is empty (each record needs at least one harmful question)"
        raise UserError(f"{where}: field '{bad.field}': {problem}{bad.more}") from None


def load_split_file(path: Path, *, allow_outside_root: bool = False, predictions: bool = False) -> Split:
    """Read and validate one published file (JSON array or JSON Lines).

    A dataset file must give every harmful question its ``model_response`` (the forget target);
    a prediction file (``predictions=True``) may lack it, as the released inference writes them.
    """
    raw = read_json_records(path)
    if not raw:
        raise UserError(f"{path}: no records")
    records = [parse_record(r, where=f"{path.name}: record {i}") for i, r in enumerate(raw)]
    if not predictions:
        for i, record in enumerate(records):
            for j, pair in enumerate(record.unsafe_pairs):
                if pair.model_response is None:
                    raise UserError(f"{path.name}: record {i}: field 'unsafe_pairs[{j}].model_response': missing")
    return Split(path=path, records=records, allow_outside_root=allow_outside_root)


def split_file(data: Path, split: str) -> Path:
    """The file of ``split`` (train|val) in dataset folder ``data``, or ``data`` itself if a file."""
    if split not in SPLIT_FILES:
        raise UserError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_FILES)}")
    if data.is_file():
        return data
    if not data.exists():
        raise UserError(f"{data}: dataset path not found")
    stem = SPLIT_FILES[split]
    for suffix in (".json", ".jsonl"):
        if (candidate := data / f"{stem}{suffix}").is_file():
            return candidate
    raise UserError(f"{data}: no {stem}.json or {stem}.jsonl in this folder")


def load_split(data: Path | str, split: str, *, allow_outside_root: bool = False) -> Split:
    """Load split ``train`` (forget, Efficacy) or ``val`` (test, Generality) of a dataset."""
    return load_split_file(split_file(Path(data), split), allow_outside_root=allow_outside_root)


def split_files(data: Path) -> list[Path]:
    """All published files in a dataset folder (or the one file given)."""
    if data.is_file():
        return [data]
    if not data.exists():
        raise UserError(f"{data}: dataset path not found")
    found = [p for s in SPLIT_FILES.values() for x in (".json", ".jsonl") if (p := data / f"{s}{x}").is_file()]
    if not found:
        raise UserError(f"{data}: no all_train.json or all_val.json in this folder")
    return found


class VQAItem(BaseModel):
    """One general-VQA question (the specificity proxy): an image, a question, a short answer."""

    model_config = ConfigDict(extra="allow", strict=True)
    image_path: str
    question: str
    answer: str


GENERAL_FILE = "general_vqa.json"


def load_general(data: Path | str, *, allow_outside_root: bool = False) -> tuple[Resolver, list[VQAItem]]:
    """The general-VQA file of a dataset folder (or the file itself), with its path resolver."""
    data = Path(data)
    path = data / GENERAL_FILE if data.is_dir() else data
    raw = read_json_records(path)
    if not raw:
        raise UserError(f"{path}: no records")
    items = []
    for i, r in enumerate(raw):
        where = f"{path.name}: record {i}"
        if not isinstance(r, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(r).__name__}")
        try:
            items.append(VQAItem.model_validate(r))
        except ValidationError as e:
            bad = field_problem(e)
            raise UserError(f"{where}: field '{bad.field}': {bad.problem}{bad.more}") from None
    return Resolver(path, allow_outside_root), items
