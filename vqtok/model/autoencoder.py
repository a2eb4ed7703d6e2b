"""Convolutional ResNet encoder and decoder with a configurable number of 2x resolution steps.

Images: (B, C, H, W). Video (``video=True``): causal 3D over (B, C, T, H, W), where the deepest
``temporal_levels`` resolution steps also halve (encoder) or double (decoder) time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model.blocks import AttentionBlock, Downsample, MidBlock, ResnetBlock, Upsample, conv, group_norm
from vqtok.model.causal import Downsample3d, Upsample3d


class Encoder(nn.Module):
    """(B, in_channels, [T,] H, W) -> (B, z_channels, [1 + (T-1)/r,] H/f, W/f).

    f = 2 ** (len(channel_mults) - 1), r = 2 ** temporal_levels. The levels in ``attention_levels`` (images only)
    follow every ResNet block with self-attention.
    """

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
        video: bool = False,
        temporal_levels: int = 0,
        attention_levels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_mults]
        num_steps = len(widths) - 1
        self.conv_in = conv(in_channels, widths[0], 3, video)
        levels = []
        width = widths[0]
        for i, out_width in enumerate(widths):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(width, out_width, groups, grad_checkpoint, video))
                width = out_width
                if i in attention_levels:
                    blocks.append(AttentionBlock(width, groups))
            if i < num_steps:
                temporal = i >= num_steps - temporal_levels  # time is halved in the deepest steps
                blocks.append(Downsample3d(width, temporal) if video else Downsample(width))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.mid = MidBlock(width, groups, attention, grad_checkpoint, video)
        self.norm_out = group_norm(width, groups, video)
        self.conv_out = conv(width, z_channels, 3, video)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.levels(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))


class Decoder(nn.Module):
    """(B, z_channels, [t,] h, w) -> (B, out_channels, [1 + r(t-1),] h*f, w*f); the mirror image of :class:`Encoder`
    (``attention_levels`` count from full resolution, as the encoder's do)."""

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
        video: bool = False,
        temporal_levels: int = 0,
        attention_levels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in reversed(channel_mults)]
        width = widths[0]
        self.conv_in = conv(z_channels, width, 3, video)
        self.mid = MidBlock(width, groups, attention, grad_checkpoint, video)
        levels = []
        for i, out_width in enumerate(widths):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(width, out_width, groups, grad_checkpoint, video))
                width = out_width
                if len(widths) - 1 - i in attention_levels:  # the encoder's level at this resolution
                    blocks.append(AttentionBlock(width, groups))
            if i < len(widths) - 1:
                temporal = i < temporal_levels  # time is doubled in the deepest steps, mirroring the encoder
                blocks.append(Upsample3d(width, temporal) if video else Upsample(width))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.norm_out = group_norm(width, groups, video)
        self.conv_out = conv(width, out_channels, 3, video)

    def forward(self, z: Tensor) -> Tensor:
        h = self.levels(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))
