"""The data set of procedural "dead leaves" images (rendered by :func:`vqtok.synthetic.render_dead_leaves`), so
that a tokenizer can be trained with no data set at all."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from vqtok.errors import ConfigError
from vqtok.synthetic import render_dead_leaves
from vqtok.training.data.sampling import SampleKey, as_key

__all__ = ["ProceduralImages", "render_dead_leaves"]  # render_dead_leaves: re-exported from vqtok.synthetic


class ProceduralImages(Dataset):
    """A data set of :func:`render_dead_leaves` images, rendered on the fly (no files, nothing cached).

    Sample ``i`` is a pure function of ``(seed, stream, i)``: the same in every process, DataLoader worker and
    epoch, whatever the order of access.

    Args:
        num_samples: length of the data set (one "epoch").
        image_size: side S of the square images.
        seed: seed of the random stream.
        stream: independent sub-stream, so that e.g. validation (stream 1) never repeats training (stream 0).
    """

    def __init__(self, num_samples: int, image_size: int, seed: int = 0, stream: int = 0) -> None:
        if num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {num_samples}")
        if image_size < 1:
            raise ConfigError(f"image_size must be at least 1, got {image_size}")
        if seed < 0 or stream < 0:
            raise ConfigError(f"seed and stream must be non-negative, got seed={seed}, stream={stream}")
        self.num_samples = num_samples
        self.image_size = image_size
        self.seed = seed
        self.stream = stream

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, key: int | SampleKey) -> torch.Tensor:
        """Image ``i`` as a float32 tensor of shape (3, S, S) with values in [-1, 1]."""
        i = as_key(key).index  # a pure function of the index: the draw's seed is not needed
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, self.stream, int(i)])
        image = render_dead_leaves(rng, self.image_size)  # (S, S, 3) uint8
        x = torch.from_numpy(image).permute(2, 0, 1).float()  # (3, S, S)
        return x / 127.5 - 1.0
