"""Writing MP4 files that browsers play (H.264, yuv420p, BT.709, index first), frames streamed to the encoder;
the writing half of :mod:`vqtok.io.video`."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vqtok.errors import FileFormatError, InputError
from vqtok.io.atomic import atomic_file

if TYPE_CHECKING:
    from torch import Tensor

from vqtok.io.video_decode import _DECODE_ERRORS, _reason


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray] | np.ndarray | Tensor,
    fps: float,
    crf: int = 18,
    preset: str = "medium",
) -> tuple[int, int, int]:
    """Write frames to an MP4 that browsers play: H.264 (libx264), yuv420p, BT.709, index first (faststart).

    yuv420p needs an even width and height: an odd-sized video is padded by one row at the bottom and/or one
    column at the right, repeating the last row/column, so the file is up to one pixel larger than the frames.
    Frames are streamed to the encoder one at a time: with an iterable, memory does not grow with their number.
    The file appears complete or not at all: it is written to a hidden temporary file beside ``path`` and
    renamed, and nothing is left behind on failure. The parent directory is created if needed.

    Args:
        path: destination (``.mp4``); an existing file is replaced.
        frames: uint8 frames (H, W, 3) RGB of one size, as an array (T, H, W, 3) or any iterable of arrays; or a
            decoded video as :meth:`vqtok.Tokenizer.decode` returns it, a float tensor (3, T, H, W) or
            (1, 3, T, H, W) in [-1, 1] (clamped, rounded to uint8, and converted one frame at a time).
        fps: frame rate, > 0; may be fractional: it is stored as the nearest fraction with a denominator up to
            1001, so ``30000 / 1001`` (NTSC) is exact and ``29.97`` becomes 2997/100.
        crf: libx264 constant rate factor, 0 (lossless luma) to 51; 18 is visually near-lossless.
        preset: libx264 speed/size trade-off, ``"ultrafast"`` ... ``"veryslow"``.

    Returns:
        ``(frames written, height, width)`` of the file (height and width after padding to even).

    Raises:
        InputError: no frames, a frame that is not uint8 (H, W, 3), frames of different sizes, a tensor that is
            not a float (3, T, H, W) or (1, 3, T, H, W) one, or bad ``fps``/``crf``.
        FileFormatError: the encoder or the file system failed (e.g. an unknown preset).
    """
    path = Path(path)
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive finite number, got {fps}")
    if not 0 <= crf <= 51:
        raise InputError(f"crf must be between 0 and 51, got {crf}")
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise InputError(f"a video array must have shape (T, H, W, 3), got {frames.shape}")
    frames = _frames_of_tensor(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(path) as tmp, av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            count, height, width = _encode_frames(path, out, frames, fps, crf, preset)
    except (InputError, FileFormatError):
        raise
    except _DECODE_ERRORS as e:
        raise FileFormatError(f"cannot write video {str(path)!r}: {_reason(e)}") from e
    return count, height, width


def _encode_frames(
    path: Path, out: av.container.OutputContainer, frames: Iterable[np.ndarray], fps: float, crf: int, preset: str
) -> tuple[int, int, int]:
    """Encode and mux every frame (and flush the encoder) -> (frames, height, width as stored)."""
    rate = Fraction(fps).limit_denominator(1001)
    stream: av.VideoStream | None = None
    size: tuple[int, int] | None = None
    count = 0
    for frame in frames:
        frame = _checked_frame(frame, size)
        if stream is None:
            size = frame.shape[:2]
            stream = out.add_stream("libx264", rate=rate)
            stream.height, stream.width = size[0] + size[0] % 2, size[1] + size[1] % 2  # yuv420p: even sizes
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / rate
            cc = stream.codec_context  # tag the colours as converted below, so players need not guess
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited range
            stream.options = {"crf": str(crf), "preset": preset}
        assert size is not None  # set with the stream, at the first frame
        if size[0] % 2 or size[1] % 2:
            frame = np.pad(frame, ((0, size[0] % 2), (0, size[1] % 2), (0, 0)), mode="edge")
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        picture = picture.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        picture.pts = count
        for packet in stream.encode(picture):
            out.mux(packet)
        count += 1
    if stream is None:
        raise InputError(f"no frames to write to {str(path)!r}")
    for packet in stream.encode():  # flush the encoder's delayed frames
        out.mux(packet)
    return count, stream.height, stream.width


def _frames_of_tensor(frames: Iterable[np.ndarray] | np.ndarray | Tensor) -> Iterable[np.ndarray] | np.ndarray:
    """A float tensor (3, T, H, W) or (1, 3, T, H, W) in [-1, 1] -> its frames uint8 (H, W, 3), one at a time (any
    other ``frames`` as is). torch is not imported here: a tensor exists only if the caller imported it."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(frames, torch.Tensor):
        return frames
    video = frames[0] if frames.ndim == 5 and frames.shape[0] == 1 else frames  # (3, T, H, W)
    if not video.is_floating_point() or video.ndim != 4 or video.shape[0] != 3:
        raise InputError(
            "a video tensor must be float (3, T, H, W) or (1, 3, T, H, W) in [-1, 1] (one video, as "
            f"Tokenizer.decode returns it), got {frames.dtype} of shape {tuple(frames.shape)}; for uint8 frames "
            "pass a numpy array (T, H, W, 3)"
        )
    if not torch.isfinite(video).all():
        raise InputError("a video tensor to write contains NaN or Inf values")
    return (
        ((frame.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        for frame in video.detach().unbind(1)  # (3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded
    )


def _checked_frame(frame: object, size: tuple[int, int] | None) -> np.ndarray:
    """``frame`` if it is uint8 (H, W, 3) with H, W > 0 and, when ``size`` is given, of that size."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        if isinstance(frame, np.ndarray):
            what = f"a {frame.dtype} array of shape {frame.shape}"
        else:
            what = type(frame).__name__
        raise InputError(f"video frames must be uint8 arrays of shape (H, W, 3), got {what}")
    if 0 in frame.shape:
        raise InputError(f"video frames must not be empty, got shape {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise InputError(
            f"all frames of a video must have one size: the first was {size[0]}x{size[1]} (H x W), "
            f"then came one of {frame.shape[0]}x{frame.shape[1]}"
        )
    return frame
