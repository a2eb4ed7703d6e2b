"""Image quality metrics: PSNR and SSIM, per image, in pure torch.

Both functions take two batches of the same shape, either images ``[B, C, H, W]`` or videos ``[B, C, T, H, W]``,
with values in ``[-1, 1]`` (the tokenizer's pixel range; ``data_range`` is the width of that range). Videos are
scored frame by frame, with ``T`` folded into the batch, and the frame scores are averaged per video, so the result
is always one value per batch element, shape ``[B]``. Everything is computed in float32 whatever the input dtype,
also inside an autocast region (bf16 statistics would cancel catastrophically in the variances).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.errors import InputError

__all__ = ["psnr", "ssim"]

# PSNR of identical images is +inf in theory; the mean squared error is clamped at this floor instead, so the
# result stays finite and averages cleanly in logs. With data_range=2 the ceiling is 10*log10(4/1e-10) ~= 106 dB.
_MSE_FLOOR = 1e-10
_K1, _K2 = 0.01, 0.03  # SSIM stabilising constants (Wang et al. 2004)


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio of each image (or video) in a batch.

    Args:
        x: Images ``[B, C, H, W]`` or videos ``[B, C, T, H, W]`` in ``[-1, 1]``, any float dtype.
        y: Reference, same shape as ``x``.
        data_range: Width of the value range (2.0 for ``[-1, 1]``).

    Returns:
        float32 ``[B]``, PSNR in dB: ``10 * log10(data_range**2 / mse)``. The mse is clamped at 1e-10, so identical
        inputs give a large finite value (~106 dB for ``data_range=2``) rather than ``+inf``. For a video the
        per-frame PSNRs are averaged.

    Raises:
        InputError: If the shapes differ or are neither 4-D nor 5-D.
    """
    x, y, num_frames = _fold_frames(x, y)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))  # [B*T]
    value = 10.0 * torch.log10(data_range**2 / mse.clamp_min(_MSE_FLOOR))  # [B*T]
    return value.view(-1, num_frames).mean(dim=1)  # [B]


def ssim(x: Tensor, y: Tensor, data_range: float = 2.0, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity of each image (or video) in a batch, with a gaussian window.

    The local statistics are gaussian-weighted over a ``window_size`` window without padding (only positions where
    the window fits are scored) and SSIM is averaged over positions and channels. Images smaller than the window
    are scored with the largest odd window that fits (``sigma`` unchanged), so 8x8 images use a 7x7 window.

    Args:
        x: Images ``[B, C, H, W]`` or videos ``[B, C, T, H, W]`` in ``[-1, 1]``, any float dtype.
        y: Reference, same shape as ``x``.
        data_range: Width of the value range (2.0 for ``[-1, 1]``); sets ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
        window_size: Side of the gaussian window, in pixels.
        sigma: Standard deviation of the gaussian window, in pixels.

    Returns:
        float32 ``[B]`` in ``[-1, 1]``, 1 for identical inputs. For a video the per-frame SSIMs are averaged.

    Raises:
        InputError: If the shapes differ or are neither 4-D nor 5-D, or ``window_size`` or ``sigma`` is not positive.
    """
    if window_size < 1 or sigma <= 0:
        raise InputError(f"ssim needs window_size >= 1 and sigma > 0, got window_size={window_size}, sigma={sigma}")
    x, y, num_frames = _fold_frames(x, y)
    with torch.autocast(x.device.type, enabled=False):  # bf16 variances cancel to 0 or below: NaN
        return _ssim(x, y, data_range, window_size, sigma).view(-1, num_frames).mean(dim=1)  # [B]


def _ssim(x: Tensor, y: Tensor, data_range: float, window_size: int, sigma: float) -> Tensor:
    """SSIM of each image of float32 ``[N, C, H, W]`` batches, ``[N]``."""
    channels, height, width = x.shape[1:]
    size = min(window_size, height, width)
    size -= 1 - size % 2  # largest odd size that fits, so the window stays centred
    kernel = _gaussian_1d(size, sigma, x.device)  # [size]

    # One depthwise pass over the five maps the statistics need: x, y, x^2, y^2, xy, each [N, C, H, W].
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=0)  # [5N, C, H, W]
    maps = F.conv2d(maps, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    maps = F.conv2d(maps, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    mu_x, mu_y, e_xx, e_yy, e_xy = maps.chunk(5, dim=0)  # each [N, C, H', W']

    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    contrast_structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    return (luminance * contrast_structure).mean(dim=(1, 2, 3))  # [N]


def _fold_frames(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, int]:
    """Check shapes, cast to float32 and fold video frames into the batch.

    Returns:
        ``x`` and ``y`` as float32 ``[B*T, C, H, W]`` (``T = 1`` for images), and ``T``.
    """
    if x.shape != y.shape:
        raise InputError(f"metric inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim == 4:
        return x.float(), y.float(), 1
    if x.ndim == 5:
        b, c, t, h, w = x.shape
        x = x.float().transpose(1, 2).reshape(b * t, c, h, w)  # [B, C, T, H, W] -> [B*T, C, H, W]
        y = y.float().transpose(1, 2).reshape(b * t, c, h, w)
        return x, y, t
    raise InputError(f"metric inputs must be [B, C, H, W] or [B, C, T, H, W], got shape {tuple(x.shape)}")


def _gaussian_1d(size: int, sigma: float, device: torch.device) -> Tensor:
    """Normalised 1-D gaussian window, float32 ``[size]``."""
    offsets = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    window = torch.exp(-(offsets**2) / (2 * sigma**2))
    return window / window.sum()
