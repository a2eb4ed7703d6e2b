"""Video file I/O through PyAV (the ``video`` extra): read frames as displayed, sample clips by timestamp, write
MP4 that browsers play.

Every frame that comes out of this module is a ``uint8`` array of shape ``(H, W, 3)``, RGB, upright: the rotation
a phone records in the file (display matrix, or the legacy ``rotate`` tag) is applied, which PyAV does not do.
Times are seconds from the start of the video stream (so the first frame is at 0 even in MPEG-TS, whose clock
starts elsewhere). Every way a file can fail to read (missing, empty, not a video, audio only, no decodable frame,
truncated or corrupt part-way, frames too large) is raised as :class:`~vqtok.errors.FileFormatError` with a
message that names the file and the problem.

The public names are all here; the PyAV decoding internals live in :mod:`vqtok.io.video_decode` and the MP4
writer in :mod:`vqtok.io.video_write`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from vqtok.errors import InputError
from vqtok.io.listing import list_files
from vqtok.io.video_decode import (
    _check_size_unchanged,
    _decoded,
    _frames_from,
    _legacy_rotation,
    _nominal_fps,
    _open,
    _rotation,
    _stack,
    _timestamp_tolerance,
    _upright,
)
from vqtok.io.video_write import write_video

if TYPE_CHECKING:
    pass

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
