"""Writing decoded ids back to files for the CLI: safe output names, PNG images and MP4 videos."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from torch import Tensor

import vqtok
from vqtok.errors import FileFormatError, InputError
from vqtok.io.images import save_image


def write_decoded(
    tok: vqtok.Tokenizer,
    items: Iterable[tuple[int, str, Tensor, tuple[int, ...], float | None]],
    out_dir: Path,
    where: str,
) -> None:
    """Decode ``(index, source, ids, size, fps)`` items of ``where`` (a token file or store, named in errors) into
    ``out_dir``: (h, w) ids as PNGs, (t, h, w) as MP4s, named after their sources (made safe and unique), each
    cropped to ``size``.

    Raises:
        FileFormatError: an item this tokenizer cannot decode (ids outside its codebook, a grid that does not fit
            its size, a video's ids for an image tokenizer); the message names ``where``, the item and its source.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for i, source, ids, size, fps in items:
        try:
            tok.check_grid(ids, size)
            if ids.ndim == 3:
                path = out_dir / output_name(source, i, used, ".mp4")
                tok.decode_video_file(ids, path, (size[0], size[1], size[2]), fps)
            else:
                path = out_dir / output_name(source, i, used, ".png")
                write_decoded_image(tok, ids, size, path)
        except InputError as e:
            raise FileFormatError(f"{where}: item {i} ({source!r}) cannot be decoded: {e}") from None
        print(f"wrote {path}")


def write_decoded_image(tok: vqtok.Tokenizer, ids: Tensor, size: tuple[int, ...], path: Path) -> None:
    """Image ids (h, w) -> an image file (format from the suffix) of ``size`` (H, W)."""
    y = tok.decode(ids[None], size=size)[0]  # (3, H, W) in [-1, 1]
    save_image(path, vqtok.inputs.to_uint8(y))


_MAX_STEM = 200  # characters of a source's stem kept in an output name (file systems allow 255 bytes in a name)


def output_name(source: str, index: int, used: set[str], suffix: str) -> str:
    """A file name inside the output folder: the source's stem, stripped of anything path-like and non-ASCII,
    cut to 200 characters, made unique."""
    fallback = f"{'video' if suffix == '.mp4' else 'image'}_{index}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.replace("\\", "/")).stem).strip("._")
    stem = stem[:_MAX_STEM].rstrip("._") or fallback  # ASCII only, so characters are bytes: the name fits NAME_MAX
    name, n = f"{stem}{suffix}", 1
    while name in used:
        name, n = f"{stem}_{n}{suffix}", n + 1
    used.add(name)
    return name
