"""Turn what users hand to ``Tokenizer.encode``/``decode`` into validated tensors, or say clearly why not; and
turn decoded pixels back into uint8 arrays (:func:`to_uint8`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vqtok.errors import InputError, InputTypeError
from vqtok.io.images import DEFAULT_MAX_PIXELS, pil_to_array, read_image

ImageInput = Tensor | np.ndarray | Image.Image | str | os.PathLike | Sequence[Any]
VideoInput = Tensor | np.ndarray | str | os.PathLike | Sequence[Any]
_RANGE_TOLERANCE = 1e-3  # values this far outside [-1, 1] are rounding, not a wrong convention


def image_batch(x: ImageInput, channels: int = 3, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """Any accepted image input -> float32 tensor (B, channels, H, W) in [-1, 1] on the CPU.

    Accepted: a float tensor (B, C, H, W) in [-1, 1]; a PIL image; a uint8 array (H, W, 3) or (B, H, W, 3);
    a path to an image file; or a list of PIL images / arrays / paths of one size. Images of more than
    ``max_pixels`` pixels (H * W) are refused before their values are read (files: from the header, before
    decoding); ``None`` lifts the limit.
    """
    if isinstance(x, Tensor):
        return _check_float_batch(x, channels, max_pixels)
    if channels != 3:
        raise InputTypeError(f"this model takes {channels}-channel images: pass a float tensor (B, {channels}, H, W)")
    if isinstance(x, (str, os.PathLike)):
        return _from_hwc01(read_image(x, max_pixels=max_pixels))
    if isinstance(x, Image.Image):
        check_pixels(x.height, x.width, max_pixels, "image")
        return _from_hwc01(pil_to_array(x))
    if isinstance(x, np.ndarray):
        return _from_uint8_array(x, max_pixels)
    if isinstance(x, (list, tuple)):
        return _stack([image_batch(item, channels, max_pixels) for item in x])
    raise InputTypeError(
        f"cannot encode a {type(x).__name__}: pass a float tensor (B, 3, H, W) in [-1, 1], a PIL image, "
        "a uint8 array (H, W, 3), an image file path, or a list of those"
    )


def video_batch(x: VideoInput, channels: int = 3, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """An in-memory video input -> float32 tensor (B, channels, T, H, W) in [-1, 1] on the CPU.

    Accepted: a float tensor (B, C, T, H, W) in [-1, 1]; a uint8 array (T, H, W, 3) or (B, T, H, W, 3); or a list
    of those, of one shape. (Video files are streamed by :meth:`vqtok.Tokenizer.encode`, not read whole here.)
    Frames of more than ``max_pixels`` pixels (H * W) are refused before their values are read.
    """
    if isinstance(x, Tensor):
        return _check_float_batch(x, channels, max_pixels, video=True)
    if isinstance(x, np.ndarray):
        return _from_uint8_array(x, max_pixels, video=True)
    if isinstance(x, (list, tuple)):
        return _stack([video_batch(item, channels, max_pixels) for item in x], what="videos", dims=3)
    raise InputTypeError(
        f"cannot encode a {type(x).__name__} as a video: pass a float tensor (B, 3, T, H, W) in [-1, 1], a uint8 "
        "array (T, H, W, 3), a video file path, or a list of those"
    )


def check_pixels(height: int, width: int, max_pixels: int | None, what: str) -> None:
    """Refuse an image or video frame of more than ``max_pixels`` pixels (None: no limit)."""
    if max_pixels is not None and height * width > max_pixels:
        raise InputError(
            f"{what} of {height}x{width} = {height * width} pixels is more than the limit of {max_pixels} pixels per "
            "image or frame; pass a larger max_pixels to vqtok.load (and a tile_size, to bound memory)"
        )


def _check_float_batch(x: Tensor, channels: int, max_pixels: int | None, video: bool = False) -> Tensor:
    what, ndim = ("video", 5) if video else ("image", 4)
    layout = f"(B, {channels}, T, H, W)" if video else f"(B, {channels}, H, W)"
    if not x.is_floating_point():
        raise InputError(
            f"{what} tensor must be floating point in [-1, 1], got dtype {x.dtype}; "
            "for uint8 pixels pass a numpy array (..., H, W, 3) or convert with x.float() / 127.5 - 1"
        )
    if x.layout != torch.strided or x.device.type == "meta":
        raise InputError(f"{what} tensor must be a dense tensor holding values, got layout {x.layout} on {x.device}")
    if x.ndim != ndim or x.shape[1] != channels:
        hint = " (add a batch dimension with x[None])" if x.ndim == ndim - 1 else ""
        raise InputError(f"{what} tensor must have shape {layout}, got {tuple(x.shape)}{hint}")
    if x.numel() == 0:
        raise InputError(f"{what} tensor is empty: shape {tuple(x.shape)}")
    check_pixels(x.shape[-2], x.shape[-1], max_pixels, what)  # before any value is read or copied
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise InputError(f"{what} tensor contains NaN or Inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        hint = " (looks like [0, 255]: use x / 127.5 - 1)" if hi > 2 else ""
        raise InputError(f"{what} tensor values must lie in [-1, 1], got min {lo:.4g}, max {hi:.4g}{hint}")
    return x.clamp(-1, 1)


def _from_uint8_array(a: np.ndarray, max_pixels: int | None, video: bool = False) -> Tensor:
    """uint8 (B, [T,] H, W, 3) or one item without B -> float32 (B, 3, [T,] H, W) in [-1, 1]."""
    what, layouts = ("video", "(T, H, W, 3) or (B, T, H, W, 3)") if video else ("image", "(H, W, 3) or (B, H, W, 3)")
    ndim = 5 if video else 4
    if a.dtype != np.uint8:
        raise InputError(
            f"{what} arrays must be uint8 {layouts}, got dtype {a.dtype}; "
            f"for float pixels pass a torch tensor {'(B, 3, T, H, W)' if video else '(B, 3, H, W)'} in [-1, 1]"
        )
    if a.ndim == ndim - 1:
        a = a[None]
    if a.ndim != ndim or a.shape[-1] != 3 or 0 in a.shape:
        raise InputError(f"{what} arrays must have shape {layouts}, got {a.shape}")
    check_pixels(a.shape[-3], a.shape[-2], max_pixels, what)
    x = torch.from_numpy(np.array(a, order="C")).movedim(-1, 1)  # (B, 3, [T,] H, W) uint8; a C-ordered copy, so
    # read-only arrays and views with negative strides (a[::-1]) are fine
    return x.float() / 127.5 - 1.0


def _from_hwc01(a: np.ndarray) -> Tensor:
    """float (H, W, 3) in [0, 1] -> (1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() * 2.0 - 1.0


def _stack(batches: list[Tensor], what: str = "images", dims: int = 2) -> Tensor:
    if not batches:
        raise InputError(f"cannot encode an empty list of {what}")
    sizes = {tuple(b.shape[-dims:]) for b in batches}
    if len(sizes) > 1:
        layout = "(H, W)" if dims == 2 else "(T, H, W)"
        raise InputError(f"{what} in one call must share a size, got sizes {layout} {sorted(sizes)}; encode them apart")
    return torch.cat(batches)


def id_batch(ids: Any, num_codes: int, video: bool = False, max_cells: int | None = None) -> Tensor:
    """Validate token ids: an integer tensor (B, h, w) (or, for a video tokenizer, also (B, t, h, w)) with every
    value in [0, num_codes) and grids of at most ``max_cells`` (h * w) ids -> int64 tensor."""
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            raise InputError(f"ids must have an integer dtype, got numpy {ids.dtype}")
        ids = torch.from_numpy(ids.astype(np.int64))
    if not isinstance(ids, Tensor):
        raise InputTypeError(f"ids must be an integer torch tensor, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InputError(f"ids must have an integer dtype (int64 preferred), got {ids.dtype}")
    if ids.ndim != 3 and not (video and ids.ndim == 4):
        layouts = "(B, h, w) for images or (B, t, h, w) for videos" if video else "(B, h, w)"
        raise InputError(f"ids must have shape {layouts}, got {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise InputError(f"ids are empty: shape {tuple(ids.shape)}")
    if max_cells is not None and ids.shape[-2] * ids.shape[-1] > max_cells:
        raise InputError(
            f"id grids of {ids.shape[-2]}x{ids.shape[-1]} decode to images over the pixel limit ({max_cells} ids per "
            "grid here); pass a larger max_pixels to vqtok.load"
        )
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= num_codes:
        raise InputError(f"ids must lie in [0, {num_codes}) for this codebook, got min {lo}, max {hi}")
    return ids.long()


def to_uint8(y: Tensor) -> np.ndarray:
    """Decoded pixels of one image (3, H, W) or video (3, T, H, W) in [-1, 1] -> uint8 (H, W, 3) or (T, H, W, 3),
    rounded to the nearest level (what ``vqtok decode`` writes, and what the app shows and measures)."""
    y = y.float().cpu().movedim(0, -1)  # channels last
    return ((y + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
