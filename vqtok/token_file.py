"""Token files: ids of one or more images or videos in a safetensors file, tagged with the model that made them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from vqtok.errors import FileFormatError, InputError
from vqtok.io.atomic import atomic_file
from vqtok.io.tensors import id_dtype, save_safetensors

FORMAT = "vqtok-tokens-1"


@dataclass
class TokenItem:
    """The ids of one image or video and what is needed to decode it back to its original size."""

    ids: Tensor  # (h, w) int64 for an image, (t, h, w) for a video
    size: tuple[int, ...]  # original (H, W) in pixels, or (T, H, W) for a video
    source: str  # where the image or video came from (file name), for naming outputs
    fps: float | None = None  # videos: frame rate to write them back at


def save_tokens(
    path: str | os.PathLike, items: list[TokenItem], model_name: str, fingerprint: str, num_codes: int
) -> None:
    """Write items atomically to a safetensors file; metadata names the model and each item's size and source."""
    if not items:
        raise InputError("no token grids to save")
    path = Path(path)
    dtype = id_dtype(num_codes, "tokens")  # int16, int32 or int64
    tensors = {f"ids.{i}": item.ids.to("cpu", dtype).contiguous() for i, item in enumerate(items)}
    meta = {
        "format": FORMAT,
        "model": model_name,
        "model_fingerprint": fingerprint,
        "codebook_size": str(num_codes),
        "items": json.dumps([_item_entry(item) for item in items]),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            save_safetensors(tensors, tmp, metadata=meta)
    except OSError as e:
        raise FileFormatError(f"cannot write token file {path}: {e}") from None


def load_tokens(
    path: str | os.PathLike, fingerprint: str | tuple[str, ...] | None = None
) -> tuple[dict[str, str], list[TokenItem]]:
    """Read a token file -> (metadata, items). With ``fingerprint`` (one, or the tuple of a model's
    :attr:`~vqtok.Tokenizer.fingerprints`), refuse files made by another model."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"token file {path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise FileFormatError(f"{path} is not a vqtok token file (format {meta.get('format')!r})")
            entries = _item_entries(json.loads(meta["items"]))
            names = [f"ids.{i}" for i in range(len(entries))]
            extra = sorted(set(f.keys()) - set(names))
            if extra:
                raise FileFormatError(f"{path} holds tensors {extra[:5]} that its 'items' metadata does not list")
            tensors = [f.get_tensor(name) for name in names]
    # TypeError and RuntimeError: torch on shapes it cannot represent; RecursionError (a RuntimeError): nested JSON
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        if isinstance(e, FileFormatError):
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__  # without torch's C++ trace
        raise FileFormatError(f"{path} is not a readable vqtok token file: {message}") from None
    accepted = (fingerprint,) if isinstance(fingerprint, str) else fingerprint
    if accepted is not None and meta.get("model_fingerprint") not in accepted:
        raise FileFormatError(
            f"{path} was made by model {meta.get('model')!r} ({meta.get('model_fingerprint')}), not by the model "
            f"loaded here ({accepted[0]}); decode it with the model that encoded it"
        )
    items = []
    for ids, entry in zip(tensors, entries, strict=True):
        if ids.ndim != len(entry["size"]) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise FileFormatError(
                f"{path}: token grid of shape {tuple(ids.shape)} and dtype {ids.dtype} does not fit an item of "
                f"size {entry['size']}"
            )
        size = tuple(entry["size"])
        items.append(TokenItem(ids=ids.long(), size=size, source=entry["source"], fps=entry.get("fps")))
    return meta, items


def _item_entry(item: TokenItem) -> dict:
    entry: dict = {"size": list(item.size), "source": item.source}
    if item.fps is not None:
        entry["fps"] = float(item.fps)
    return entry


def _item_entries(entries: object) -> list[dict]:
    """Check the per-item metadata: a list of {"size": [H, W] or [T, H, W] positive ints, "source": str, and
    for videos "fps": positive number}."""

    def valid(e: object) -> bool:
        fps = e.get("fps", 1.0) if isinstance(e, dict) else None
        return (
            isinstance(e, dict)
            and isinstance(e.get("source"), str)
            and isinstance(e.get("size"), list)
            and len(e["size"]) in (2, 3)
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in e["size"])
            and isinstance(fps, (int, float))
            and not isinstance(fps, bool)
            and 0 < fps < 10_000
        )

    if not isinstance(entries, list) or not entries or not all(valid(e) for e in entries):
        raise ValueError("metadata 'items' must be a non-empty list of {size: [H, W] or [T, H, W], source: name}")
    return entries
