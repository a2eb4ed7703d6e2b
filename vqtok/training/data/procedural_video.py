"""The data set of procedural clips (rendered by :func:`vqtok.synthetic.render_procedural_video`), so that a video
tokenizer can be trained with no data set at all."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vqtok.errors import ConfigError
from vqtok.synthetic import procedural_video_frames, render_procedural_video
from vqtok.training.data.sampling import SampleKey, as_key

# procedural_video_frames, render_procedural_video: re-exported from vqtok.synthetic
__all__ = ["ProceduralVideos", "procedural_video_frames", "render_procedural_video"]

_FPS_RANGE = (8.0, 30.0)  # frame rates the data set samples clips at


class ProceduralVideos(Dataset):
    """A data set of procedural clips, rendered on the fly at a frame rate drawn from 8-30 fps per clip.

    Clip ``i`` is a pure function of ``(seed, stream, i)``: the same in every process, worker and epoch.

    Args:
        num_samples: length of the data set (one "epoch").
        num_frames: frames T per clip.
        image_size: side S of the square frames.
        seed: seed of the random stream.
        stream: independent sub-stream, so that e.g. validation (stream 1) never repeats training (stream 0).
    """

    def __init__(self, num_samples: int, num_frames: int, image_size: int, seed: int = 0, stream: int = 0) -> None:
        for name, value in (("num_samples", num_samples), ("num_frames", num_frames), ("image_size", image_size)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if seed < 0 or stream < 0:
            raise ConfigError(f"seed and stream must be non-negative, got seed={seed}, stream={stream}")
        self.num_samples = num_samples
        self.num_frames = num_frames
        self.image_size = image_size
        self.seed = seed
        self.stream = stream

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, key: int | SampleKey) -> Tensor:
        """Clip ``i`` as float32 (3, T, S, S) in [-1, 1]."""
        i = as_key(key).index  # a pure function of the index: the draw's seed is not needed
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, self.stream, int(i)])
        fps = float(rng.uniform(*_FPS_RANGE))
        clip = render_procedural_video(rng, self.num_frames, self.image_size, fps=fps)  # (T, S, S, 3) uint8
        return torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 127.5 - 1.0
