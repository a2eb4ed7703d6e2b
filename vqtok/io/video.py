"""Video file I/O through PyAV (the ``video`` extra): read frames as displayed, sample clips by timestamp, write
MP4 that browsers play.

Every frame that comes out of this module is a ``uint8`` array of shape ``(H, W, 3)``, RGB, upright: the rotation
a phone records in the file (display matrix, or the legacy ``rotate`` tag) is applied, which PyAV does not do.
Times are seconds from the start of the video stream (so the first frame is at 0 even in MPEG-TS, whose clock
starts elsewhere). Every way a file can fail to read (missing, empty, not a video, audio only, no decodable frame,
truncated or corrupt part-way, frames too large) is raised as :class:`~vqtok.errors.FileFormatError` with a
message that names the file and the problem.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vqtok.errors import FileFormatError, InputError
from vqtok.io.atomic import atomic_file
from vqtok.io.listing import file_problem, list_files

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "DEFAULT_MAX_FRAME_PIXELS",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "is_video_file",
    "iter_frames",
    "list_videos",
    "probe_video",
    "read_video",
    "sample_clip",
    "write_video",
]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".3gp",
     ".ogv", ".wmv", ".h264", ".264", ".hevc", ".y4m"}
)  # fmt: skip
"""Lower-case suffixes :func:`list_videos` selects (formats FFmpeg demuxes; animated GIF is left to the images)."""

DEFAULT_MAX_FRAME_PIXELS: int | None = 4096 * 4096
"""Largest frame (width * height) read by default; a larger one is refused before it is decoded."""

# What PyAV raises from open/seek/decode on a bad file: FFmpegError (InvalidDataError and EOFError are among
# its subclasses) and, from PyAV's Python layer, ValueError/IndexError/OSError/RuntimeError/MemoryError.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, IndexError, OSError, EOFError, RuntimeError, MemoryError)

_UNKNOWN_FPS = 25.0  # FFmpeg's own default when a file states no frame rate at all
_TIME_EPSILON = 1e-6  # seconds: float rounding when comparing timestamps


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as it is displayed (after rotation).

    ``duration`` and ``num_frames`` come from the container and may be estimates (exact only when it records
    them); ``fps`` is nominal for a variable-frame-rate file, whose frames should be picked by timestamp.
    ``rotation`` follows FFmpeg's display matrix (counter-clockwise, like ``np.rot90``): a phone held upright
    records landscape frames with a clockwise quarter turn, which is 270 here (ffprobe prints "rotation of
    -90.00 degrees"; the legacy ``rotate`` tag says 90).
    """

    width: int  # displayed width: the decoded height when rotation is 90 or 270
    height: int  # displayed height
    fps: float  # average frame rate (> 0)
    duration: float  # seconds; 0.0 when the container does not say (raw .h264)
    num_frames: int  # recorded frame count, else round(duration * fps), at least 1
    rotation: int  # 0, 90, 180 or 270: counter-clockwise degrees the decoded frames are turned to display upright
    codec: str  # FFmpeg's decoder name, e.g. "h264", "vp9"


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a video suffix (one of :data:`VIDEO_EXTENSIONS`, any case); content is not checked."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_videos(root: str | os.PathLike[str]) -> list[Path]:
    """The video files under ``root`` (suffix in :data:`VIDEO_EXTENSIONS`), recursively, sorted; hidden files and
    directories skipped, symlink loops cut. See :func:`vqtok.io.listing.list_files`.

    Raises:
        FileFormatError: ``root`` does not exist or is not a directory.
    """
    return list_files(root, VIDEO_EXTENSIONS, "videos")


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


def probe_video(path: str | os.PathLike[str], max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS) -> VideoInfo:
    """Read a video's metadata, decoding its first frame only.

    The first frame is decoded because PyAV exposes the rotation only on decoded frames, and because it proves
    that the file decodes (an H.264 stream with headers and no picture opens fine).

    Args:
        path: the video file (any format FFmpeg demuxes; decided by content, not suffix).
        max_frame_pixels: refuse frames with more than this many pixels (width * height), checked from the
            stream header before decoding; ``None`` disables the check.

    Returns:
        The :class:`VideoInfo` (sizes as displayed, after rotation).

    Raises:
        FileFormatError: the file is missing, a directory, empty, not a video, has no video stream (audio only),
            has no decodable frame, or has frames larger than ``max_frame_pixels``.
    """
    path = Path(path)
    with _open(path, max_frame_pixels, threaded=False) as (container, stream):  # threads only delay a 1st frame
        _, first = next(_decoded(path, container, stream, max_frame_pixels))
        fps = _nominal_fps(stream)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        rotation = _rotation(first, _legacy_rotation(stream))
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        num_frames = stream.frames or max(1, round(duration * fps))
        return VideoInfo(width, height, fps, max(0.0, duration), num_frames, rotation, stream.codec_context.name)


