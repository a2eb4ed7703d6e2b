"""Convolutional building blocks of the encoder and decoder: 2D (B, C, H, W) or, with ``video``, causal 3D
(B, C, T, H, W) built from :mod:`vqtok.model.causal`. Parameter names are the same in both, so an image model's
weights inflate into a video model (see :mod:`vqtok.model.inflate`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vqtok.model.causal import CausalConv3d, FrameGroupNorm
from vqtok.model.subpixel import interleave_phases, phase_bias, phase_kernels


def group_norm(channels: int, groups: int, video: bool = False) -> nn.GroupNorm:
    """GroupNorm over each image (or, for video, each frame)."""
    return (FrameGroupNorm if video else nn.GroupNorm)(groups, channels, eps=1e-6)


def conv(in_channels: int, out_channels: int, kernel_size: int, video: bool = False) -> nn.Conv2d | nn.Conv3d:
    """A stride-1, size-preserving conv: Conv2d with zero padding, or a causal Conv3d."""
    if video:
        return CausalConv3d(in_channels, out_channels, kernel_size)
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class ResnetBlock(nn.Module):
    """norm-SiLU-conv twice, plus a 1x1 skip when the width changes. (B, C_in, [T,] H, W) -> (B, C_out, [T,] H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, grad_checkpoint: bool = False, video: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups, video)
        self.conv1 = conv(in_channels, out_channels, 3, video)
        self.norm2 = group_norm(out_channels, groups, video)
        self.conv2 = conv(out_channels, out_channels, 3, video)
        self.skip = conv(in_channels, out_channels, 1, video) if in_channels != out_channels else nn.Identity()
        self.grad_checkpoint = grad_checkpoint
        self.video = video

    def forward(self, x: Tensor) -> Tensor:
        if self.grad_checkpoint and self.training and x.requires_grad:
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def forward_over_input(self, x: Tensor) -> Tensor:
        """``forward(x)`` for a caller that gives x up (video inference, the frame pipeline): a block that changes
        the width takes its skip first, then normalises x in place, so x and a normalised copy of it are never
        both alive. The same values (the skip and the first conv do not depend on each other)."""
        if torch.is_grad_enabled() or not self.video:
            return self(x)
        return self._video_inference(x, x_given_up=True)

    def _video_inference(self, x: Tensor, x_given_up: bool) -> Tensor:
        """Inference on large frames: each step written over the last, so x and one more frame at a time."""
        assert isinstance(self.norm1, FrameGroupNorm) and isinstance(self.norm2, FrameGroupNorm)
        assert isinstance(self.conv1, CausalConv3d) and isinstance(self.conv2, CausalConv3d)
        skip = None
        if x_given_up and not isinstance(self.skip, nn.Identity):
            skip, h = self.skip(x), self.norm1.forward_over_input(x)
        else:
            h = self.norm1(x)
        h = self.conv1.forward_over_input(F.silu(h, inplace=True))
        h = self.conv2.forward_over_input(F.silu(self.norm2.forward_over_input(h), inplace=True))
        return h.add_(self.skip(x) if skip is None else skip)

    def _forward(self, x: Tensor) -> Tensor:
        inplace = not torch.is_grad_enabled()  # inference: reuse the fresh norm/conv outputs, no new activations
        if inplace and self.video:
            return self._video_inference(x, x_given_up=False)
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = F.silu(self.norm2(h), inplace=inplace)  # conv1's output is freed here, before conv2 allocates its own
        h = self.conv2(h)
        return h.add_(self.skip(x)) if inplace else self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all positions, through scaled_dot_product_attention. Shape-preserving."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(1)  # 3 x (B, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class FrameAttentionBlock(AttentionBlock):
    """:class:`AttentionBlock` within each frame of a video (spatial positions only), so it stays causal."""

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> same shape."""
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)  # (B*T, C, H, W)
        return super().forward(frames).reshape(B, T, C, H, W).transpose(1, 2)


class Downsample(nn.Module):
    """Stride-2 3x3 conv, padded on the right/bottom only so that (H, W) -> (H/2, W/2) exactly."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x upsampling then a 3x3 conv: (H, W) -> (2H, 2W), computed at the input's resolution as four
    2x2 phase convs (see :mod:`vqtok.model.subpixel`). The parameter is still the 3x3 ``conv``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        assert self.conv.bias is not None  # built with a bias
        kernel, bias = phase_kernels(self.conv.weight), phase_bias(self.conv.bias)  # (4C, C, 2, 2), (4C,)
        y = F.conv2d(x, kernel, bias, padding=1)  # (B, 4C, h+1, w+1)
        return interleave_phases(y, h, w, channels_last=x.is_contiguous(memory_format=torch.channels_last))


class MidBlock(nn.Sequential):
    """ResNet block, optional attention, ResNet block, at the lowest resolution."""

    def __init__(self, channels: int, groups: int, attention: bool, grad_checkpoint: bool, video: bool = False) -> None:
        attention_block = FrameAttentionBlock if video else AttentionBlock
        super().__init__(
            ResnetBlock(channels, channels, groups, grad_checkpoint, video),
            attention_block(channels, groups) if attention else nn.Identity(),
            ResnetBlock(channels, channels, groups, grad_checkpoint, video),
        )
