"""Video files through PyAV (the ``video`` extra): read frames (rotation applied, sampled by timestamps), write
MP4 that browsers play. Every way a file can fail to read becomes a :class:`~vqtok.errors.FileFormatError`
that names the file and the problem.

Frames are uint8 arrays (H, W, 3), RGB, as the video is meant to be displayed (PyAV does not apply the
rotation in a phone video's display matrix; this module does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vqtok.errors import FileFormatError, InputError
from vqtok.io.atomic import atomic_file

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

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".3gp",
     ".ogv", ".wmv", ".h264", ".264", ".hevc", ".y4m"}
)  # fmt: skip
DEFAULT_MAX_FRAME_PIXELS = 4096 * 4096  # a larger frame is refused before decoding (None disables the check)
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, IndexError, OSError, RuntimeError, MemoryError)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as displayed (after rotation)."""

    width: int
    height: int
    fps: float  # average frame rate (nominal for variable-frame-rate files)
    duration: float  # seconds; may be an estimate
    num_frames: int  # an estimate from the container (exact only when it records a count)
    rotation: int  # 0, 90, 180 or 270: counter-clockwise degrees applied to the decoded frames
    codec: str


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether the path has a video suffix (.mp4, .mkv, .webm, ...)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_videos(root: str | os.PathLike[str]) -> list[Path]:
    """Video files under root, recursively, sorted; hidden files and directories are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileFormatError(f"{root} is not a directory")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and is_video_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _check_path(path: Path) -> None:
    if not path.exists():
        raise FileFormatError(f"video file {path} does not exist")
    if not path.is_file():
        raise FileFormatError(f"{path} is not a file (a directory?); expected a video file")
    if path.stat().st_size == 0:
        raise FileFormatError(f"video file {path} is empty (0 bytes)")


@contextmanager
def _open(path: Path, max_frame_pixels: int | None) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open path for decoding its first video stream, checking what can be checked before decoding."""
    _check_path(path)
    try:
        container = av.open(str(path), mode="r")
    except _DECODE_ERRORS as e:
        raise FileFormatError(f"{path} is not a readable video (corrupt or unsupported): {e}") from None
    try:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "no streams"
            raise FileFormatError(f"{path} has no video stream ({kinds})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads
        width, height = stream.codec_context.width, stream.codec_context.height
        if max_frame_pixels is not None and width * height > max_frame_pixels:
            raise FileFormatError(
                f"{path}: frames of {width}x{height} exceed the limit of {max_frame_pixels} pixels per frame"
            )
        yield container, stream
    finally:
        container.close()


def _frames(path: Path, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    """Decoded frames; a decoding error mid-file (e.g. a truncated file) becomes a FileFormatError."""
    decoded = container.decode(stream)
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            return
        except _DECODE_ERRORS as e:
            raise FileFormatError(f"{path}: decoding failed (truncated or corrupt video): {e}") from None
        yield frame


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame -> uint8 (H, W, 3) RGB as displayed (its display-matrix rotation applied)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def _fps(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 25.0  # the container says nothing: FFmpeg's own default


def probe_video(path: str | os.PathLike[str], max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS) -> VideoInfo:
    """Read a video's metadata (and its first frame, which tells the rotation and proves it decodes).

    Raises:
        FileFormatError: missing, empty, corrupt, audio-only, no decodable frame, or frames too large.
    """
    path = Path(path)
    with _open(path, max_frame_pixels) as (container, stream):
        first = next(_frames(path, container, stream), None)
        if first is None:
            raise FileFormatError(f"{path} has a video stream but no decodable frames")
        fps = _fps(stream)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        rotation = round((first.rotation or 0) / 90) % 4 * 90
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        num_frames = stream.frames or max(1, round(duration * fps))
        return VideoInfo(width, height, fps, duration, num_frames, rotation, stream.codec_context.name)


def iter_frames(
    path: str | os.PathLike[str], start: float = 0.0, max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS
) -> Iterator[tuple[float, np.ndarray]]:
    """Frames one at a time (memory does not grow with the length), in presentation order, from ``start``
    seconds on: (time in seconds, uint8 (H, W, 3) upright RGB).

    Raises:
        FileFormatError: the file cannot be read, or yields no frame at all (raised when iteration starts or
            when decoding fails part-way).
    """
    path = Path(path)
    with _open(path, max_frame_pixels) as (container, stream):
        if start > 0 and stream.time_base is not None:
            try:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            except _DECODE_ERRORS:  # not seekable: decode from the beginning
                container.seek(0)
        tolerance = 0.5 / _fps(stream)
        count = 0
        for frame in _frames(path, container, stream):
            time = float(frame.time) if frame.time is not None else count / _fps(stream)
            if time < start - tolerance:
                continue
            count += 1
            yield time, _upright(frame)
        if count == 0:
            where = f" after {start:g} s" if start > 0 else ""
            raise FileFormatError(f"{path} has no decodable video frames{where}")


def read_video(
    path: str | os.PathLike[str],
    max_frames: int | None = None,
    max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
) -> tuple[np.ndarray, float]:
    """All frames (or the first ``max_frames``) -> (uint8 (T, H, W, 3), average fps)."""
    fps = probe_video(path, max_frame_pixels).fps
    frames = []
    for _, frame in iter_frames(path, 0.0, max_frame_pixels):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    return np.stack(frames), fps


def sample_clip(
    path: str | os.PathLike[str],
    start: float,
    num_frames: int,
    fps: float,
    max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
) -> np.ndarray:
    """A clip sampled by timestamps -> uint8 (num_frames, H, W, 3).

    Frame i is the last decoded frame shown at time ``start + i / fps`` (the latest with time <= that), which is
    right for variable-frame-rate files; past the end of the file the last frame is repeated.
    """
    targets = start + np.arange(num_frames) / fps
    clip: list[np.ndarray] = []
    previous: np.ndarray | None = None
    for time, frame in iter_frames(path, start, max_frame_pixels):
        while len(clip) < num_frames and time > targets[len(clip)] + 1e-6:
            clip.append(previous if previous is not None else frame)  # the target falls before this frame
        if len(clip) == num_frames:
            break
        previous = frame
    while len(clip) < num_frames:
        clip.append(previous)
    return np.stack(clip)


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float,
    crf: int = 18,
    preset: str = "medium",
) -> tuple[int, int, int]:
    """Write frames to an MP4 that browsers play: H.264, yuv420p, ``+faststart`` (index before the data).

    Frames are uint8 (H, W, 3), given as an array (T, H, W, 3) or any iterable (streamed: memory does not grow
    with the number of frames). yuv420p needs an even width and height: an odd size is padded by repeating the
    last row/column. The file appears complete or not at all (written beside ``path``, then renamed).

    Returns:
        (frames written, height, width) of the file.

    Raises:
        InputError: no frames, a frame that is not uint8 (H, W, 3), or frames of different sizes.
    """
    path = Path(path)
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        count, size, stream = 0, None, None
        for frame in frames:
            frame = _checked_frame(frame, size)
            if stream is None:
                size = frame.shape[:2]
                stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = size[0] + size[0] % 2, size[1] + size[1] % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset}
            padded = np.pad(frame, ((0, size[0] % 2), (0, size[1] % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                out.mux(packet)
            count += 1
        if stream is None:
            raise InputError(f"no frames to write to {path}")
        for packet in stream.encode():  # flush
            out.mux(packet)
    return count, stream.height, stream.width


def _checked_frame(frame: object, size: tuple[int, int] | None) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"video frames must be uint8 arrays (H, W, 3), got a {what}")
    if 0 in frame.shape:
        raise InputError(f"video frames must not be empty, got shape {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise InputError(f"all frames of a video must have one size: {size} then {frame.shape[:2]}")
    return frame
