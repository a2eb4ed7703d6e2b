"""A data set of clips from the video files under a directory (PyAV), resized and cropped to squares for training."""

from __future__ import annotations

import bisect
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vqtok.errors import ConfigError, FileFormatError
from vqtok.io.video import VideoInfo, list_videos, probe_video, sample_clip

__all__ = ["VideoFolder"]

logger = logging.getLogger(__name__)

_MAX_TRAIN_ZOOM = 1.25  # training resizes the shorter side to a random length in [S, 1.25 S]


class VideoFolder(Dataset):
    """Clips of T frames from the videos under a directory, as float tensors (3, T, S, S) in [-1, 1].

    Every file is probed once at construction (metadata and first frame); a file that fails is skipped, logged
    and counted in :attr:`num_failed_probe`. A video of duration d gives K = max(1, floor(d / segment_seconds))
    items per epoch, one clip from each of K equal segments: long videos contribute several clips.

    Frames are sampled by timestamp at ``fps`` (or the file's average rate / ``frame_stride``), so variable frame
    rates come out right; rotation metadata is applied. Training: a random start within the segment, the shorter
    side resized to a random length in [S, 1.25 S], a random S x S crop and a horizontal flip with probability 1/2,
    the same for every frame (torch's global generator: ``seed_everything(workers=True)`` makes it reproducible).
    Evaluation: the segment's start, shorter side S, centre crop. A file that fails to decode gives ``None`` and a
    warning; :func:`~vqtok.training.data.video_datamodule.collate_mixed` drops and counts it.

    Args:
        root: directory searched recursively for videos.
        num_frames: frames T per clip.
        image_size: side S of the square crops.
        fps: sampling rate of the clips; ``None`` uses each file's rate divided by ``frame_stride``.
        frame_stride: with ``fps=None``, take every n-th frame.
        segment_seconds: length of the segments a long video is split into.
        train: random (training) or deterministic (evaluation) sampling.
        files: use these files instead of listing ``root``.

    Raises:
        ConfigError: an argument is out of range, or no file could be probed.
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
        if fps is not None and not fps > 0:
            raise ConfigError(f"fps must be positive or None, got {fps}")
        self.root = Path(root)
        self.num_frames, self.image_size, self.train = num_frames, image_size, train
        self.fps, self.frame_stride, self.segment_seconds = fps, frame_stride, segment_seconds
        self.videos: list[tuple[Path, VideoInfo]] = []
        self.num_failed_probe = 0
        for path in list(files) if files is not None else list_videos(self.root):
            try:
                self.videos.append((path, probe_video(path)))
            except FileFormatError as e:
                self.num_failed_probe += 1
                logger.warning("skipping %s: %s", path, e)
        if not self.videos:
            raise ConfigError(f"no readable video under {str(self.root)!r} ({self.num_failed_probe} failed to probe)")
        segments = [max(1, math.floor(info.duration / segment_seconds)) for _, info in self.videos]
        self.starts = np.cumsum([0, *segments]).tolist()  # item index where each video's segments begin

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: int) -> torch.Tensor | None:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        v = bisect.bisect_right(self.starts, i) - 1
        path, info = self.videos[v]
        segment, num_segments = i - self.starts[v], self.starts[v + 1] - self.starts[v]
        rate = self.fps if self.fps is not None else info.fps / self.frame_stride
        try:
            clip = sample_clip(path, self._clip_start(info, rate, segment, num_segments), self.num_frames, rate)
        except FileFormatError as e:
            logger.warning("skipping a clip of %s: %s", path, e)
            return None
        x = torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 255.0  # (3, T, H, W) in [0, 1]
        return self._crop(x) * 2.0 - 1.0

    def _clip_start(self, info: VideoInfo, rate: float, segment: int, num_segments: int) -> float:
        """Start time of the clip: random within the segment (training) or its start, where the clip still fits."""
        length = info.duration / num_segments
        span = (self.num_frames - 1) / rate
        room = max(0.0, min(length, info.duration - segment * length) - span)
        offset = float(torch.rand(())) * room if self.train else 0.0
        return segment * length + offset

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        """(3, T, H, W) -> (3, T, S, S): resize the shorter side, crop, maybe flip; the same for every frame."""
        S = self.image_size
        shorter = S if not self.train else int(torch.randint(S, math.ceil(S * _MAX_TRAIN_ZOOM) + 1, ()))
        H, W = x.shape[-2:]
        scale = shorter / min(H, W)
        size = (max(S, round(H * scale)), max(S, round(W * scale)))
        frames = x.transpose(0, 1)  # (T, 3, H, W)
        if size != (H, W):
            frames = F.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        if self.train:
            top, left = int(torch.randint(size[0] - S + 1, ())), int(torch.randint(size[1] - S + 1, ()))
        else:
            top, left = (size[0] - S) // 2, (size[1] - S) // 2
        frames = frames[..., top : top + S, left : left + S]
        if self.train and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        return frames.transpose(0, 1).contiguous()  # (3, T, S, S)
