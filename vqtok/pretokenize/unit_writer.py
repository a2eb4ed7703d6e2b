"""Writing one work unit: its ids into shards, then its records into parts/UNIT.jsonl, which commits it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vqtok.io.atomic import atomic_file
from vqtok.io.tensors import save_safetensors
from vqtok.store.layout import (
    FORMAT,
    PARTS_DIR,
    SHARD_TENSOR,
    SHARDS_DIR,
    ErrorRecord,
    ItemRecord,
    StoreMeta,
    write_jsonl_atomic,
)


class UnitWriter:
    """Collects the results of one unit, flushing a shard whenever ``shard_bytes`` of ids are buffered; ``commit``
    writes the last shard and then the part file. Shard names are ``UNIT-000``, ``UNIT-001``, ... in the order the
    results arrive, so redoing a unit after a crash rewrites the same files with the same content.
    """

    def __init__(self, store: Path, unit: str, expected: int, meta: StoreMeta, shard_bytes: int, rank: int = 0) -> None:
        self.store = store
        self.unit = unit
        self.expected = expected  # number of inputs in the unit
        self.meta = meta
        self.dtype = meta.dtype
        self.shard_bytes = shard_bytes
        self.rank = rank  # the writing rank, recorded in the shards' metadata
        self.records: list[ItemRecord | ErrorRecord] = []
        self._buffer: list[Tensor] = []  # flat ids of the shard being filled
        self._buffered = 0  # ids in _buffer
        self._shards = 0  # shards written

    @property
    def complete(self) -> bool:
        return len(self.records) == self.expected

    def add(self, result: dict[str, Any]) -> None:
        """One input's result: {"source", "error"} or {"source", "sha256", "size", "input_size", "fps", "ids"}
        (plus "label", the class name, in a labelled store)."""
        if "error" in result:
            self.records.append(ErrorRecord(source=result["source"], error=result["error"]))
            return
        ids: Tensor = result["ids"]  # (h, w) or (t, h, w) int64
        record = ItemRecord(
            source=result["source"],
            sha256=result["sha256"],
            size=list(result["size"]),
            input_size=list(result["input_size"]),
            grid=list(ids.shape),
            shard=f"{SHARDS_DIR}/{self._shard_name(self._shards)}",
            offset=self._buffered,
            fps=result["fps"],
            label=result.get("label"),
        )
        self.records.append(record)
        self._buffer.append(ids.flatten().to(self.dtype))
        self._buffered += ids.numel()
        if self._buffered * self.dtype.itemsize >= self.shard_bytes:
            self._flush()

    def commit(self) -> None:
        """Write the last shard, then the part file: from then on the unit counts as done."""
        assert self.complete, f"unit {self.unit}: {len(self.records)} of {self.expected} results"
        self._flush()
        lines = [r.to_json() if isinstance(r, ItemRecord) else vars(r) for r in self.records]
        write_jsonl_atomic(self.store / PARTS_DIR / f"{self.unit}.jsonl", lines)

    def _flush(self) -> None:
        if not self._buffer:
            return
        flat = torch.cat(self._buffer)  # (n,) in the store's dtype
        meta = {
            "format": FORMAT,
            "model_fingerprint": self.meta.model_fingerprint,
            "unit": self.unit,
            "rank": str(self.rank),
        }
        with atomic_file(self.store / SHARDS_DIR / self._shard_name(self._shards)) as tmp:
            save_safetensors({SHARD_TENSOR: flat}, tmp, metadata=meta)
        self._buffer, self._buffered = [], 0
        self._shards += 1

    def _shard_name(self, k: int) -> str:
        return f"{self.unit}-{k:03d}.safetensors"