def iter_frames(
    path: str | os.PathLike[str], start: float = 0.0, max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a video one frame at a time (memory does not grow with its length), multi-threaded.

    Frames come in presentation order from the first whose time is at least ``start`` minus half a nominal frame
    (seeking to ``start`` first where the container allows). The file stays open until the generator is
    exhausted or closed. Nothing is yielded when ``start`` is past the last frame.

    Args:
        path: the video file.
        start: seconds from the start of the video.
        max_frame_pixels: refuse frames with more than this many pixels; ``None`` disables the check.

    Yields:
        ``(time, frame)``: the frame's presentation time in seconds from the start of the stream, and the frame
        as uint8 (H, W, 3) RGB in [0, 255], rotation applied; every frame of one size.

    Raises:
        FileFormatError: on the first ``next()`` for a file that cannot be read (see :func:`probe_video`), or
            later when decoding fails part-way (a truncated or corrupt file) or the frame size changes.
    """
    path = Path(path)
    tolerance = size = None
    legacy = 0  # set with tolerance, at the first frame
    for time, frame, stream in _frames_from(path, start, max_frame_pixels):
        if tolerance is None:
            tolerance, legacy = 0.5 / _nominal_fps(stream), _legacy_rotation(stream)
        if time >= start - tolerance:
            rgb = _upright(path, frame, _rotation(frame, legacy))  # (H, W, 3)
            size = rgb.shape if size is None else size
            _check_size_unchanged(path, size, rgb.shape)  # consumers stack frames: refuse here, naming the file
            yield time, rgb


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


def read_video(
    path: str | os.PathLike[str],
    max_frames: int | None = None,
    max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
) -> tuple[np.ndarray, float]:
    """Decode a whole video (or its first ``max_frames`` frames) into memory.

    Args:
        path: the video file.
        max_frames: stop after this many frames; ``None`` reads them all.
        max_frame_pixels: refuse frames with more than this many pixels; ``None`` disables the check.

    Returns:
        ``(frames, fps)``: uint8 (T, H, W, 3) RGB in [0, 255], rotation applied, T >= 1; and the average frame
        rate (nominal for a variable-frame-rate file).

    Raises:
        FileFormatError: the file cannot be read, decoding fails part-way, or the frame size changes.
        InputError: ``max_frames`` is below 1.
    """
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be at least 1 or None, got {max_frames}")
    path = Path(path)
    frames: list[np.ndarray] = []
    fps: float | None = None
    legacy = 0  # set with fps, at the first frame
    for _, frame, stream in _frames_from(path, 0.0, max_frame_pixels):
        if fps is None:
            fps, legacy = _nominal_fps(stream), _legacy_rotation(stream)
        frames.append(_upright(path, frame, _rotation(frame, legacy)))
        if max_frames is not None and len(frames) >= max_frames:
            break
    video = _stack(path, frames)
    assert fps is not None  # _frames_from yields at least one frame or raises
    return video, fps


def sample_clip(
    path: str | os.PathLike[str],
    start: float,
    num_frames: int,
    fps: float,
    max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
) -> np.ndarray:
    """Sample a clip at a fixed rate by frame timestamps (right for variable-frame-rate files too).

    Frame i of the clip is the frame on screen at ``start + i / fps``: the latest decoded frame whose time is at
    most that (within the stream's timestamp rounding). A target before the first frame gets the first frame;
    targets past the end of the file get the last frame. Only the frames picked are converted to RGB.

    Args:
        path: the video file.
        start: seconds from the start of the video.
        num_frames: frames T in the clip.
        fps: sampling rate in frames per second (may differ from the file's: lower skips frames, higher repeats).
        max_frame_pixels: refuse frames with more than this many pixels; ``None`` disables the check.

    Returns:
        uint8 (T, H, W, 3) RGB in [0, 255], rotation applied.

    Raises:
        FileFormatError: the file cannot be read, decoding fails part-way, or the frame size changes.
        InputError: ``num_frames`` below 1, or ``start``/``fps`` not finite (``fps`` must be > 0).
    """
    if num_frames < 1 or not math.isfinite(start) or not (math.isfinite(fps) and fps > 0):
        raise InputError(f"need num_frames >= 1, a finite start and fps > 0, got {num_frames}, {start}, {fps}")
    path = Path(path)
    targets = start + np.arange(num_frames) / fps  # (T,) seconds
    clip: list[np.ndarray] = []
    shown: av.VideoFrame | None = None  # the latest frame at or before the next target
    shown_rgb: np.ndarray | None = None  # shown, converted (once, however often it is repeated)
    tolerance = None
    legacy = 0  # set with tolerance, at the first frame
    for time, frame, stream in _frames_from(path, start, max_frame_pixels):
        if tolerance is None:
            tolerance = _timestamp_tolerance(stream, fps)
            legacy = _legacy_rotation(stream)
        while len(clip) < num_frames and time > targets[len(clip)] + tolerance:
            if shown is None:  # a target before the first frame
                shown = frame
            if shown_rgb is None:
                shown_rgb = _upright(path, shown, _rotation(shown, legacy))
            clip.append(shown_rgb)
        if len(clip) == num_frames:
            break
        shown, shown_rgb = frame, None
    if len(clip) < num_frames:  # the file ended: hold its last frame
        assert shown is not None  # _frames_from yields at least one frame or raises
        last = shown_rgb if shown_rgb is not None else _upright(path, shown, _rotation(shown, legacy))
        clip.extend([last] * (num_frames - len(clip)))
    return _stack(path, clip)


def _timestamp_tolerance(stream: av.VideoStream, fps: float) -> float:
    """How far after a target a frame may be timed and still count as shown at it: the rounding of the
    container's clock (1 ms in Matroska, where a 30 fps frame at 66.67 ms is stored as 67 ms), at most a
    quarter of a frame of either rate."""
    time_base = float(stream.time_base) if stream.time_base else 0.0
    return max(_TIME_EPSILON, min(time_base, 0.25 / fps, 0.25 / _nominal_fps(stream)))


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
