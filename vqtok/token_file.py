"""Token files: ids of one or more images in a safetensors file, tagged with the model that made them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from vqtok.errors import FileFormatError, InputError
from vqtok.io.atomic import atomic_file

FORMAT = "vqtok-tokens-1"


@dataclass
class TokenItem:
    """The ids of one image and what is needed to decode it back to its original size."""

    ids: Tensor  # (h, w) int64
    size: tuple[int, int]  # original (H, W) in pixels
    source: str  # where the image came from (file name), for naming outputs


def storage_dtype(num_codes: int) -> torch.dtype:
    """The smallest signed integer dtype that holds ids in [0, num_codes)."""
    if num_codes <= 2**15:
        return torch.int16
    return torch.int32 if num_codes <= 2**31 else torch.int64


def save_tokens(
    path: str | os.PathLike, items: list[TokenItem], model_name: str, fingerprint: str, num_codes: int
) -> None:
    """Write items atomically to a safetensors file; metadata names the model and each item's size and source."""
    if not items:
        raise InputError("no token grids to save")
    path = Path(path)
    dtype = storage_dtype(num_codes)
    tensors = {f"ids.{i}": item.ids.to("cpu", dtype).contiguous() for i, item in enumerate(items)}
    meta = {
        "format": FORMAT,
        "model": model_name,
        "model_fingerprint": fingerprint,
        "codebook_size": str(num_codes),
        "items": json.dumps([{"size": list(item.size), "source": item.source} for item in items]),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except OSError as e:
        raise FileFormatError(f"cannot write token file {path}: {e}") from None


def load_tokens(path: str | os.PathLike, fingerprint: str | None = None) -> tuple[dict[str, str], list[TokenItem]]:
    """Read a token file -> (metadata, items). With ``fingerprint``, refuse files made by another model."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"token file {path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise FileFormatError(f"{path} is not a vqtok token file (format {meta.get('format')!r})")
            entries = _item_entries(json.loads(meta["items"]))
            tensors = [f.get_tensor(f"ids.{i}") for i in range(len(entries))]
    except (SafetensorError, OSError, KeyError, ValueError, json.JSONDecodeError) as e:
        if isinstance(e, FileFormatError):
            raise
        raise FileFormatError(f"{path} is not a readable vqtok token file: {e}") from None
    if fingerprint is not None and meta.get("model_fingerprint") != fingerprint:
        raise FileFormatError(
            f"{path} was made by model {meta.get('model')!r} ({meta.get('model_fingerprint')}), not by the model "
            f"loaded here ({fingerprint}); decode it with the model that encoded it"
        )
    items = []
    for ids, entry in zip(tensors, entries, strict=True):
        if ids.ndim != 2 or ids.is_floating_point():
            raise FileFormatError(f"{path}: token grid of shape {tuple(ids.shape)} and dtype {ids.dtype} is invalid")
        items.append(TokenItem(ids=ids.long(), size=(entry["size"][0], entry["size"][1]), source=entry["source"]))
    return meta, items


def _item_entries(entries: object) -> list[dict]:
    """Check the per-item metadata: a list of {"size": [H, W] positive ints, "source": str}."""

    def valid(e: object) -> bool:
        return (
            isinstance(e, dict)
            and isinstance(e.get("source"), str)
            and isinstance(e.get("size"), list)
            and len(e["size"]) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in e["size"])
        )

    if not isinstance(entries, list) or not entries or not all(valid(e) for e in entries):
        raise ValueError("metadata 'items' must be a non-empty list of {size: [H, W], source: name}")
    return entries
