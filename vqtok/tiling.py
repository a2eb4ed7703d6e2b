"""Overlapping spatial tiles, so large images are encoded and decoded in memory bounded by the tile size.

Tiles are laid out on the latent grid: ``size`` latents a side, as few as cover the grid with at least
``overlap`` latents shared by neighbours, spread evenly. Encoding keeps, from each tile, the ids of the positions nearer
its centre than any other tile's (each overlap is split at its middle), so no id comes from near a tile's border.
Decoding blends the tiles' pixels with linear ramps across each overlap, normalised to sum to one, so the
blend shows no seam.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor


def tile_starts(n: int, size: int, overlap: int) -> list[int]:
    """Starts of the fewest tiles of ``size`` that cover [0, n) overlapping by at least ``overlap`` (< size)."""
    if n <= size:
        return [0]
    count = math.ceil((n - overlap) / (size - overlap))  # the fewest tiles that overlap enough
    return [round(k * (n - size) / (count - 1)) for k in range(count)]  # spread evenly, the last flush with n


def _cores(starts: list[int], size: int, n: int) -> list[tuple[int, int]]:
    """[begin, end) of each tile's share of [0, n): overlaps split at their middle."""
    cuts = [(later + earlier + size) // 2 for earlier, later in pairwise(starts)]
    bounds = [0, *cuts, n]
    return list(pairwise(bounds))


def _ramps(starts: list[int], size: int, scale: int, like: Tensor) -> list[Tensor]:
    """Per tile, its blend weight (size * scale,) along one axis: linear ramps across the overlaps with its
    neighbours, normalised so that the weights of all tiles covering a position sum to one (evenly spread tiles
    can overlap three deep when the axis is just shorter than two tiles)."""
    span = size * scale
    ramp = (torch.arange(span, dtype=like.dtype, device=like.device) + 0.5) / span  # (span,) in (0, 1)
    weights = []
    for k, start in enumerate(starts):
        w = torch.ones(span, dtype=like.dtype, device=like.device)
        if k > 0:  # fade in across the overlap with the previous tile
            n = (starts[k - 1] + size - start) * scale
            w[:n] *= ramp[:n] * span / n
        if k + 1 < len(starts):  # fade out across the overlap with the next tile
            n = (start + size - starts[k + 1]) * scale
            w[span - n :] *= 1 - ramp[:n] * span / n
        weights.append(w)
    total = torch.zeros((starts[-1] + size) * scale, dtype=like.dtype, device=like.device)
    for start, w in zip(starts, weights, strict=True):
        total[start * scale : start * scale + span] += w
    return [w / total[start * scale : start * scale + span] for start, w in zip(starts, weights, strict=True)]


def encode_tiled(encode: Callable[[Tensor], Tensor], x: Tensor, f: int, size: int, overlap: int) -> Tensor:
    """Encode images x (B, C, H, W) or videos (B, C, T, H, W), H and W multiples of f, tile by tile -> ids
    (B, [t,] H/f, W/f). Tiles are visited in the same order every call (row by row), so a caller can keep
    per-tile state across the chunks of a video.

    Args:
        encode: pixels (B, C, [T,] h*f, w*f) -> ids (B, [t,] h, w).
        f: the spatial downsampling factor.
        size: tile side in latents.
        overlap: minimum overlap of neighbouring tiles in latents.
    """
    h, w = x.shape[-2] // f, x.shape[-1] // f
    rows, cols = tile_starts(h, size, overlap), tile_starts(w, size, overlap)
    ids: Tensor | None = None
    for top, (r0, r1) in zip(rows, _cores(rows, size, h), strict=True):
        for left, (c0, c1) in zip(cols, _cores(cols, size, w), strict=True):
            tile = x[..., top * f : (top + size) * f, left * f : (left + size) * f]
            tile_ids = encode(tile)  # (B, [t,] <=size, <=size)
            if ids is None:
                ids = tile_ids.new_empty(*tile_ids.shape[:-2], h, w)
            ids[..., r0:r1, c0:c1] = tile_ids[..., r0 - top : r1 - top, c0 - left : c1 - left]
    assert ids is not None
    return ids


def decode_tiled(decode: Callable[[Tensor], Tensor], ids: Tensor, f: int, size: int, overlap: int) -> Tensor:
    """Decode ids (B, [t,] h, w) tile by tile -> float32 pixels (B, C, [T,] h*f, w*f), blended across overlaps;
    tiles in the same order as :func:`encode_tiled`.

    Args:
        decode: ids (B, [t,] h', w') -> float pixels (B, C, [T,] h'*f, w'*f).
        f, size, overlap: as for :func:`encode_tiled`.
    """
    h, w = ids.shape[-2:]
    rows, cols = tile_starts(h, size, overlap), tile_starts(w, size, overlap)
    out: Tensor | None = None
    row_weights = col_weights = None
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            y = decode(ids[..., top : top + size, left : left + size]).float()  # (B, C, [T,] th*f, tw*f)
            if out is None:
                out = y.new_zeros(*y.shape[:-2], h * f, w * f)
                row_weights = _ramps(rows, min(size, h), f, y)
                col_weights = _ramps(cols, min(size, w), f, y)
            assert row_weights is not None and col_weights is not None
            weight = row_weights[i][:, None] * col_weights[j][None, :]  # (th*f, tw*f)
            out[..., top * f : top * f + y.shape[-2], left * f : left * f + y.shape[-1]] += y * weight
    assert out is not None
    return out
