"""The resolution policy of a tokenization job: native size, shorter side resized, and/or a center crop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vqtok.errors import InputError
from vqtok.transforms import center_crop, resize, shorter_side_size


@dataclass(frozen=True)
class Resolution:
    """How inputs are sized before encoding.

    With neither field set, images and frames keep their native size (the tokenizer pads them to a multiple of its
    downsampling factor and the store records the size to crop back to). ``resize`` scales the shorter side to that
    many pixels, keeping the aspect ratio (bicubic, antialiased). ``crop`` then cuts the center (H, W) out; an
    input smaller than the crop fails with a message (it is never upscaled to fit, unless ``resize`` says so).
    """

    resize: int | None = None  # shorter side, in pixels
    crop: tuple[int, int] | None = None  # (H, W) of the center crop

    def __post_init__(self) -> None:
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize < 1):
            raise InputError(f"resize must be a positive number of pixels, got {self.resize!r}")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise InputError(f"crop must be a positive (H, W), got {self.crop!r}")

    def to_dict(self) -> dict:
        return {"resize": self.resize, "crop": list(self.crop) if self.crop else None}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) an input of ``height`` x ``width`` becomes (InputError if it is smaller than the crop)."""
        height, width = self._resized(height, width)
        if self.crop is not None:
            if height < self.crop[0] or width < self.crop[1]:
                raise InputError(f"{height}x{width} is smaller than the crop {self.crop[0]}x{self.crop[1]}")
            height, width = self.crop
        return height, width

    def _resized(self, height: int, width: int) -> tuple[int, int]:
        if self.resize is None:
            return height, width
        return shorter_side_size(height, width, self.resize)

    def apply(self, x: Tensor, bounds: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
        """(N, C, H, W) float images with values in ``bounds`` -> (N, C, H', W') sized by the policy."""
        H, W = x.shape[-2:]
        out_h, out_w = self.output_size(H, W)
        h, w = self._resized(H, W)
        x = resize(x, (h, w), clamp=bounds)  # x itself when (h, w) == (H, W)
        return center_crop(x, out_h, out_w)  # output_size checked that the crop fits

    def apply_uint8(self, frames: Tensor) -> Tensor:
        """(N, C, H, W) uint8 -> resized/cropped uint8 (rounded), for video frames."""
        if self.resize is None:
            return self.apply(frames)  # a crop only: no arithmetic, exact
        return self.apply(frames.float(), (0.0, 255.0)).round().to(torch.uint8)
