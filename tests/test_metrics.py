"""PSNR and SSIM: known values, invariants, small images, low precision and video inputs."""

import math

import pytest
import torch

from vqtok.errors import InputError
from vqtok.metrics import psnr, ssim


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator) * 2 - 1


def test_psnr_identical_is_huge_and_finite():
    x = _images(2, 3, 16, 16)
    value = psnr(x, x)
    assert value.shape == (2,)
    assert torch.isfinite(value).all() and (value > 100).all()


def test_psnr_matches_known_mse():
    x = torch.zeros(3, 3, 8, 8)
    offsets = torch.tensor([0.1, 0.5, 1.0]).view(3, 1, 1, 1)
    value = psnr(x + offsets, x)  # constant offset d -> mse = d^2
    expected = torch.tensor([10 * math.log10(4 / d**2) for d in (0.1, 0.5, 1.0)])
    torch.testing.assert_close(value, expected)


def test_ssim_identical_is_one():
    x = _images(2, 3, 32, 32)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))


def test_ssim_decreases_with_noise_and_stays_in_range():
    x = _images(1, 3, 32, 32)
    noise = _images(1, 3, 32, 32, seed=1)
    scores = [ssim(x + level * noise, x).item() for level in (0.0, 0.1, 0.3, 1.0)]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    pairs = [(x, -x), (x, noise), (x, torch.ones_like(x)), (x.clamp(0, 1), -x.clamp(0, 1))]
    values = torch.cat([ssim(a, b) for a, b in pairs])
    assert (values >= -1).all() and (values <= 1).all()


def test_ssim_small_images_shrink_window():
    x = _images(2, 3, 8, 8)
    y = _images(2, 3, 8, 8, seed=1)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert ssim(x, y).shape == (2,)
    assert torch.isfinite(ssim(x[..., :1, :1], y[..., :1, :1])).all()


def test_ssim_bf16_inputs_computed_in_fp32():
    x = _images(2, 3, 16, 16)
    y = (x + 0.1 * _images(2, 3, 16, 16, seed=1)).clamp(-1, 1)
    value = ssim(x.bfloat16(), y.bfloat16())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, ssim(x.bfloat16().float(), y.bfloat16().float()))


def test_metrics_inside_bf16_autocast_equal_the_fp32_figures():
    """Training validates under bf16-mixed autocast, where a conv would run in bf16 and SSIM's variances would
    cancel (it logged NaN before this was fixed)."""
    x = _images(2, 3, 64, 64)
    y = (x + 0.02 * _images(2, 3, 64, 64, seed=1)).clamp(-1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = ssim(x, y), psnr(x, y)
    torch.testing.assert_close(inside, (ssim(x, y), psnr(x, y)))
    assert torch.isfinite(inside[0]).all()


def test_video_folds_frames_and_averages_per_video():
    x = _images(2, 3, 4, 16, 16)  # [B, C, T, H, W]
    y = _images(2, 3, 4, 16, 16, seed=1)
    for metric in (psnr, ssim):
        value = metric(x, y)
        assert value.shape == (2,)
        per_frame = torch.stack([metric(x[:, :, t], y[:, :, t]) for t in range(4)], dim=1)  # [B, T]
        torch.testing.assert_close(value, per_frame.mean(dim=1))


def test_mismatched_shapes_raise():
    with pytest.raises(InputError):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(InputError):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
