"""Resize, crop and pad of float pixel tensors: the one implementation the library, the training data and the
tokenize job use.

Pure torch. Every function takes channels-first pixels whose last two dimensions are (H, W): (C, H, W),
(N, C, H, W) or (N, C, T, H, W) as each function says. Resizing is antialiased bicubic (so downscaling averages
instead of aliasing), with ``align_corners=False``; bicubic overshoots at sharp edges, so the result is clamped
back to the input's value range unless the caller asks otherwise.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["center_crop", "pad_to_multiple", "resize", "resize_shorter_side", "shorter_side_size"]


def shorter_side_size(height: int, width: int, shorter: int, minimum: int = 1) -> tuple[int, int]:
    """The (H', W') that scales ``height`` x ``width`` so its shorter side is ``shorter``, keeping the aspect ratio.

    Each side is rounded to the nearest pixel and is at least ``minimum`` (so a crop of that side always fits).
    """
    scale = shorter / min(height, width)
    return max(minimum, round(height * scale)), max(minimum, round(width * scale))


def resize(x: Tensor, size: tuple[int, int], clamp: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """Resize float pixels (C, H, W) or (N, C, H, W) to (..., size[0], size[1]) with antialiased bicubic.

    Args:
        x: float pixels (C, H, W) or (N, C, H, W), values in ``clamp`` (any range when ``clamp`` is None).
        size: (H', W') of the output.
        clamp: (low, high) the result is clamped to (the input's range: (0, 1), (-1, 1) or (0, 255)), or None to
            keep bicubic's overshoot (for a caller that clamps later, after more arithmetic).

    Returns:
        float pixels of the same layout and dtype with (H', W'); ``x`` itself when it already has that size.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    unbatched = x.ndim == 3
    y = F.interpolate(x[None] if unbatched else x, size=size, mode="bicubic", antialias=True, align_corners=False)
    if clamp is not None:
        y = y.clamp_(*clamp)
    return y[0] if unbatched else y


def resize_shorter_side(
    x: Tensor, shorter: int, minimum: int = 1, clamp: tuple[float, float] | None = (0.0, 1.0)
) -> Tensor:
    """Resize float pixels (C, H, W) or (N, C, H, W) so the shorter side is ``shorter`` (both sides >= ``minimum``).

    The size comes from :func:`shorter_side_size`, the pixels from :func:`resize` (``x`` itself when unchanged).
    """
    return resize(x, shorter_side_size(x.shape[-2], x.shape[-1], shorter, minimum), clamp)


def center_crop(x: Tensor, height: int, width: int | None = None) -> Tensor:
    """The centre ``height`` x ``width`` window (a square when ``width`` is None) of pixels (..., H, W).

    A side larger than the input is cut to the input's side (never padded), so the window may be smaller than asked;
    callers that need the exact size check it first. The top/left offsets round down, like ``(H - h) // 2``.
    Returns a view (not contiguous).
    """
    width = height if width is None else width
    h, w = x.shape[-2:]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return x[..., top : top + height, left : left + width]


def pad_to_multiple(x: Tensor, f: int) -> Tensor:
    """(B, C, [T,] H, W) -> (B, C, [T,] ceil(H/f)*f, ceil(W/f)*f), replicating the last row/column.

    Pads at the bottom and right only, so cropping ``[..., :H, :W]`` gives the input back; ``x`` itself when no
    padding is needed.
    """
    pad_h, pad_w = -x.shape[-2] % f, -x.shape[-1] % f
    if pad_h or pad_w:
        pad = (0, pad_w, 0, pad_h) + (0, 0) * (x.ndim - 4)
        x = F.pad(x, pad, mode="replicate")
    return x
