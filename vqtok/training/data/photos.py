"""Real photos for training, and the mix of real and procedural images.

:class:`PhotoCrops` cuts training views out of photos of any size: a random square at a random scale (from a
square of side S, the photo's native detail, up to the photo's shorter side, zoomed out to S), a random flip and
a small colour jitter. :class:`MixedImages` serves a fixed share of such crops among procedural dead-leaves
images. All randomness comes from the :class:`~vqtok.training.data.sampling.SampleKey` of each draw, so the
views are the same in every DataLoader worker and after a resume.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vqtok.errors import ConfigError
from vqtok.training.data.folder import read_chw
from vqtok.training.data.procedural import ProceduralImages
from vqtok.training.data.sampling import SampleKey, as_key
from vqtok.transforms import center_crop, resize, resize_shorter_side

__all__ = ["MixedImages", "PhotoCrops", "is_real", "random_view"]


_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # Rec. 601 weights for the grey of the jitter


def random_view(x: torch.Tensor, size: int, jitter: float, g: torch.Generator) -> torch.Tensor:
    """A random training view of a (3, H, W) image in [0, 1] -> (3, S, S) in [0, 1].

    1. Scale: the side of the square cut out is log-uniform in [S, min(H, W)] (an image whose shorter side is
       below S is first upscaled to S), so native-resolution detail and zoomed-out views are equally likely per
       octave; the square is resized to S x S (antialiased bicubic).
    2. Position: uniform over the image.
    3. Horizontal flip with probability 1/2.
    4. Colour: brightness, contrast and saturation each scaled by a factor uniform in [1 - jitter, 1 + jitter].

    Args:
        x: float image (3, H, W) in [0, 1], any H and W.
        size: side S of the output.
        jitter: half-width of the colour factors' range (0 for none).
        g: the generator of this draw (``SampleKey.generator()``); every random number comes from it.
    """
    x = resize_shorter_side(x, max(size, min(x.shape[1:])), size)  # upscale only images smaller than S
    shorter = min(x.shape[1:])
    u = torch.rand((), generator=g).item()
    side = min(shorter, max(size, round(math.exp(math.log(size) + u * (math.log(shorter) - math.log(size))))))
    top = int(torch.randint(0, x.shape[1] - side + 1, (), generator=g).item())
    left = int(torch.randint(0, x.shape[2] - side + 1, (), generator=g).item())
    x = x[:, top : top + side, left : left + side]  # (3, side, side)
    x = resize(x, (size, size), clamp=None)  # not clamped here: the jitter below works on the overshoot, then clamps
    if torch.rand((), generator=g) < 0.5:
        x = x.flip(-1)
    brightness, contrast, saturation = (1.0 + jitter * (2.0 * torch.rand(3, generator=g) - 1.0)).tolist()
    x = x * brightness
    grey = (x * _LUMA).sum(0, keepdim=True)  # (1, S, S)
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = (x * _LUMA).sum(0, keepdim=True)
    x = grey + (x - grey) * saturation
    return x.clamp(0.0, 1.0).contiguous()


class PhotoCrops(Dataset):
    """Square views of photo files, as float tensors (3, S, S) in [-1, 1].

    A training draw (a :class:`SampleKey` with its seed) gives :func:`random_view` of its photo; a plain int (what
    evaluation asks for) gives the deterministic view: shorter side resized to S, centre crop, no jitter.
    A file that cannot be decoded gives ``None`` (and a logged warning): batch with
    :func:`~vqtok.training.data.folder.collate_images`, which drops and counts it.

    Args:
        files: the photo files (any size, any format :func:`vqtok.io.images.read_image` reads).
        image_size: side S of the views.
        jitter: colour jitter of the training views (see :func:`random_view`).
    """

    def __init__(self, files: list[Path], image_size: int, jitter: float = 0.1) -> None:
        if not files:
            raise ConfigError("PhotoCrops needs at least one photo file")
        if image_size < 1:
            raise ConfigError(f"image_size must be at least 1, got {image_size}")
        if not 0.0 <= jitter < 1.0:
            raise ConfigError(f"colour jitter must be in [0, 1), got {jitter}")
        self.files = list(files)
        self.image_size = image_size
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | SampleKey) -> torch.Tensor | None:
        """View of photo ``key.index`` as float32 (3, S, S) in [-1, 1], or ``None`` if the file cannot be read."""
        train = isinstance(key, SampleKey)
        key = as_key(key)
        x = read_chw(self.files[key.index], "photo")  # (3, H, W) in [0, 1]
        if x is None:
            return None
        if train:
            x = random_view(x, self.image_size, self.jitter, key.generator())
        else:
            x = resize_shorter_side(x, self.image_size, self.image_size)
            x = center_crop(x, self.image_size).contiguous()
        return x * 2.0 - 1.0


def is_real(index: int, real_fraction: float) -> bool:
    """Whether item ``index`` of a :class:`MixedImages` epoch is a real photo.

    Items are assigned like a Bresenham line: of the first n items, exactly ``floor(n * real_fraction)`` are real,
    so every epoch (and every stretch of the index range) holds the share asked for, and the sampler's shuffle
    spreads them over the batches.
    """
    return math.floor((index + 1) * real_fraction) > math.floor(index * real_fraction)


class MixedImages(Dataset):
    """Real photo crops and procedural dead-leaves images in a fixed proportion, one epoch of ``num_samples``.

    Item i is real when :func:`is_real` says so; its photo is the (number of real items before i) modulo the number
    of photos, so every photo gets the same share of crops and each draw its own random view. The other items
    are procedural image i (a pure function of ``seed``, ``stream`` and i).

    Args:
        photos: the real photos (their training views).
        num_samples: length of one epoch.
        image_size: side S of every image.
        real_fraction: share of real items, in [0, 1].
        seed: seed of the procedural images.
        stream: procedural sub-stream (training and validation use different ones).
    """

    def __init__(
        self, photos: PhotoCrops, num_samples: int, image_size: int, real_fraction: float, seed: int, stream: int
    ) -> None:
        if not 0.0 <= real_fraction <= 1.0:
            raise ConfigError(f"real_fraction must be in [0, 1], got {real_fraction}")
        if photos.image_size != image_size:
            raise ConfigError(f"photo views are {photos.image_size} px, procedural images {image_size} px")
        self.photos = photos
        self.procedural = ProceduralImages(num_samples, image_size, seed, stream)
        self.real_fraction = real_fraction

    def __len__(self) -> int:
        return len(self.procedural)

    def __getitem__(self, key: int | SampleKey) -> torch.Tensor | None:
        """Item ``key`` as float32 (3, S, S) in [-1, 1] (``None`` for an unreadable photo)."""
        index = as_key(key).index
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if not is_real(index, self.real_fraction):
            return self.procedural[key]
        photo = math.floor(index * self.real_fraction) % len(self.photos)
        if isinstance(key, SampleKey):
            return self.photos[SampleKey(photo, key.seed)]
        return self.photos[photo]
