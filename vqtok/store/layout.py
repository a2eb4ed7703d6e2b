"""The on-disk layout of a token store: file names, the store metadata and the per-item manifest records.

A store is a directory::

    STORE/
      store.json          StoreMeta: model name, fingerprint, config hash, vqtok version, id dtype, preprocessing
      manifest.jsonl      one ItemRecord per stored item, sorted by source (merged from parts/ at the end of a run)
      errors.jsonl        one {"source", "error"} per input that could not be tokenized (merged from parts/)
      plan.jsonl          the work units of the runs so far: {"unit": name, "sources": [...]} (resume state)
      parts/UNIT.jsonl    the records of one finished unit; a unit is finished exactly when this file exists
      shards/UNIT-NNN.safetensors  one flat 1-D tensor "ids" holding the unit's token grids back to back

Every file is written atomically (temporary file, fsync, rename): a reader sees a complete file or none.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import torch

from vqtok.errors import FileFormatError
from vqtok.io.atomic import atomic_file

FORMAT = "vqtok-store-1"
STORE_FILE = "store.json"
MANIFEST_FILE = "manifest.jsonl"
ERRORS_FILE = "errors.jsonl"
PLAN_FILE = "plan.jsonl"
PARTS_DIR = "parts"
SHARDS_DIR = "shards"
SHARD_TENSOR = "ids"  # the name of the flat id tensor inside every shard


# the dtypes of vqtok.io.tensors.id_dtype(num_codes, "store"), by their names in store.json
DTYPE_NAMES = {torch.uint8: "uint8", torch.uint16: "uint16", torch.int32: "int32"}


@dataclass(frozen=True)
class StoreMeta:
    """store.json: what made the ids, so a store is never extended by another model or another preprocessing."""

    model: str  # the tokenizer's config name
    model_fingerprint: str  # config + codebook hash (Tokenizer.fingerprint): ids are only comparable when equal
    config_hash: str  # sha256 of the tokenizer's config.json content
    num_codes: int  # ids lie in [0, num_codes)
    ids_dtype: str  # "uint8", "uint16" or "int32": how shards store the ids
    video: bool  # whether the model is a video tokenizer
    preprocess: dict = field(default_factory=dict)  # the resolution policy (resize, crop, max_frames)
    vqtok_version: str = ""  # the version that created the store
    format: str = FORMAT
    # labelled stores (vqtok tokenize --labels folder): the sorted class names; an item's label indexes this list.
    # None for an unlabelled store (the key is then left out of store.json, as before labels existed).
    classes: list[str] | None = None

    def save(self, store: Path) -> None:
        d = asdict(self)
        if self.classes is None:
            del d["classes"]
        write_json_atomic(store / STORE_FILE, d)

    @classmethod
    def load(cls, store: Path) -> StoreMeta:
        path = store / STORE_FILE
        if not path.is_file():
            raise FileFormatError(f"{store} is not a vqtok token store: {STORE_FILE} is missing")
        d = read_json(path)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise FileFormatError(f"{path} is not a {FORMAT} store description")
        try:
            meta = cls(**d)
        except TypeError as e:
            raise FileFormatError(f"{path} has unexpected fields: {e}") from None
        if not (type(meta.num_codes) is int and meta.num_codes >= 1 and isinstance(meta.model_fingerprint, str)):
            raise FileFormatError(f"{path}: num_codes must be a positive int and model_fingerprint a string")
        if meta.classes is not None and not (
            isinstance(meta.classes, list) and all(isinstance(c, str) for c in meta.classes)
        ):
            raise FileFormatError(f"{path}: classes must be a list of class names")
        return meta

    @property
    def labelled(self) -> bool:
        """Whether the items carry a class (the store was made with ``--labels``)."""
        return isinstance(self.preprocess, dict) and bool(self.preprocess.get("labels"))

    @property
    def dtype(self) -> torch.dtype:
        names = {v: k for k, v in DTYPE_NAMES.items()}
        if self.ids_dtype not in names:
            raise FileFormatError(f"unknown ids dtype {self.ids_dtype!r} in {STORE_FILE}")
        return names[self.ids_dtype]


@dataclass(frozen=True)
class ItemRecord:
    """One stored item: where its ids are and what they were made from (a line of manifest.jsonl)."""

    source: str  # absolute path of the input file
    sha256: str  # hash of the file's bytes when it was tokenized
    size: list[int]  # the file's size: [H, W] for an image, [T, H, W] for a video
    input_size: list[int]  # the size after the resolution policy, i.e. what was encoded (decode crops to it)
    grid: list[int]  # the token grid: [h, w] or [t, h, w]
    shard: str  # shard file, relative to the store
    offset: int  # index of the grid's first id in the shard's flat tensor; the grid is row-major
    fps: float | None = None  # videos: the file's frame rate
    label: str | None = None  # labelled stores: the item's class name (its first folder under the source root)

    @property
    def length(self) -> int:
        """Number of ids in the grid."""
        return math.prod(self.grid)

    def to_json(self) -> dict:
        d = asdict(self)
        for key in ("fps", "label"):
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_json(cls, d: object, where: str) -> ItemRecord:
        try:
            record = cls(**d)  # type: ignore[arg-type]
        except TypeError as e:
            raise FileFormatError(f"{where}: not a manifest record ({e})") from None
        ok = isinstance(record.source, str) and isinstance(record.shard, str) and isinstance(record.offset, int)
        ok = ok and all(
            isinstance(v, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v)
            for v in (record.size, record.input_size, record.grid)
        )
        ok = ok and record.offset >= 0 and len(record.grid) in (2, 3)
        ok = ok and (record.label is None or (isinstance(record.label, str) and record.label != ""))
        ok = ok and len(record.size) == len(record.input_size) == len(record.grid)  # [H, W] or [T, H, W] each
        if not ok:
            raise FileFormatError(f"{where}: malformed manifest record for {record.source!r}")
        shard = PurePosixPath(record.shard)
        if not shard.parts or shard.is_absolute() or ".." in shard.parts or "\\" in record.shard:
            raise FileFormatError(
                f"{where}: shard {record.shard!r} of {record.source!r} is not a file path inside the store"
            )
        return record


@dataclass(frozen=True)
class ErrorRecord:
    """An input that could not be tokenized (a line of errors.jsonl)."""

    source: str
    error: str


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or an int of 4300+ digits
        raise FileFormatError(f"cannot read {path}: {e}") from None


def write_json_atomic(path: Path, value: object) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2) + "\n")


def read_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, value) for each line of a JSONL file."""
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, json.loads(line)
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or an int of 4300+ digits
        raise FileFormatError(f"cannot read {path}: {e}") from None


def write_jsonl_atomic(path: Path | str | os.PathLike, values: Iterable[object]) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for value in values:
            f.write(json.dumps(value) + "\n")  # ASCII: file names that are not UTF-8 round-trip


def part_records(path: Path) -> Iterator[ItemRecord | ErrorRecord]:
    """The records of one finished unit (parts/UNIT.jsonl)."""
    for n, d in read_jsonl(path):
        if isinstance(d, dict) and set(d) == {"source", "error"}:
            yield ErrorRecord(**d)
        else:
            yield ItemRecord.from_json(d, f"{path}:{n}")
