"""The MAGVIT-v2 style encoder and decoder of Open-MAGVIT2 (its ``improved_model``), for LFQ tokenizers.

Against :mod:`vqtok.model.autoencoder`: 3x3 convs inside ResNet blocks without biases, a symmetric-padded stride-2
conv to downsample, no attention, ``num_res_blocks`` ResNet blocks in the middle and per decoder level, a 1x1 conv
out of the encoder, a decoder that renormalises each level with an adaptive GroupNorm whose scale and shift come
from the statistics of the quantized input, and a 3x3 conv to 4C plus depth-to-space to upsample. Images only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice (convs without bias) plus a bias-free 1x1 skip when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine parameters, then per-channel scale and shift computed from the style z_q:
    scale = gamma(std over positions of z_q), shift = beta(mean over positions of z_q). A 1x1 style (h*w = 1) has
    no unbiased variance: torch gives NaN there, as in Open-MAGVIT2."""

    def __init__(self, style_channels: int, channels: int, groups: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps, affine=False)
        self.gamma = nn.Linear(style_channels, channels)
        self.beta = nn.Linear(style_channels, channels)
        self.eps = eps

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x (B, C, H, W), style (B, S, h, w) -> (B, C, H, W)."""
        B, C = x.shape[:2]
        flat = style.flatten(2)  # (B, S, h*w)
        # the unbiased variance (over h*w - 1), as Open-MAGVIT2 computes it
        scale = self.gamma((flat.var(dim=-1, correction=1) + self.eps).sqrt()).view(B, C, 1, 1)
        shift = self.beta(flat.mean(dim=-1)).view(B, C, 1, 1)
        return scale * self.norm(x) + shift


class DepthToSpaceUpsample(nn.Module):
    """3x3 conv to 4C channels, then each group of 4 channels becomes a 2x2 block: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        y = self.conv(x).view(B, 2, 2, C, H, W)  # channel (i, j, c): row offset i, column offset j
        return y.permute(0, 3, 4, 1, 5, 2).reshape(B, C, 2 * H, 2 * W)  # (B, C, H, i, W, j)


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, z_channels, H/f, W/f), f = 2 ** (len(channel_mults) - 1)."""

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        channel_mults: list[int],
        num_res_blocks: int,
        z_channels: int,
        groups: int,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1, bias=False)
        levels = []
        width = base_channels
        for i, mult in enumerate(channel_mults):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, base_channels * mult, groups))
                width = base_channels * mult
            if i < len(channel_mults) - 1:
                blocks.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.mid = nn.Sequential(*(ResBlock(width, width, groups) for _ in range(num_res_blocks)))
        self.norm_out = nn.GroupNorm(groups, width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, z_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.levels(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class DecoderLevel(nn.Module):
    """Adaptive GroupNorm on the style, ResNet blocks, then (except at full resolution) 2x upsampling."""

    def __init__(
        self, in_channels: int, out_channels: int, style_channels: int, blocks: int, groups: int, upsample: bool
    ) -> None:
        super().__init__()
        self.adaptive = AdaptiveGroupNorm(style_channels, in_channels, groups)
        self.blocks = nn.Sequential(
            *(ResBlock(in_channels if j == 0 else out_channels, out_channels, groups) for j in range(blocks))
        )
        self.upsample = DepthToSpaceUpsample(out_channels) if upsample else nn.Identity()

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.upsample(self.blocks(self.adaptive(x, style)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, out_channels, h*f, w*f); its input is also the style of every level."""

    def __init__(
        self,
        out_channels: int,
        base_channels: int,
        channel_mults: list[int],
        num_res_blocks: int,
        z_channels: int,
        groups: int,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in reversed(channel_mults)]
        self.conv_in = nn.Conv2d(z_channels, widths[0], 3, padding=1)
        self.mid = nn.Sequential(*(ResBlock(widths[0], widths[0], groups) for _ in range(num_res_blocks)))
        self.levels = nn.ModuleList(
            DecoderLevel(widths[max(i - 1, 0)], w, z_channels, num_res_blocks, groups, upsample=i < len(widths) - 1)
            for i, w in enumerate(widths)
        )
        self.norm_out = nn.GroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            h = level(h, z)
        return self.conv_out(F.silu(self.norm_out(h)))
