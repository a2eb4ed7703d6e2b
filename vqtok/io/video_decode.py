"""PyAV decoding internals of :mod:`vqtok.io.video`: opening a file with its checks, the stream's clock, seeking,
decoded frames in display order, rotation, and the errors a bad file raises (each a
:class:`~vqtok.errors.FileFormatError` that names the file and the problem)."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from vqtok.errors import FileFormatError
from vqtok.io.listing import file_problem

if TYPE_CHECKING:
    pass

logger = logging.getLogger("vqtok.io.video")

# What PyAV raises from open/seek/decode on a bad file: FFmpegError (InvalidDataError and EOFError are among
# its subclasses) and, from PyAV's Python layer, ValueError/IndexError/OSError/RuntimeError/MemoryError.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, IndexError, OSError, EOFError, RuntimeError, MemoryError)

_UNKNOWN_FPS = 25.0  # FFmpeg's own default when a file states no frame rate at all

_TIME_EPSILON = 1e-6  # seconds: float rounding when comparing timestamps


def _error(path: Path, problem: str) -> FileFormatError:
    return FileFormatError(f"cannot read video {str(path)!r}: {problem}")


def _reason(e: BaseException) -> str:
    """FFmpeg's words for an error, without the file name PyAV appends."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _check_path(path: Path) -> None:
    """Raise FileFormatError unless ``path`` is an existing, non-empty regular file."""
    if (problem := file_problem(path)) is not None:
        raise _error(path, problem)


def _check_size(path: Path, width: int, height: int, max_frame_pixels: int | None) -> None:
    if max_frame_pixels is not None and width * height > max_frame_pixels:
        raise _error(
            path,
            f"frames of {width}x{height} = {width * height} pixels exceed the limit of {max_frame_pixels} pixels "
            "per frame (possible decompression bomb); pass a larger max_frame_pixels to read it",
        )


