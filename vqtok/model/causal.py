"""Causal 3D pieces of the video autoencoder, layout (B, C, T, H, W).

Causal: output frame t depends on input frames <= t only. Convolutions are padded toward the past only (by
repeating the first frame), norms and attention work frame by frame, and temporal upsampling never looks ahead.
So frame 0 is encoded on its own, and a 1-frame video goes through the same arithmetic as an image.

Streaming: inside ``with streaming(module):`` every :class:`CausalConv3d` keeps the last frames of its input
between calls, so a long clip can be fed in temporal chunks (the first chunk ``1 + r*m`` frames, the following
ones ``r*m`` frames, r the temporal factor) and the outputs are those of one call over the whole clip, in
memory that does not grow with the clip's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalConv3d(nn.Conv3d):
    """A Conv3d padded toward the past in time (first frame repeated) and with zeros in space.

    With temporal stride s and kernel k, ``1 + s*m`` frames give ``1 + m`` frames (in a stream: ``s*m`` more
    frames give ``m`` more). Parameters are named and shaped like ``nn.Conv3d``'s (weight (O, I, k, k, k)).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: k, the same in time and space.
        stride: (time, height, width) strides.
        spatial_padding: (left, right, top, bottom) zero padding; default k // 2 on every side.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: tuple[int, int, int] = (1, 1, 1),
        spatial_padding: tuple[int, int, int, int] | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        self.spatial_padding = spatial_padding if spatial_padding is not None else (kernel_size // 2,) * 4
        self.time_context = kernel_size - stride[0]  # input frames the next chunk of a stream still needs
        self.streaming = False
        self._cache: Tensor | None = None  # (B, C_in, time_context, H, W): the end of the previous chunk

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T', H', W')."""
        past = self.kernel_size[0] - 1
        if self._cache is not None:
            x = torch.cat([self._cache, x], dim=2)  # continue the stream where the last chunk stopped
        elif past > 0:
            x = torch.cat([x[:, :, :1].expand(-1, -1, past, -1, -1), x], dim=2)  # (B, C, past + T, H, W)
        if self.streaming and self.time_context > 0:
            assert (x.shape[2] - self.kernel_size[0]) % self.stride[0] == 0, "stream chunk out of phase"
            self._cache = x[:, :, x.shape[2] - self.time_context :].clone()
        return super().forward(F.pad(x, self.spatial_padding))

    def start_stream(self) -> None:
        self.streaming, self._cache = True, None

    def end_stream(self) -> None:
        self.streaming, self._cache = False, None


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own: statistics never mix frames, so normalisation stays causal."""

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> same shape."""
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)  # (B*T, C, H, W)
        return super().forward(frames).reshape(B, T, C, H, W).transpose(1, 2)


class Downsample3d(nn.Module):
    """Stride-2 causal 3x3x3 conv: (T, H, W) -> (T', H/2, W/2), with 1 + 2m -> 1 + m frames when ``temporal``."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        stride = (2 if temporal else 1, 2, 2)
        self.conv = CausalConv3d(channels, channels, 3, stride=stride, spatial_padding=(0, 1, 0, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample3d(nn.Module):
    """Nearest 2x upsampling then a causal 3x3x3 conv: (T, H, W) -> (T', 2H, 2W).

    With ``temporal``, each frame is doubled and the first copy of frame 0 dropped, so 1 + m frames give
    1 + 2m (in a stream, only the first chunk drops a frame) and no output frame looks at a later input.
    """

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(channels, channels, 3)
        self.streaming = False
        self._started = False  # a stream has passed its first chunk

    def forward(self, x: Tensor) -> Tensor:
        if not self.temporal:
            return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))
        x = F.interpolate(x, scale_factor=(2.0, 2.0, 2.0), mode="nearest")  # (B, C, 2T, 2H, 2W)
        if not self._started:
            x = x[:, :, 1:]  # (B, C, 2T - 1, 2H, 2W): frame 0 has no past to fill in between
        self._started = self.streaming
        return self.conv(x)

    def start_stream(self) -> None:
        self.streaming, self._started = True, False

    def end_stream(self) -> None:
        self.streaming, self._started = False, False


@contextmanager
def streaming(module: nn.Module) -> Iterator[None]:
    """Within the block, calls of ``module`` continue one stream of frames (see the module docstring)."""
    parts = [m for m in module.modules() if isinstance(m, (CausalConv3d, Upsample3d))]
    if any(m.streaming for m in parts):  # a second stream would silently mix its state into the first
        raise RuntimeError("this model is already streaming a video; finish (or close) that stream first")
    for m in parts:
        m.start_stream()
    try:
        yield
    finally:
        for m in parts:
            m.end_stream()
