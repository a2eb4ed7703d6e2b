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

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model.row_bands import Kernel, conv3d_in_row_bands, row_band_kernel, upsampling_conv3d_in_row_bands
from vqtok.model.subpixel import interleave_phases, phase_bias, phase_kernels


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
        self.row_bands = True  # large frames may go through vqtok.model.row_bands in inference (same values)

    def _context(self, x: Tensor) -> Tensor:
        """The frames before x: (B, C_in, k_t - 1, H, W) from the stream, or the first frame repeated."""
        past = self.kernel_size[0] - 1
        if self._cache is not None:
            return self._cache  # continue the stream where the last chunk stopped
        if past > 0:
            return x[:, :, :1].expand(-1, -1, past, -1, -1)  # (B, C, past, H, W): the first frame repeated
        return x[:, :, :0]

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T', H', W')."""
        context = self._context(x)
        keep = self.streaming and self.time_context > 0
        if keep:
            frames = context.shape[2] + x.shape[2]
            assert (frames - self.kernel_size[0]) % self.stride[0] == 0, "stream chunk out of phase"
        if torch.is_grad_enabled():
            if keep:
                self._cache = _frames(context, x, frames - self.time_context, frames).clone()
            return self._conv(torch.cat([context, x], dim=2) if context.shape[2] else x)
        out = self._sliced(context, x)
        if keep:
            cache = self._cache_for(x)
            self._keep_last_frames(context, x, cache)
            self._cache = cache
        return out

    def forward_over_input(self, x: Tensor) -> Tensor:
        """``forward(x)``, written over x where it can be: inference in row bands, one frame x (B, C, 1, H, W) (as
        the frame pipeline gives the full-resolution levels), a stride-1 conv that keeps the shape (C_in == C_out).
        The caller gives x up. The same calls and values as ``forward``, without a second tensor as large as x:
        each band's output rows replace input rows no later band reads, after the stream has kept what it needs
        of them."""
        context = self._context(x)
        k = self.kernel_size[0]
        kernel = row_band_kernel(x, self.weight, context.shape[2] + x.shape[2], self.stride, self.spatial_padding)
        if (
            not self.row_bands
            or kernel is None
            or x.shape[2] != 1  # an output frame j would overwrite input frame j, which frames j + 1, j + 2 read
            or self.in_channels != self.out_channels
            or tuple(self.stride) != (1, 1, 1)
            or context.shape[2] != k - 1
            or self.spatial_padding != (k // 2,) * 4
        ):
            return self.forward(x)
        c = context.shape[2]

        def frame(i: int) -> Tensor:  # (B, C_in, H, W): frame i of [context, x]
            return context[:, :, i] if i < c else x[:, :, i - c]

        cache = self._cache_for(x) if self.streaming and self.time_context > 0 else None

        def keep_rows(r0: int, r1: int) -> None:  # the stream's last frames, rows [r0, r1), before x's are lost
            if cache is not None:
                self._keep_last_frames(context, x, cache, slice(r0, r1))

        stride = (1, 1, 1)
        conv3d_in_row_bands(frame, c + 1, self.weight, self.bias, stride, self.spatial_padding, kernel, x, keep_rows)
        if cache is not None:
            self._cache = cache
        return x

    def _conv(self, x: Tensor) -> Tensor:
        """The conv over frames already padded in time: (B, C_in, k + s*(n-1), H, W) -> (B, C_out, n, H', W')."""
        left, right, top, bottom = self.spatial_padding
        if left == right == top == bottom:  # the conv pads, without a padded copy of x
            return F.conv3d(x, self.weight, self.bias, self.stride, (0, top, left))
        return F.conv3d(F.pad(x, self.spatial_padding), self.weight, self.bias, self.stride)

    def _cache_for(self, x: Tensor) -> Tensor:
        """Where the stream's last ``time_context`` frames of input like x go: the cache itself when it has the
        right shape (written in place, no second cache alive beside the first), else a new one (a fresh stream,
        or a new tile size)."""
        shape = (*x.shape[:2], self.time_context, *x.shape[3:])
        cache = self._cache
        return cache if cache is not None and cache.shape == shape else x.new_empty(shape)

    def _keep_last_frames(self, context: Tensor, x: Tensor, cache: Tensor, rows: slice = slice(None)) -> None:
        """Inference: rows ``rows`` of the last ``time_context`` frames of [context, x] into ``cache``, which may
        be the context itself."""
        c, tc = context.shape[2], self.time_context
        frames = c + x.shape[2]
        for j in range(tc):  # frame j takes frame frames - tc + j >= j: never one this loop has overwritten
            src = frames - tc + j
            cache[:, :, j, rows].copy_((context[:, :, src] if src < c else x[:, :, src - c])[:, :, rows])

    def _sliced(self, context: Tensor, x: Tensor, step: int = 1) -> Tensor:
        """Inference: the conv over [context, x] along time, ``step`` output frames at a time, into one output.

        Neither the time-padded input nor a spatially padded copy is ever built in full: each slice takes its
        input frames as a view of x (or a small concatenation with the context), so a chunk of high-resolution
        frames costs its output and a few frames more, instead of three copies of its input. One output frame
        per call gives the same values as several (the conv's arithmetic per output frame does not depend on how
        many it computes at once; the streaming tests check it) in the least memory.
        """
        k, s = self.kernel_size[0], self.stride[0]
        frames = context.shape[2] + x.shape[2]
        num_out = (frames - k) // s + 1
        if num_out <= step:  # one slice: its output is the output
            return self._slice_conv(context, x, 0, (num_out - 1) * s + k)
        out: Tensor | None = None
        for first in range(0, num_out, step):
            last = min(first + step, num_out)
            y = self._slice_conv(context, x, first * s, (last - 1) * s + k)  # (B, C_out, last - first, H', W')
            if out is None:
                out = y.new_empty(y.shape[0], y.shape[1], num_out, *y.shape[3:])  # (B, C_out, T', H', W')
            out[:, :, first:last] = y
        assert out is not None
        return out

    def _slice_conv(self, context: Tensor, x: Tensor, start: int, end: int) -> Tensor:
        """The conv over frames [start, end) of [context, x]. Large frames go in bands of output rows (see
        :mod:`vqtok.model.row_bands`: the same values, without the whole time window in one tensor). Otherwise,
        with uneven spatial padding, the frames are copied once into a zero-padded buffer (not concatenated, then
        padded: two copies of them at once)."""
        c = context.shape[2]
        kernel = (
            row_band_kernel(x, self.weight, end - start, self.stride, self.spatial_padding) if self.row_bands else None
        )
        if kernel is not None:

            def frame(i: int) -> Tensor:  # (B, C_in, H, W): frame start + i of [context, x]
                return context[:, :, start + i] if start + i < c else x[:, :, start + i - c]

            return self._conv_in_row_bands(frame, end - start, kernel)
        left, right, top, bottom = self.spatial_padding
        if left == right == top == bottom:
            return self._conv(_frames(context, x, start, end))
        B, C, _, H, W = x.shape
        padded = x.new_zeros(B, C, end - start, top + H + bottom, left + W + right)  # (B, C_in, n, H+, W+)
        for i, t in enumerate(range(start, end)):
            padded[:, :, i, top : top + H, left : left + W] = context[:, :, t] if t < c else x[:, :, t - c]
        return F.conv3d(padded, self.weight, self.bias, self.stride)

    def _conv_in_row_bands(self, frame: Callable[[int], Tensor], num_frames: int, kernel: Kernel) -> Tensor:
        """:meth:`_conv` over frame(i) (B, C_in, H, W), i < num_frames, in bands of rows (same values)."""
        stride = (self.stride[0], self.stride[1], self.stride[2])
        return conv3d_in_row_bands(frame, num_frames, self.weight, self.bias, stride, self.spatial_padding, kernel)

    def start_stream(self) -> None:
        self.streaming, self._cache = True, None

    def end_stream(self) -> None:
        self.streaming, self._cache = False, None

    def stream_state(self) -> Tensor | None:
        """What the stream carries to the next chunk (see :class:`TileStreams`)."""
        return self._cache

    def load_stream_state(self, state: Tensor | None) -> None:
        self._cache = state


def _frames(context: Tensor, x: Tensor, start: int, end: int) -> Tensor:
    """Frames [start, end) of the time concatenation [context, x], copying only when the range spans both."""
    c = context.shape[2]
    if start >= c:
        return x[:, :, start - c : end - c]
    if end <= c:
        return context[:, :, start:end]
    return torch.cat([context[:, :, start:], x[:, :, : end - c]], dim=2)


NORM_PART_BYTES = 16 << 20  # FrameGroupNorm.forward_over_input normalises this much of a frame at a time


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own: statistics never mix frames, so normalisation stays causal."""

    def forward_over_input(self, x: Tensor) -> Tensor:
        """Inference: ``forward(x)`` written over x (the caller gives x up), a few groups of one frame at a time.
        The same values: each group's statistics and scaling are computed alone either way (tested)."""
        B, C, T, H, W = x.shape
        if (
            torch.is_grad_enabled()
            or torch.is_autocast_enabled(x.device.type)  # autocast norms return float32
            or B * C * H * W * x.element_size() <= NORM_PART_BYTES  # a small frame: the plain call (and graph)
        ):
            return self.forward(x)
        per_group = C // self.num_groups
        groups = max(1, min(self.num_groups, NORM_PART_BYTES // (B * per_group * H * W * x.element_size())))
        for t in range(T):
            for g0 in range(0, self.num_groups, groups):
                g1 = min(self.num_groups, g0 + groups)
                c0, c1 = g0 * per_group, g1 * per_group
                part = x[:, c0:c1, t].contiguous()  # (B, c1 - c0, H, W): whole groups of one frame
                w = None if self.weight is None else self.weight[c0:c1]
                b = None if self.bias is None else self.bias[c0:c1]
                x[:, c0:c1, t] = F.group_norm(part, g1 - g0, w, b, self.eps)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> same shape."""
        B, C, T, H, W = x.shape
        if not torch.is_grad_enabled() and T == 1:  # one frame (a streamed piece): no copy into a new output
            return super().forward(x[:, :, 0]).unsqueeze(2)
        if not torch.is_grad_enabled():  # inference: frame by frame into one output, no frame-major copy of x
            out: Tensor | None = None
            for t in range(T):
                y = super().forward(x[:, :, t])  # (B, C, H, W), in the dtype autocast gives a norm
                if out is None:
                    out = y.new_empty(B, C, T, H, W)
                out[:, :, t] = y
            assert out is not None
            return out
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


class UpsamplingCausalConv3d(CausalConv3d):
    """A causal 3x3x3 conv of the nearest-2x spatially upsampled input, computed at the input's resolution as
    four 3x2x2 phase convs (see :mod:`vqtok.model.subpixel`): (B, C, T, H, W) -> (B, C, T', 2H, 2W). Its weight
    is the 3x3x3 conv's, and its stream keeps input frames at the low resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, spatial_padding=(1, 1, 1, 1))

    def _conv(self, x: Tensor) -> Tensor:
        _, _, _, h, w = x.shape
        left, _, top, _ = self.spatial_padding
        assert self.bias is not None  # built with a bias
        kernel, bias = phase_kernels(self.weight), phase_bias(self.bias)  # (4C, C, 3, 2, 2), (4C,)
        y = F.conv3d(x, kernel, bias, padding=(0, top, left))  # (B, 4C, n, h+1, w+1)
        return interleave_phases(y, h, w)  # (B, C, n, 2h, 2w)

    def forward_over_input(self, x: Tensor) -> Tensor:
        """The output is larger than x: a new tensor (see :meth:`CausalConv3d.forward_over_input`)."""
        return self.forward(x)

    def _conv_in_row_bands(self, frame: Callable[[int], Tensor], num_frames: int, kernel: Kernel) -> Tensor:
        if kernel != "onednn":  # the phase conv has 4x the channels: not met in vqtok's models at these sizes
            return self._conv(torch.stack([frame(i) for i in range(num_frames)], dim=2))
        assert self.bias is not None  # built with a bias
        phases, bias = phase_kernels(self.weight), phase_bias(self.bias)  # (4C, C, 3, 2, 2), (4C,)
        return upsampling_conv3d_in_row_bands(frame, num_frames, phases, bias)


class Upsample3d(nn.Module):
    """Nearest 2x upsampling then a causal 3x3x3 conv: (T, H, W) -> (T', 2H, 2W).

    With ``temporal``, each frame is doubled and the first copy of frame 0 dropped, so 1 + m frames give
    1 + 2m (in a stream, only the first chunk drops a frame) and no output frame looks at a later input.
    """

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = UpsamplingCausalConv3d(channels)  # upsamples space itself
        self.streaming = False
        self._started = False  # a stream has passed its first chunk

    def forward(self, x: Tensor) -> Tensor:
        if self.temporal:
            x = x.repeat_interleave(2, dim=2)  # (B, C, 2T, H, W): each frame twice (nearest in time)
            if not self._started:
                x = x[:, :, 1:]  # (B, C, 2T - 1, H, W): frame 0 has no past to fill in between
            self._started = self.streaming
        return self.conv(x)

    def forward_frames(self, x: Tensor) -> Iterator[Tensor]:
        """Inference in a stream: ``forward(x)``, one output frame (B, C, 1, 2H, 2W) at a time, so that a
        temporal upsampling never holds two full-resolution frames. The same values: the conv computes one output
        frame per call anyway (``CausalConv3d._sliced``), and its stream continues frame by frame alike."""
        assert self.streaming and not torch.is_grad_enabled()
        if self.temporal:
            x = x.repeat_interleave(2, dim=2)  # (B, C, 2T, H, W), at the low resolution
            if not self._started:
                x = x[:, :, 1:]
            self._started = True
        for t in range(x.shape[2]):  # a fresh stream pads with the first frame, as one call over x does
            yield self.conv(x[:, :, t : t + 1])

    def start_stream(self) -> None:
        self.streaming, self._started = True, False

    def end_stream(self) -> None:
        self.streaming, self._started = False, False

    def stream_state(self) -> bool:
        """What the stream carries to the next chunk (see :class:`TileStreams`)."""
        return self._started

    def load_stream_state(self, state: bool) -> None:
        self._started = state


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


class TileStreams:
    """Separate streams for spatial tiles of one video: each tile's convolutions continue from that tile's own
    previous chunk. Call :meth:`switch` before running a tile, inside ``with streaming(module):``."""

    def __init__(self, module: nn.Module) -> None:
        self.parts = [m for m in module.modules() if isinstance(m, (CausalConv3d, Upsample3d))]
        self.saved: dict[int, list[Tensor | bool | None]] = {}
        self.current: int | None = None

    def switch(self, tile: int) -> None:
        """Save the running tile's stream state and load ``tile``'s (a fresh stream the first time)."""
        if self.current is not None:
            self.saved[self.current] = [m.stream_state() for m in self.parts]
        fresh = [None if isinstance(m, CausalConv3d) else False for m in self.parts]
        for m, state in zip(self.parts, self.saved.get(tile, fresh), strict=True):
            if isinstance(m, Upsample3d):
                assert isinstance(state, bool)
                m.load_stream_state(state)
            else:
                assert not isinstance(state, bool)
                m.load_stream_state(state)
        self.current = tile
