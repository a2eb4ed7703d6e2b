"""Convolutional ResNet encoder and decoder with a configurable number of 2x resolution steps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model.blocks import Downsample, MidBlock, ResnetBlock, Upsample, group_norm


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, z_channels, H/f, W/f) with f = 2 ** (len(channel_mults) - 1)."""

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        channel_mults: list[int],
        num_res_blocks: int,
        z_channels: int,
        groups: int,
        attention: bool,
        grad_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_mults]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        levels = []
        width = widths[0]
        for i, out_width in enumerate(widths):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(width, out_width, groups, grad_checkpoint))
                width = out_width
            if i < len(widths) - 1:
                blocks.append(Downsample(width))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.mid = MidBlock(width, groups, attention, grad_checkpoint)
        self.norm_out = group_norm(width, groups)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.levels(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, out_channels, h*f, w*f); the mirror image of :class:`Encoder`."""

    def __init__(
        self,
        out_channels: int,
        base_channels: int,
        channel_mults: list[int],
        num_res_blocks: int,
        z_channels: int,
        groups: int,
        attention: bool,
        grad_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in reversed(channel_mults)]
        width = widths[0]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = MidBlock(width, groups, attention, grad_checkpoint)
        levels = []
        for i, out_width in enumerate(widths):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(width, out_width, groups, grad_checkpoint))
                width = out_width
            if i < len(widths) - 1:
                blocks.append(Upsample(width))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.norm_out = group_norm(width, groups)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.levels(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))
