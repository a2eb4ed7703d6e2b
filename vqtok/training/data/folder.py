"""A data set of the image files under a directory, resized and cropped to squares for training."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vqtok.errors import ConfigError, FileFormatError
from vqtok.io.images import list_images, read_image
from vqtok.training.data.sampling import SampleKey, as_key
from vqtok.transforms import center_crop, resize_shorter_side

__all__ = ["ImageFolder", "collate_images"]

logger = logging.getLogger(__name__)

_MAX_TRAIN_ZOOM = 1.25  # training resizes the shorter side to a random length in [S, 1.25 S]


class ImageFolder(Dataset):
    """Square crops of the images under a directory, as float tensors in [-1, 1].

    Training (``train=True``): resize so that the shorter side is a random length in [S, 1.25 S] (antialiased
    bicubic; smaller images are upscaled), take a random S x S crop, flip horizontally with probability 1/2.
    The randomness comes from the :class:`~vqtok.training.data.sampling.SampleKey` the sampler passes (one seed
    per item and epoch), never from a global generator, so it is the same in every worker and after a resume.

    Evaluation (``train=False``): resize the shorter side to S, take the centre S x S crop; deterministic.

    A file that cannot be decoded gives ``None`` (and a logged warning) instead of stopping training; use
    :func:`collate_images` to drop those from a batch.

    Args:
        root: directory searched recursively for images (see :func:`vqtok.io.images.list_images`).
        image_size: side S of the square crops.
        train: random (training) or deterministic (evaluation) resizing and cropping.
        files: use these files instead of listing ``root`` (e.g. one side of a train/validation split).

    Raises:
        ConfigError: ``image_size`` is below 1, or there are no images.
        FileFormatError: ``root`` does not exist or is not a directory (when ``files`` is not given).
    """

    def __init__(self, root: str, image_size: int, train: bool = True, files: list[Path] | None = None) -> None:
        if image_size < 1:
            raise ConfigError(f"image_size must be at least 1, got {image_size}")
        self.root = Path(root)
        self.files = list(files) if files is not None else list_images(self.root)
        if not self.files:
            raise ConfigError(
                f"no images found under {str(self.root)!r} (searched recursively for files with an image "
                "suffix such as .png, .jpg, .webp; hidden files and directories are skipped)"
            )
        self.image_size = image_size
        self.train = train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | SampleKey) -> torch.Tensor | None:
        """Crop of item ``key`` as a float32 tensor (3, S, S) in [-1, 1], or ``None`` if its file cannot be read."""
        key = as_key(key)
        x = read_chw(self.files[key.index], "image")
        if x is None:
            return None
        x = self._random_crop(x, key.generator()) if self.train else self._centre_crop(x)
        return x * 2.0 - 1.0

    def _random_crop(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Training view of a (3, H, W) image in [0, 1]: random zoom, random crop, random flip -> (3, S, S)."""
        size = self.image_size
        shorter = int(torch.randint(size, int(_MAX_TRAIN_ZOOM * size) + 1, (), generator=g).item())
        x = resize_shorter_side(x, shorter, size)
        top = int(torch.randint(0, x.shape[1] - size + 1, (), generator=g).item())
        left = int(torch.randint(0, x.shape[2] - size + 1, (), generator=g).item())
        x = x[:, top : top + size, left : left + size]
        if torch.rand((), generator=g) < 0.5:
            x = x.flip(-1)
        return x.contiguous()

    def _centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation view of a (3, H, W) image in [0, 1]: shorter side to S, centre crop -> (3, S, S)."""
        size = self.image_size
        x = resize_shorter_side(x, size, size)  # both sides >= S, so the crop is S x S
        return center_crop(x, size).contiguous()


def read_chw(path: Path, what: str) -> torch.Tensor | None:
    """An image file as float32 (3, H, W) in [0, 1], or ``None`` (and a warning naming ``what`` and the file) when
    it cannot be read: training goes on without it."""
    try:
        image = read_image(path)  # (H, W, 3) float32 in [0, 1]
    except FileFormatError as e:
        logger.warning("skipping %s %s: %s", what, path, e)
        return None
    return torch.from_numpy(image).permute(2, 0, 1)


def collate_images(items: list[torch.Tensor | None]) -> dict[str, torch.Tensor | int]:
    """Batch the images of a data set that returns ``None`` for unreadable files.

    Args:
        items: float tensors of one shape (3, S, S), or ``None`` for items that failed.

    Returns:
        ``{"images": Tensor[B, 3, S, S], "num_failed": int}`` where B is the number of non-``None`` items.
        When every item failed the shape is unknown, so ``images`` is ``torch.empty(0)`` (numel 0, 1-d) and
        ``num_failed == len(items)``: check ``batch["images"].numel() == 0`` and skip such a batch.
    """
    images = [item for item in items if item is not None]
    num_failed = len(items) - len(images)
    if not images:
        return {"images": torch.empty(0), "num_failed": num_failed}
    return {"images": torch.stack(images), "num_failed": num_failed}


def split_files(files: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministically split files into training and validation sets.

    Args:
        files: at least 2 files.
        val_fraction: share of the files for validation; at least 1 file goes to validation and at least 1
            stays for training.
        seed: seed of the shuffle, so the split is the same in every process and run.

    Returns:
        ``(train, val)``, each sorted.
    """
    num_val = min(max(1, round(len(files) * val_fraction)), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    val = sorted(files[j] for j in order[:num_val])
    train = sorted(files[j] for j in order[num_val:])
    return train, val