@contextmanager
def _open(
    path: Path, max_frame_pixels: int | None, threaded: bool = True
) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``path`` to decode its first video stream, after the checks that need no decoding; always closed."""
    _check_path(path)
    try:
        container = av.open(str(path), mode="r")
    except av.error.EOFError as e:
        raise _error(path, f"the file ends before any video data (truncated, or no frames: {_reason(e)})") from e
    except _DECODE_ERRORS as e:
        raise _error(path, f"not a video file FFmpeg can read, or corrupt or truncated ({_reason(e)})") from e
    try:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise _error(path, f"it has no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # PyAV gives none when FFmpeg has no decoder for the stream's codec id
            raise _error(path, "FFmpeg has no decoder for its video codec (an unsupported codec, or a corrupt header)")
        if threaded:
            stream.thread_type = "AUTO"  # frame and slice threads
        _check_size(path, stream.codec_context.width, stream.codec_context.height, max_frame_pixels)
        _check_index(path, stream)
        yield container, stream
    finally:
        container.close()


def _check_index(path: Path, stream: av.VideoStream) -> None:
    """Refuse a file whose index points past its end: it was truncated.

    MP4/MOV keep an index of every frame (a truncated faststart MP4 still opens); AVI's is rebuilt by scanning.
    Checked up front because with frame threads FFmpeg decodes a cut-short packet without an error, so the
    file would otherwise just end early in silence.
    """
    entries = stream.index_entries
    last = [entries[i] for i in range(max(0, len(entries) - 32), len(entries))]  # B-frames: not the very last
    end = max((e.pos + e.size for e in last if e.pos >= 0), default=0)
    try:
        size = path.stat().st_size
    except OSError:
        return  # gone since it was opened: decoding will say so
    if end > size:
        raise _error(path, f"the file is truncated: its index refers to video data up to byte {end}, but it has {size}")


def _nominal_fps(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return _UNKNOWN_FPS


class _Clock:
    """Frame times in seconds from the stream's start, by FFmpeg's "best effort timestamp" rule.

    A frame's pts is used unless the pts have gone backwards more often than the dts (AVI with B-frames stores
    decode times only, so its pts come out of order); a frame with neither continues one nominal frame on.
    """

    def __init__(self, stream: av.VideoStream) -> None:
        self.time_base = stream.time_base or Fraction(1, 1)
        self.origin = stream.start_time or 0
        self.step = 1.0 / _nominal_fps(stream)
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.last_time: float | None = None

    def __call__(self, frame: av.VideoFrame) -> float:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        best = pts if pts is not None and (dts is None or self.faulty_pts <= self.faulty_dts) else dts
        if best is None:
            time = 0.0 if self.last_time is None else self.last_time + self.step
        else:
            time = float((best - self.origin) * self.time_base)
        self.last_time = time
        return time


def _decoded(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream, max_frame_pixels: int | None
) -> Generator[tuple[float, av.VideoFrame], None, None]:
    """(time, frame) in presentation order; any decoding error, or no frame at all, becomes a FileFormatError."""
    clock = _Clock(stream)
    decoded = container.decode(stream)
    count = 0
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            break
        except _DECODE_ERRORS as e:
            if count == 0:
                raise _error(path, f"no frame could be decoded (corrupt, or not a video: {_reason(e)})") from e
            raise _error(path, f"decoding failed after {count} frames (truncated or corrupt: {_reason(e)})") from e
        _check_size(path, frame.width, frame.height, max_frame_pixels)  # the size may change mid-stream
        count += 1
        yield clock(frame), frame
    if count == 0:
        raise _error(path, "it has a video stream but no decodable frames")


def _seek(container: av.container.InputContainer, stream: av.VideoStream, time: float) -> bool:
    """Seek to the last keyframe at or before ``time`` (seconds from the stream start); False if not seekable."""
    time_base = stream.time_base or Fraction(1, 1)
    try:
        container.seek(int(time / time_base) + (stream.start_time or 0), stream=stream, backward=True)
    except _DECODE_ERRORS:  # raw streams (.h264) cannot seek
        return False
    return True


def _frames_from(
    path: Path, time: float, max_frame_pixels: int | None
) -> Iterator[tuple[float, av.VideoFrame, av.VideoStream]]:
    """Decoded (time, frame, its stream) from at latest the frame shown at ``time`` - 1 nominal frame, to the end.

    Seeks when that saves decoding; when a seek lands after the target (MPEG-TS seeks inexactly, and may land
    past the end) it decodes from the beginning instead.
    """
    with _open(path, max_frame_pixels) as (container, stream):
        target = time - 1.0 / _nominal_fps(stream)
        if target > 0 and _seek(container, stream, target):
            frames = _decoded(path, container, stream, max_frame_pixels)
            try:
                first = next(frames)
            except FileFormatError:
                first = None  # nothing decodes after the seek point: try again from the start
            if first is not None and first[0] <= target + _TIME_EPSILON:
                yield (*first, stream)
                yield from ((t, frame, stream) for t, frame in frames)
                return
            frames.close()
    with _open(path, max_frame_pixels) as (container, stream):
        yield from ((t, frame, stream) for t, frame in _decoded(path, container, stream, max_frame_pixels))


def _legacy_rotation(stream: av.VideoStream) -> int:
    """Counter-clockwise degrees from a ``rotate`` metadata tag (clockwise degrees, as old FFmpeg wrote), else 0."""
    tag = next((v for k, v in stream.metadata.items() if k.lower() == "rotate"), None)
    try:
        return -round(float(tag) / 90) * 90 % 360 if tag is not None else 0
    except ValueError:
        return 0


def _rotation(frame: av.VideoFrame, fallback: int) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) to display ``frame``: its display matrix, else ``fallback``."""
    degrees = frame.rotation or fallback  # FFmpeg's display-matrix angle, counter-clockwise, in [-180, 180]
    return round(degrees / 90) % 4 * 90


def _upright(path: Path, frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """A decoded frame -> uint8 (H, W, 3) RGB turned ``rotation`` degrees counter-clockwise."""
    try:
        rgb = frame.to_ndarray(format="rgb24")  # (h, w, 3) uint8, the frame's own colour space honoured
    except _DECODE_ERRORS as e:
        raise _error(path, f"cannot convert a {frame.format.name} frame to RGB ({_reason(e)})") from e
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb


def _check_size_unchanged(path: Path, first: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """A frame of ``shape`` (H, W, 3) after a first one of ``first``: a size change is a FileFormatError."""
    if shape != first:
        (h, w, _), (h2, w2, _) = first, shape
        raise _error(path, f"the frame size changes within the video (from {w}x{h} to {w2}x{h2} pixels)")


def _stack(path: Path, frames: list[np.ndarray]) -> np.ndarray:
    """uint8 (H, W, 3) frames -> (T, H, W, 3); a size change mid-stream is a FileFormatError."""
    for frame in frames[1:]:
        _check_size_unchanged(path, frames[0].shape, frame.shape)
    return np.stack(frames)


def _timestamp_tolerance(stream: av.VideoStream, fps: float) -> float:
    """How far after a target a frame may be timed and still count as shown at it: the rounding of the
    container's clock (1 ms in Matroska, where a 30 fps frame at 66.67 ms is stored as 67 ms), at most a
    quarter of a frame of either rate."""
    time_base = float(stream.time_base) if stream.time_base else 0.0
    return max(_TIME_EPSILON, min(time_base, 0.25 / fps, 0.25 / _nominal_fps(stream)))
