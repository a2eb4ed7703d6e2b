"""Image file and pixel I/O: decode any image Pillow reads into float RGB, write images atomically, list image files.

Every array that comes out of this module is ``float32`` of shape ``(H, W, 3)`` with values in ``[0, 1]``:
EXIF orientation applied, alpha composited over white, 16-bit data scaled rather than clipped. Every file
problem (missing, empty, corrupt, truncated, too large, not an image) is raised as
:class:`~vqtok.errors.FileFormatError` with a message that names the file.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vqtok.errors import FileFormatError, InputError
from vqtok.io.atomic import atomic_file
from vqtok.io.listing import file_problem, list_files

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "array_to_pil",
    "image_extensions",
    "list_images",
    "pil_to_array",
    "read_image",
    "save_image",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS: int = 8192 * 8192
"""Largest image (width * height) :func:`read_image` (and :func:`vqtok.load`'s tokenizers) read by default; larger
files are refused as decompression bombs before any pixel is decoded. 8192 x 8192 pixels is 768 MiB as float32
RGB: a few bytes of a hostile file may ask for that much, not more."""

IMAGE_EXTENSIONS: frozenset[str]
"""Lower-case suffixes of the formats :func:`read_image` decodes; computed on first access, see
:func:`image_extensions`."""

# Formats Pillow registers an opener for but that vqtok never reads: EPS/PS runs the external Ghostscript
# interpreter on the file (unsafe for untrusted input); the others are identify-only stubs with no decoder
# (BUFR, GRIB, HDF5, MPEG, and WMF/EMF off Windows), so listing them as images would only produce errors.
_EXCLUDED_FORMATS = frozenset({"EPS", "BUFR", "GRIB", "HDF5", "MPEG", "WMF"})

# Extra keyword arguments for Pillow's encoder, by format: Pillow's JPEG/WebP default quality (75/80) visibly
# degrades reconstructions, which defeats the point of saving a tokenizer's output.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

# Serialises the short window in which Pillow's process-wide MAX_IMAGE_PIXELS is lifted (see _open_image).
_PILLOW_LIMIT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _readable_formats() -> tuple[str, ...]:
    """The Pillow format names vqtok decodes (every registered opener minus ``_EXCLUDED_FORMATS``)."""
    Image.init()
    return tuple(sorted(fmt for fmt in Image.OPEN if fmt not in _EXCLUDED_FORMATS))


@functools.lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case file suffixes (with the dot, e.g. ``".jpg"``) of the formats :func:`read_image` decodes.

    Computed on first use, because it makes Pillow import all of its format plugins.

    Returns:
        The suffixes, e.g. ``{".png", ".jpg", ".jpeg", ".webp", ...}``.
    """
    readable = set(_readable_formats())
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in readable)


def __getattr__(name: str) -> Any:
    # IMAGE_EXTENSIONS is computed lazily (PEP 562) so that importing this module does not load every plugin.
    if name == "IMAGE_EXTENSIONS":
        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _to_unit_float(x: np.ndarray, scale: float) -> np.ndarray:
    """``x / scale`` as float32, clipped to [0, 1]."""
    return np.clip(np.asarray(x, dtype=np.float32) / np.float32(scale), 0.0, 1.0)


def _float_mode_scale(x: np.ndarray) -> float:
    """Divisor for a mode ``F`` image: 1 if it already lies in [0, 1], else 255 or 65535 by its maximum."""
    peak = float(x.max()) if x.size else 0.0
    if peak <= 1.0:
        return 1.0
    return 255.0 if peak <= 255.0 else 65535.0


