"""A data set of clips from the video files under a directory (PyAV), resized and cropped to squares for training."""

from __future__ import annotations

import bisect
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vqtok.errors import ConfigError, FileFormatError
from vqtok.io.video import VideoInfo, list_videos, probe_video, sample_clip
from vqtok.training.data.sampling import SampleKey, as_key
from vqtok.transforms import resize, shorter_side_size

__all__ = ["VideoFolder"]

logger = logging.getLogger(__name__)

_MAX_TRAIN_ZOOM = 1.25  # training resizes the shorter side to a random length in [S, 1.25 S]
_RESIZE_CHUNK = 8  # frames resized at a time: float copies of a 4K clip would otherwise take gigabytes


class VideoFolder(Dataset):
    """Clips of T frames from the videos under a directory, as float32 tensors (3, T, S, S) in [-1, 1].

    Every file is probed once at construction (metadata and its first frame); a file that fails is skipped,
    logged and counted in :attr:`num_failed_probe`. A video of duration d gives K = max(1, floor(d /
    segment_seconds)) items per epoch, item k taking its clip from the k-th of K equal time segments, so long
    videos contribute several clips.

    Frames are sampled by timestamp (:func:`~vqtok.io.video.sample_clip`) at ``fps``, or at the file's average
    rate / ``frame_stride``, so variable frame rates come out right; a clip spans (T - 1) / rate seconds, and
    rotation metadata is applied. Training: a uniformly random start within the segment (clamped so the clip ends
    by the last frame), the shorter side resized to a random length in [S, 1.25 S] (antialiased bicubic), a random
    S x S crop and a horizontal flip with probability 1/2, the same for every frame of the clip. Randomness comes
    from the :class:`~vqtok.training.data.sampling.SampleKey` the sampler passes (one seed per item and epoch),
    so it is the same in every worker and after a resume. Evaluation: the
    segment's start (clamped the same way), shorter side S, centre crop; deterministic. A file that fails to
    decode gives ``None`` and a warning; :func:`~vqtok.training.data.video_datamodule.collate_mixed` drops
    and counts it.

    Args:
        root: directory searched recursively for videos (see :func:`~vqtok.io.video.list_videos`).
        num_frames: frames T per clip.
        image_size: side S of the square crops.
        fps: sampling rate of the clips; ``None`` uses each file's average rate divided by ``frame_stride``.
        frame_stride: with ``fps=None``, take every n-th frame.
        segment_seconds: length of the segments a long video is split into.
        train: random (training) or deterministic (evaluation) sampling.
        files: use these files instead of listing ``root`` (e.g. one side of a train/validation split).

    Raises:
        ConfigError: an argument is out of range, or no file could be probed.
        FileFormatError: ``root`` does not exist or is not a directory (when ``files`` is not given).
    """

    def __init__(
        self,
        root: str,
        num_frames: int,
        image_size: int,
        fps: float | None = None,
        frame_stride: int = 1,
        segment_seconds: float = 10.0,
        train: bool = True,
        files: list[Path] | None = None,
    ) -> None:
        if num_frames < 1 or image_size < 1 or frame_stride < 1 or not segment_seconds > 0:
            raise ConfigError(
                "VideoFolder needs num_frames, image_size, frame_stride >= 1 and segment_seconds > 0, got "
                f"{num_frames}, {image_size}, {frame_stride}, {segment_seconds}"
            )
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"fps must be positive or None, got {fps}")
        self.root = Path(root)
        self.num_frames, self.image_size, self.train = num_frames, image_size, train
        self.fps, self.frame_stride, self.segment_seconds = fps, frame_stride, segment_seconds
        self.videos: list[tuple[Path, VideoInfo]] = []
        self.num_failed_probe = 0
        for path in list(files) if files is not None else list_videos(self.root):
            try:
                self.videos.append((Path(path), probe_video(path)))
            except FileFormatError as e:
                self.num_failed_probe += 1
                logger.warning("skipping video %s: %s", path, e)
        if not self.videos:
            raise ConfigError(
                f"no readable video under {str(self.root)!r} ({self.num_failed_probe} files failed to probe; "
                "searched recursively for .mp4, .mkv, .webm, ...; hidden files and directories are skipped)"
            )
        segments = [max(1, math.floor(info.duration / segment_seconds)) for _, info in self.videos]
        self.starts: list[int] = np.cumsum([0, *segments]).tolist()  # item index where each video's segments begin

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, key: int | SampleKey) -> torch.Tensor | None:
        """Clip of item ``key`` as float32 (3, T, S, S) in [-1, 1], or ``None`` if its file cannot be decoded."""
        key = as_key(key)
        i, g = key.index, key.generator()
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        v = bisect.bisect_right(self.starts, i) - 1  # the video, then its segment
        path, info = self.videos[v]
        segment, num_segments = i - self.starts[v], self.starts[v + 1] - self.starts[v]
        rate = self.fps if self.fps is not None else info.fps / self.frame_stride
        start = self._clip_start(info, rate, segment, num_segments, g)
        try:
            clip = sample_clip(path, start, self.num_frames, rate)  # (T, H, W, 3) uint8
        except FileFormatError as e:  # sample_clip reports every decoding failure as one
            logger.warning("skipping a clip of video %s: %s", path, e)
            return None
        return self._crop(torch.from_numpy(clip), g)

    def _clip_start(self, info: VideoInfo, rate: float, segment: int, num_segments: int, g: torch.Generator) -> float:
        """Seconds where the clip starts: in segment ``segment`` of ``num_segments``, at a uniformly random point
        (training) or its start (evaluation), clamped so the clip's last sample is not after the last frame."""
        length = info.duration / num_segments
        span = (self.num_frames - 1) / rate
        latest = max(0.0, info.duration - 1.0 / info.fps - span)  # the last frame is shown from duration - 1/fps
        low = min(segment * length, latest)
        high = min((segment + 1) * length, latest)
        return low + float(torch.rand((), generator=g)) * (high - low) if self.train else low

    def _crop(self, clip: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> float32 (3, T, S, S) in [-1, 1]: resize the shorter side, crop, maybe flip, with
        the same parameters for every frame."""
        S = self.image_size
        T, H, W, _ = clip.shape
        shorter = int(torch.randint(S, int(_MAX_TRAIN_ZOOM * S) + 1, (), generator=g)) if self.train else S
        size = shorter_side_size(H, W, shorter, minimum=S)
        if self.train:
            top = int(torch.randint(size[0] - S + 1, (), generator=g))
            left = int(torch.randint(size[1] - S + 1, (), generator=g))
        else:
            top, left = (size[0] - S) // 2, (size[1] - S) // 2
        flip = self.train and bool(torch.rand((), generator=g) < 0.5)
        out = torch.empty(T, 3, S, S)
        for t in range(0, T, _RESIZE_CHUNK):  # bounded memory: only a few frames are float at full size
            x = clip[t : t + _RESIZE_CHUNK].permute(0, 3, 1, 2).float() / 255.0  # (n, 3, H, W) in [0, 1]
            x = resize(x, size)  # clamped to [0, 1]
            out[t : t + _RESIZE_CHUNK] = x[..., top : top + S, left : left + S]
        if flip:
            out = out.flip(-1)
        return (out * 2.0 - 1.0).transpose(0, 1).contiguous()  # (3, T, S, S)
