"""Turn what users hand to ``Tokenizer.encode``/``decode`` into validated tensors, or say clearly why not; and
turn decoded pixels back into uint8 arrays (:func:`to_uint8`)."""

from __future__ import annotations

import functools
import os
import sys
import warnings
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
# frames in these directories are skipped when a warning names the caller's line: vqtok and torch's decorators
_LIBRARY_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(torch.__file__) + os.sep)


def image_batch(x: ImageInput, channels: int = 3, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """Any accepted image input -> float32 tensor (B, channels, H, W) in [-1, 1] on the CPU.

    Accepted: a float tensor (B, C, H, W) in [-1, 1]; a uint8 tensor (B, C, H, W) or (C, H, W) in [0, 255]; a PIL
    image; a uint8 array (H, W, 3) or (B, H, W, 3); a path to an image file; or a list of those of one size. A
    float tensor with no value below 0 gets a one-time warning: it is probably [0, 1] (torchvision's ToTensor), to
    be converted with ``x * 2 - 1``. Images of more than ``max_pixels`` pixels (H * W) are refused before their
    values are read (files: from the header, before decoding); ``None`` lifts the limit.
    """
    if isinstance(x, Tensor):
        return _check_tensor_batch(x, channels, max_pixels)
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
        f"cannot encode a {type(x).__name__}: pass a float tensor (B, 3, H, W) in [-1, 1], a uint8 tensor "
        "(B, 3, H, W), a PIL image, a uint8 array (H, W, 3), an image file path, or a list of those"
    )


def video_batch(x: VideoInput, channels: int = 3, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """An in-memory video input -> float32 tensor (B, channels, T, H, W) in [-1, 1] on the CPU.

    Accepted: a float tensor (B, C, T, H, W) in [-1, 1] (no value below 0 warns once, as for images); a uint8
    tensor (B, C, T, H, W) in [0, 255]; a uint8 array (T, H, W, 3) or (B, T, H, W, 3); or a list of those, of one
    shape. (Video files are streamed by :meth:`vqtok.Tokenizer.encode`, not read whole here.)
    Frames of more than ``max_pixels`` pixels (H * W) are refused before their values are read.
    """
    if isinstance(x, Tensor):
        return _check_tensor_batch(x, channels, max_pixels, video=True)
    if isinstance(x, np.ndarray):
        return _from_uint8_array(x, max_pixels, video=True)
    if isinstance(x, (list, tuple)):
        return _stack([video_batch(item, channels, max_pixels) for item in x], what="videos", dims=3)
    raise InputTypeError(
        f"cannot encode a {type(x).__name__} as a video: pass a float tensor (B, 3, T, H, W) in [-1, 1], a uint8 "
        "tensor (B, 3, T, H, W), a uint8 array (T, H, W, 3), a video file path, or a list of those"
    )


def check_pixels(height: int, width: int, max_pixels: int | None, what: str) -> None:
    """Refuse an image or video frame of more than ``max_pixels`` pixels (None: no limit)."""
    if max_pixels is not None and height * width > max_pixels:
        raise InputError(
            f"{what} of {height}x{width} = {height * width} pixels is more than the limit of {max_pixels} pixels per "
            "image or frame; pass a larger max_pixels to vqtok.load (and a tile_size, to bound memory)"
        )


def _check_tensor_batch(x: Tensor, channels: int, max_pixels: int | None, video: bool = False) -> Tensor:
    """A float tensor (B, C, [T,] H, W) in [-1, 1] or a uint8 one in [0, 255] (images also (C, H, W)) -> float32
    (B, C, [T,] H, W) in [-1, 1]."""
    what, ndim = ("video", 5) if video else ("image", 4)
    layout = f"(B, {channels}, T, H, W)" if video else f"(B, {channels}, H, W)"
    is_uint8 = x.dtype == torch.uint8
    if not (x.is_floating_point() or is_uint8):
        raise InputError(
            f"{what} tensor must be floating point in [-1, 1] or uint8 in [0, 255], got dtype {x.dtype}; "
            "convert with x.float() / 127.5 - 1 for [0, 255] values"
        )
    if x.layout != torch.strided or x.device.type == "meta":
        raise InputError(f"{what} tensor must be a dense tensor holding values, got layout {x.layout} on {x.device}")
    if is_uint8 and not video and x.ndim == 3 and x.shape[0] == channels:
        x = x[None]  # one image (C, H, W), as torchvision.io.read_image gives it
    if x.ndim != ndim or x.shape[1] != channels:
        hint = " (add a batch dimension with x[None])" if x.ndim == ndim - 1 and x.shape[0] == channels else ""
        cdim = 1 - ndim  # where channels go, counted from the end: -3 for images, -4 for videos
        if x.ndim in (ndim - 1, ndim) and x.shape[-1] == channels != x.shape[cdim]:
            hint = f" (channels go first: x.movedim(-1, {cdim}), or pass a uint8 numpy array (..., H, W, 3))"
        raise InputError(f"{what} tensor must have shape {layout}, got {tuple(x.shape)}{hint}")
    if x.numel() == 0:
        raise InputError(f"{what} tensor is empty: shape {tuple(x.shape)}")
    check_pixels(x.shape[-2], x.shape[-1], max_pixels, what)  # before any value is read or copied
    if is_uint8:
        return x.detach().float() / 127.5 - 1.0  # as for uint8 arrays, so both give the same ids
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise InputError(f"{what} tensor contains NaN or Inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        hint = " (looks like [0, 255]: use x / 127.5 - 1, or pass a uint8 tensor)" if hi > 2 else ""
        raise InputError(f"{what} tensor values must lie in [-1, 1], got min {lo:.4g}, max {hi:.4g}{hint}")
    if lo >= 0 and hi > 0:
        _warn_unit_range()
    return x.clamp(-1, 1)


@functools.cache  # once per process: a bright image in [-1, 1] can look the same, so do not repeat it
def _warn_unit_range() -> None:
    """Warn, at the caller's line, that a float tensor with no value below 0 is probably in [0, 1]."""
    warnings.warn(
        "got float pixels with no value below 0, but vqtok takes float pixels in [-1, 1]: [0, 1] pixels "
        "(e.g. from torchvision's ToTensor) come back dark and washed out; convert them with x * 2 - 1, or pass "
        "uint8 in [0, 255] (ignore this if the pixels are already in [-1, 1]; shown once)",
        UserWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller of this function name the first frame outside
    vqtok and torch (the user's line), whatever the depth of the calls in between."""
    frame, level = sys._getframe(1), 1  # the function that calls warnings.warn is stacklevel 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    return level


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
    check_same_size([tuple(b.shape[-dims:]) for b in batches], what, "(H, W)" if dims == 2 else "(T, H, W)")
    return torch.cat(batches)


def check_same_size(sizes: list[tuple[int, ...]], what: str, layout: str) -> None:
    """Refuse a list of images or videos of different sizes: their ids would not stack into one batch."""
    if len(set(sizes)) > 1:
        raise InputError(
            f"{what} in one call must share a size, got sizes {layout} {sorted(set(sizes))}; encode them apart"
        )


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