def _single_channel_to_rgb(img: Image.Image) -> np.ndarray:
    """Grey images stored with more than 8 bits (modes I;16*, I, F) as float32 (H, W, 3) in [0, 1]."""
    x = np.nan_to_num(np.asarray(img).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    scale = _float_mode_scale(x) if img.mode == "F" else 65535.0
    grey = _to_unit_float(x, scale)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 4) straight-alpha RGBA composited over white, as float32 (H, W, 3) in [0, 1]."""
    x = rgba.astype(np.float32) / np.float32(255.0)
    alpha = x[:, :, 3:4]
    return x[:, :, :3] * alpha + (1.0 - alpha)


def pil_to_array(img: Image.Image) -> np.ndarray:
    """Convert a Pillow image to float RGB.

    - EXIF orientation is applied (``ImageOps.exif_transpose``), so the array is upright.
    - Transparency (modes RGBA, LA, PA, RGBa, La, or a ``transparency`` key on P/L/RGB/1) is composited over
      a white background, then dropped.
    - 16-bit and 32-bit integer grey (I;16, I;16B, I;16L, I;16N, I) is divided by 65535 and clipped, instead of
      being clipped at 255 as ``convert("RGB")`` would.
    - Float grey (mode F): NaN/inf become 0; kept as is if its maximum is <= 1, else divided by 255 if its
      maximum is <= 255, else by 65535; then clipped to [0, 1]. (F carries no range, so this is a guess.)
    - Every other mode (1, L, P, CMYK, YCbCr, HSV, ...) goes through Pillow's ``convert("RGB")``.
    - Multi-frame images give their current frame.

    Args:
        img: any Pillow image.

    Returns:
        float32 array of shape (H, W, 3), C-contiguous, values in [0, 1].

    Raises:
        InputError: Pillow cannot convert the image's mode to RGB.
    """
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        return np.ascontiguousarray(_single_channel_to_rgb(img))
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            return np.ascontiguousarray(_composite_over_white(np.asarray(img.convert("RGBA"))))
        rgb = np.asarray(img.convert("RGB"))
    except ValueError as e:
        raise InputError(f"cannot convert a Pillow image of mode {mode!r} to RGB: {e}") from e
    return rgb.astype(np.float32) / np.float32(255.0)


def _check_path(path: Path) -> None:
    """Raise FileFormatError unless ``path`` is an existing, non-empty regular file."""
    if (problem := file_problem(path)) is not None:
        raise FileFormatError(f"cannot read image {str(path)!r}: {problem}")


def _unidentified(path: Path) -> str:
    """Why Pillow could not open ``path``: a format vqtok does not read, or a known signature with a broken header.

    Pillow drops a plugin's reason when its header parse fails (a PNG cut after 100 bytes, a zero width), and
    then says only that it cannot identify the file; the file's signature tells the user which it was.
    """
    try:
        with open(path, "rb") as f:
            prefix = f.read(16)  # what Pillow's format checks look at
    except OSError as e:
        return e.strerror or str(e)
    readable = _readable_formats()
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        try:
            claimed = accept is not None and accept(prefix) is True
        except Exception:  # a plugin's check may trip over a short prefix
            claimed = False
        if claimed and fmt in readable:
            return f"its signature says {fmt}, but its header is corrupt or truncated"
        if claimed:
            return f"its signature says {fmt}, a format vqtok does not read"
    return "not an image format vqtok can decode"


def _open_image(path: Path) -> Image.Image:
    """``Image.open`` restricted to vqtok's formats and with Pillow's own pixel limit lifted.

    The caller enforces its own limit from the header right after this returns. Pillow keeps its limit in a
    process-wide global, so it is lifted under a lock only for the header parse and always restored.
    """
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path, formats=_readable_formats())
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_header(path: Path, img: Image.Image, max_pixels: int | None) -> None:
    """Refuse zero-size images and, before any pixel is decoded, images larger than ``max_pixels``."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise FileFormatError(f"cannot read image {str(path)!r}: it has zero size ({width}x{height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise FileFormatError(
            f"cannot read image {str(path)!r}: {width}x{height} = {width * height} pixels is more than the "
            f"limit of {max_pixels} (possible decompression bomb); pass a larger max_pixels to read it"
        )


def read_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as float RGB (see :func:`pil_to_array` for the conversion rules).

    Args:
        path: the image file. Any format in :func:`image_extensions` (decided by content, not suffix).
        max_pixels: refuse images with more than this many pixels (width * height), checked from the header
            before decoding; ``None`` disables the check. Pillow's global ``MAX_IMAGE_PIXELS`` is ignored.

    Returns:
        float32 array of shape (H, W, 3), values in [0, 1].

    Raises:
        FileFormatError: the path does not exist, is a directory, is empty, is not an image vqtok can decode,
            is truncated or corrupt, has zero size, or has more than ``max_pixels`` pixels. The message names
            the path and the reason.
    """
    path = Path(path)
    _check_path(path)
    try:
        with _open_image(path) as img:
            _check_header(path, img, max_pixels)
            img.load()  # truncated files pass open() and fail only here
            return pil_to_array(img)
    except FileFormatError:
        raise
    except InputError as e:
        raise FileFormatError(f"cannot read image {str(path)!r}: {e}") from e
    except Image.DecompressionBombError as e:  # some plugins (GIF, TIFF, ICO) check sub-image sizes at load
        raise FileFormatError(f"cannot read image {str(path)!r}: possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise FileFormatError(f"cannot read image {str(path)!r}: {_unidentified(path)}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated data and corrupt headers as OSError/SyntaxError/ValueError/EOFError.
        raise FileFormatError(f"cannot read image {str(path)!r}: truncated or corrupt ({e})") from e
    except Exception as e:  # a decoder may raise anything on hostile input; never let it escape
        raise FileFormatError(f"cannot read image {str(path)!r}: decoding failed ({type(e).__name__}: {e})") from e


def array_to_pil(x: np.ndarray) -> Image.Image:
    """Convert an RGB array to a Pillow image.

    Args:
        x: array of shape (H, W, 3); uint8 is used as is, floating point is read as [0, 1], scaled by 255,
            rounded and clipped to [0, 255].

    Returns:
        An ``RGB`` Pillow image of size (W, H).

    Raises:
        InputError: ``x`` is not an (H, W, 3) uint8 or floating-point array, or has non-finite values.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        shape = getattr(x, "shape", None)
        raise InputError(f"expected a numpy array of shape (H, W, 3) with H, W > 0, got {type(x).__name__} {shape}")
    if x.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(x), mode="RGB")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"expected a uint8 array or a float array in [0, 1], got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise InputError("the image array has NaN or infinite values")
    x8 = np.clip(np.rint(x.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(x8, mode="RGB")


def _format_for_suffix(path: Path) -> str:
    """The Pillow format name that writes files with ``path``'s suffix."""
    fmt = Image.registered_extensions().get(path.suffix.lower())  # also loads every plugin (Image.init)
    if fmt is None or fmt not in Image.SAVE:
        raise FileFormatError(
            f"cannot save image {str(path)!r}: no image writer for the suffix {path.suffix!r} (use .png, .jpg, ...)"
        )
    return fmt


def save_image(path: str | os.PathLike[str], img: Image.Image | np.ndarray) -> None:
    """Write an image atomically: to a hidden temporary file in the same directory, then ``os.replace``.

    Readers never see a partial file, and on failure nothing is left behind (an existing file at ``path``
    keeps its old content). JPEG and WebP are written at quality 95.

    Args:
        path: destination; its suffix chooses the format (``.png``, ``.jpg``, ``.webp``, ...). The directory
            must exist.
        img: a Pillow image, or an array accepted by :func:`array_to_pil` ((H, W, 3) uint8, or float in [0, 1]).

    Raises:
        FileFormatError: unknown suffix, missing directory, or the encoder or file system failed.
        InputError: ``img`` is an array of the wrong shape/dtype.
    """
    path = Path(path)
    fmt = _format_for_suffix(path)
    pil = img if isinstance(img, Image.Image) else array_to_pil(img)
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            pil.save(f, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
    except Exception as e:
        if isinstance(e, FileFormatError | InputError):
            raise
        raise FileFormatError(f"cannot save image {str(path)!r} as {fmt}: {e}") from e


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """The image files under ``root`` (suffix in :func:`image_extensions`), recursively, sorted; hidden files and
    directories skipped, symlink loops cut. See :func:`vqtok.io.listing.list_files`.

    Raises:
        FileFormatError: ``root`` does not exist or is not a directory.
    """
    return list_files(root, image_extensions(), "images")
