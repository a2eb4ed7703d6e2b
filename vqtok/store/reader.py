"""Reading a token store written by ``vqtok tokenize``: :class:`TokenStore` and its PyTorch Dataset wrapper."""

from __future__ import annotations

import operator
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor
from torch.utils.data import Dataset

from vqtok.errors import FileFormatError, InputError
from vqtok.store.layout import MANIFEST_FILE, SHARD_TENSOR, ItemRecord, StoreMeta, read_jsonl

_OPEN_SHARDS = 32  # shard handles kept open per process (each is a memory map)


@dataclass(frozen=True)
class StoreItem:
    """One stored image or video: its ids and what is needed to decode it back."""

    ids: Tensor  # int64 (h, w) for an image, (t, h, w) for a video, in [0, codebook size)
    source: str  # absolute path of the input file
    size: tuple[int, ...]  # the file's (H, W) or (T, H, W)
    input_size: tuple[int, ...]  # the size that was encoded (after resizing/cropping): decode(ids, size=input_size)
    fps: float | None = None  # videos: the file's frame rate
    label: int | None = None  # labelled stores: the item's class, an index into TokenStore.classes


class TokenStore:
    """Random access to the items of a token store, by index or by source path.

    >>> store = TokenStore("tokens/")
    >>> len(store), store.meta.model, store.meta.num_codes
    >>> item = store[0]                       # StoreItem; item.ids is int64 (h, w) or (t, h, w)
    >>> item = store["/data/cats/001.jpg"]    # by source path (relative paths are taken from the cwd)
    >>> for item in store: ...                # manifest order: sorted by source
    >>> store.classes, item.label             # labelled stores (tokenize --labels folder): ["cat", "dog"], 0

    Only the ids asked for are read (shards are memory-mapped), so a store larger than memory is fine. Safe to use
    from DataLoader worker processes (each opens its own shard handles).

    Raises:
        FileFormatError: ``path`` is not a store, its manifest is missing (the job that writes it has not finished;
            rerun it), or a record points outside its shard.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.meta = StoreMeta.load(self.path)
        manifest = self.path / MANIFEST_FILE
        if not manifest.is_file():
            raise FileFormatError(
                f"{self.path} has no {MANIFEST_FILE}: the vqtok tokenize run that writes it has not finished; "
                "rerun the same command to finish it"
            )
        self.records = [ItemRecord.from_json(d, f"{manifest}:{n}") for n, d in read_jsonl(manifest)]
        self._index = {r.source: i for i, r in enumerate(self.records)}
        self._labels = self._read_labels(manifest)
        self._shards: OrderedDict[str, safe_open] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict:
        """Picklable for spawned DataLoader workers: open shard handles stay behind."""
        return {**self.__dict__, "_shards": OrderedDict()}

    def __getitem__(self, key: int | str | os.PathLike[str]) -> StoreItem:
        try:
            i = self.index_of(key) if isinstance(key, (str, os.PathLike)) else operator.index(key)
        except TypeError:
            raise InputError(f"index a TokenStore with an int or a source path, not {type(key).__name__}") from None
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a store of {len(self)} items")
        record = self.records[i]
        ids = self.ids(i)
        return StoreItem(ids, record.source, tuple(record.size), tuple(record.input_size), record.fps, self.label(i))

    def __iter__(self) -> Iterator[StoreItem]:
        for i in range(len(self)):
            yield self[i]

    def __contains__(self, source: object) -> bool:
        return isinstance(source, (str, os.PathLike)) and os.path.abspath(source) in self._index

    @property
    def classes(self) -> list[str] | None:
        """The class names of a labelled store (sorted; ``label`` indexes them), or None for an unlabelled one."""
        return list(self.meta.classes) if self._labels is not None and self.meta.classes is not None else None

    def label(self, i: int) -> int | None:
        """Item ``i``'s class (an index into :attr:`classes`) without reading its ids; None in an unlabelled store."""
        return None if self._labels is None else self._labels[i]

    def _read_labels(self, manifest: Path) -> list[int] | None:
        if not self.meta.labelled:
            return None
        classes = self.meta.classes or []
        index = {name: k for k, name in enumerate(classes)}
        labels = []
        for r in self.records:
            if r.label not in index:
                raise FileFormatError(
                    f"{manifest}: {r.source!r} has class {r.label!r}, which is not among the store's classes "
                    f"{classes} in store.json"
                )
            labels.append(index[r.label])
        return labels

    def index_of(self, source: str | os.PathLike[str]) -> int:
        """The index of the item made from ``source`` (compared as absolute paths)."""
        try:
            return self._index[os.path.abspath(source)]
        except KeyError:
            raise KeyError(f"{str(source)!r} is not in the store {self.path}") from None

    def ids(self, i: int) -> Tensor:
        """The ids of item ``i``: int64 (h, w) or (t, h, w), read from its shard."""
        record = self.records[i]
        try:
            flat = self._shard(record.shard).get_slice(SHARD_TENSOR)
        except SafetensorError as e:  # a shard without the "ids" tensor
            raise FileFormatError(f"cannot read shard {self.path / record.shard}: {e}") from None
        shape = flat.get_shape()
        if len(shape) != 1:
            raise FileFormatError(
                f"{record.shard}: '{SHARD_TENSOR}' has shape {shape}; a shard holds a flat 1-D tensor"
            )
        if record.offset + record.length > shape[0]:
            raise FileFormatError(f"{record.shard}: item {record.source!r} lies beyond the shard's {shape[0]} ids")
        ids = flat[record.offset : record.offset + record.length]
        if ids.dtype != self.meta.dtype:
            raise FileFormatError(
                f"{record.shard}: ids stored as {ids.dtype}, but the store's ids are {self.meta.dtype}"
            )
        ids = ids.to(torch.int64)
        if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < self.meta.num_codes:
            raise FileFormatError(f"{record.shard}: ids of {record.source!r} lie outside [0, {self.meta.num_codes})")
        return ids.view(*record.grid)

    def _shard(self, name: str) -> safe_open:
        if os.getpid() != self._pid:  # a forked DataLoader worker: open its own handles
            self._shards.clear()
            self._pid = os.getpid()
        if name in self._shards:
            self._shards.move_to_end(name)
            return self._shards[name]
        path = self.path / name
        try:
            handle = safe_open(str(path), framework="pt")
            fingerprint = (handle.metadata() or {}).get("model_fingerprint")
        except (SafetensorError, OSError) as e:
            raise FileFormatError(f"cannot read shard {path}: {e}") from None
        if fingerprint != self.meta.model_fingerprint:
            raise FileFormatError(f"shard {path} was written by another model ({fingerprint})")
        self._shards[name] = handle
        if len(self._shards) > _OPEN_SHARDS:
            self._shards.popitem(last=False)
        return handle

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, items={len(self)}, model={self.meta.model!r})"


class TokenDataset(Dataset):
    """A PyTorch Dataset over a store: ``dataset[i]`` is item i's ids, int64 (h, w) or (t, h, w).

    Items of different grid sizes cannot be stacked by the default collate; see
    :class:`vqtok.store.PackedTokens` for fixed-length sequences.
    """

    def __init__(self, store: TokenStore | str | os.PathLike[str]) -> None:
        self.store = store if isinstance(store, TokenStore) else TokenStore(store)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> Tensor:
        return self.store.ids(i)
