"""Reading the inputs of a tokenization job in DataLoader workers: decode, hash, size; batches never span units.

Every input becomes a dict. A readable one::

    {"unit", "source", "sha256", "size", "input_size", "fps", "pixels"}  (+ "label", the class, in a labelled store)

with ``pixels`` float32 (3, H, W) in [-1, 1] for an image (exactly what ``vqtok.inputs.image_batch(path)`` gives
at native size) or uint8 (3, T, H, W) for a video; one that is not: ``{"unit", "source", "error"}``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from vqtok.errors import FileFormatError, VqtokError
from vqtok.inputs import image_batch
from vqtok.io.images import DEFAULT_MAX_PIXELS
from vqtok.pretokenize.resolution import Resolution
from vqtok.pretokenize.sources import folder_label

logger = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One input of one unit."""

    unit: str
    source: str  # absolute path


class InputReader(Dataset):
    """Map-style dataset: ``reader[i]`` decodes entry i (see the module docstring for what it returns)."""

    def __init__(
        self,
        entries: list[Entry],
        video_model: bool,
        resolution: Resolution,
        max_frames: int | None = None,
        video_suffixes: frozenset[str] = frozenset(),
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        label_roots: list[str] | None = None,
    ) -> None:
        self.entries = entries
        self.video_model = video_model
        self.resolution = resolution
        self.max_frames = max_frames
        self.video_suffixes = video_suffixes
        self.max_pixels = max_pixels  # larger images and video frames (H * W) are refused from their header
        self.label_roots = label_roots  # labelled stores: the source folders whose first subfolders name classes

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        entry = self.entries[i]
        labels = {}
        if self.label_roots is not None:
            label = folder_label(entry.source, self.label_roots)
            if label is None:
                where = " or ".join(self.label_roots)
                error = f"not inside a class folder of {where} (with --labels folder, ROOT/CLASS/file names the class)"
                return {"unit": entry.unit, "source": entry.source, "error": error}
            labels["label"] = label
        try:
            return {"unit": entry.unit, "source": entry.source, **labels, **self._read(Path(entry.source))}
        except (VqtokError, OSError) as e:
            return {"unit": entry.unit, "source": entry.source, "error": str(e)}
        except Exception as e:  # a decoder may raise anything on hostile input: record it, never stop the job
            return {"unit": entry.unit, "source": entry.source, "error": f"{type(e).__name__}: {e}"}

    def _read(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise FileFormatError(f"{path} does not exist or is not a regular file")
        if path.suffix.lower() in self.video_suffixes:
            if not self.video_model:
                raise FileFormatError(f"{path} is a video, and the model is an image tokenizer")
            return self._read_video(path)
        return self._read_image(path)

    def _read_image(self, path: Path) -> dict[str, Any]:
        digest = file_sha256(path)
        x = image_batch(path, max_pixels=self.max_pixels)  # (1, 3, H, W) in [-1, 1], the API's own reader
        size = list(x.shape[-2:])
        x = self.resolution.apply(x)[0].contiguous()  # (3, H', W')
        return {"sha256": digest, "size": size, "input_size": list(x.shape[-2:]), "fps": None, "pixels": x}

    def _read_video(self, path: Path) -> dict[str, Any]:
        from vqtok.io.video import read_video

        digest = file_sha256(path)
        frames, fps = read_video(path, max_frames=self.max_frames, max_frame_pixels=self.max_pixels)  # (T, H, W, 3)
        size = list(frames.shape[:3])
        x = self.resolution.apply_uint8(torch.from_numpy(frames).permute(0, 3, 1, 2))  # (T, 3, H', W')
        x = x.permute(1, 0, 2, 3).contiguous()  # (3, T, H', W')
        return {"sha256": digest, "size": size, "input_size": list(x.shape[1:]), "fps": fps, "pixels": x}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class UnitBatchSampler(Sampler[list[int]]):
    """Batches of consecutive indices that never cross a unit boundary, so a batch's items all belong to one unit
    and a unit's batches are the same whichever rank processes it (the ids do not depend on the split)."""

    def __init__(self, unit_sizes: list[int], batch_size: int) -> None:
        self.unit_sizes = unit_sizes
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        start = 0
        for size in self.unit_sizes:
            for b in range(start, start + size, self.batch_size):
                yield list(range(b, min(b + self.batch_size, start + size)))
            start += size

    def __len__(self) -> int:
        return sum(-(-size // self.batch_size) for size in self.unit_sizes)


def collate_inputs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """-> {"groups": [(pixels (n, 3, [T,] H, W), [metadata of each]), ...], "failed": [error records]}.

    Readable inputs are grouped by shape (in order of first appearance), so each group is one model call.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    failed = []
    for item in items:
        if "error" in item:
            failed.append(item)
        else:
            groups.setdefault((item["pixels"].dtype, *item["pixels"].shape), []).append(item)
    batched = []
    for members in groups.values():
        pixels = torch.stack([m.pop("pixels") for m in members])
        batched.append((pixels, members))
    return {"groups": batched, "failed": failed}


def worker_init(_: int) -> None:
    """DataLoader workers decode with one thread each: the model's threads keep the rest of the CPU."""
    torch.set_num_threads(1)
