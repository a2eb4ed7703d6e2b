"""A large causal conv in inference, computed in bands of output rows: bit-identical to one call, in a fraction
of its memory.

One ``F.conv3d`` over frames of 720p activations needs its whole time window as one tensor (context frames and
new ones concatenated: three frames of its input), and then a working copy as large or larger: oneDNN reorders
its input into a blocked layout, and the native kernel unfolds it into columns, k**3 times the input (0.3 GB for
the 3-channel input conv of one 720p frame). All of it is only ever needed a band at a time: output rows
``[o0, o1)`` read padded input rows ``[o0*s, (o1-1)*s + k)``. So each band's input rows (with zeros where the
band meets the padding) go into a small buffer, and the convolution runs on that.

Bit-identity. ``F.conv3d`` picks its CPU kernel from the input's shape: oneDNN's (``torch.mkldnn_convolution``)
for large inputs, a native im2col + GEMM kernel below a size threshold (batch x channels x frames x rows <= 20480
at batch 1, float32). The two round differently, so every band must run the kernel the whole call would have run:
a band of a large input calls oneDNN's convolution directly (a band may itself be under the threshold), and a
band of a small one calls ``F.conv3d``, which stays with the native kernel for the smaller band. oneDNN's
arithmetic for an output pixel does not depend on how many rows the call has, nor does the native kernel's for a
stride-1, evenly padded conv (it does for a strided one, which therefore runs in one call). 1x1 convs (a
ResNet block's skip) go in bands in bf16 only: oneDNN's float32 1x1 conv rounds differently in bands of most
sizes. The tests check every case against one ``F.conv3d`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.model.subpixel import interleave_phases

Kernel = Literal["onednn", "native"]

# A band's working buffer (its input, or its columns for the native kernel). Every band is one parallel region
# of the conv: on a busy machine many small bands cost more in thread barriers than they save (6 MB bands ran
# 4-10x slower than one call there, 32 MB ones 1.0-1.8x), so bands are few, at some 50 MB more peak memory.
BAND_BYTES = 32 * 2**20
MIN_WORK_BYTES = 64 * 2**20  # convs whose whole working buffer is smaller run in one call, as before
_NATIVE_KERNEL_MAX = 20480  # F.conv3d uses its native kernel at batch 1 in float32 when N * C * T * H is at most this


def row_band_kernel(
    x: Tensor, weight: Tensor, time_window: int, stride: tuple[int, ...], padding: tuple[int, int, int, int]
) -> Kernel | None:
    """The kernel a conv with ``weight`` (O, I, k, k, k) over ``time_window`` frames of ``x`` (B, C, T, H, W),
    spatial ``padding`` (left, right, top, bottom), would run as one ``F.conv3d`` call, when running it in row
    bands is worth it and gives exactly that call's values; else None (see the module docstring)."""
    B, C, _, H, W = x.shape
    left, right, top, bottom = padding
    rows_seen = H if left == right == top == bottom else top + H + bottom  # the height F.conv3d is given
    if (
        torch.is_grad_enabled()
        or x.device.type != "cpu"
        or x.dtype != weight.dtype
        or _channels_last(x)
        or _channels_last(weight)
        or not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
        or (weight.shape[-1] == 1 and x.dtype != torch.bfloat16)  # float32 1x1 bands round differently
        or weight.shape[-1] != weight.shape[-2]
        or weight.shape[-1] > 3  # F.conv3d's choice differs for large kernels; vqtok's convs are 3x3x3
        or H // stride[1] < 2
    ):
        return None
    work = B * C * time_window * H * W * x.element_size()  # the time window's input
    if x.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        kernel: Kernel = "onednn"  # F.conv3d always takes oneDNN for bf16 where oneDNN supports it
    elif x.dtype != torch.float32:
        return None
    elif B == 1 and C * time_window * rows_seen <= _NATIVE_KERNEL_MAX:
        if tuple(stride) != (1, 1, 1) or not left == right == top == bottom:
            return None  # strided or unevenly padded, the native kernel's bands round differently
        kernel, work = "native", work * weight[0, 0].numel()  # columns: k**3 values per input value
    else:
        kernel = "onednn"
    return kernel if work >= MIN_WORK_BYTES else None


def _channels_last(t: Tensor) -> bool:
    """Whether F.conv3d would run ``t`` channels-last (another oneDNN layout than the bands' contiguous buffers)."""
    return t.is_contiguous(memory_format=torch.channels_last_3d) and not t.is_contiguous()


def conv3d_in_row_bands(
    frame: Callable[[int], Tensor],
    num_frames: int,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int, int],
    padding: tuple[int, int, int, int],
    kernel: Kernel = "onednn",
    over: Tensor | None = None,
    before_overwrite: Callable[[int, int], None] | None = None,
) -> Tensor:
    """The conv over ``num_frames`` input frames, frame(i) -> (B, C, H, W), zero-padded in space by ``padding``
    (left, right, top, bottom), with no padding in time: -> (B, O, (num_frames - k_t) // s_t + 1, H', W').

    Equal, bit for bit, to ``F.conv3d(F.pad(frames, padding), weight, bias, stride)`` with ``kernel`` the one
    :func:`row_band_kernel` names.

    ``over``: a tensor shaped as the output that the frames are (partly) views of, to write the output into
    instead of a new tensor (a size-preserving, stride-1 conv). A band's output rows are written only once no later
    band reads those input rows; ``before_overwrite(r0, r1)`` is called first, to save what else is needed of
    input rows [r0, r1) (a stream's last frames).
    """
    left, right, top, bottom = padding
    first = frame(0)
    B, _, H, W = first.shape
    kt, kh, kw = weight.shape[2:]
    st, sh, sw = stride
    out_t = (num_frames - kt) // st + 1
    out_h = (top + H + bottom - kh) // sh + 1
    out_w = (left + W + right - kw) // sw + 1
    columns = weight[0, 0].numel() if kernel == "native" else 1  # working bytes per input byte
    rows = _rows_per_band(first, num_frames, padding, kh, sh, columns)
    if over is None:
        out = first.new_empty(B, weight.shape[0], out_t, out_h, out_w)
    else:
        assert over.shape == (B, weight.shape[0], out_t, H, W) and (sh, sw) == (1, 1) and top == (kh - 1) // 2
        out = over
    pending: tuple[int, Tensor] | None = None  # output rows not written yet (when writing over the input)
    free = 0  # input rows below this are read by no band any more
    for o0 in range(0, out_h, rows):
        o1 = min(out_h, o0 + rows)
        band, pad_w = _band(frame, num_frames, o0 * sh, (o1 - 1) * sh + kh, padding)
        if kernel == "native":  # the band is smaller than the whole: F.conv3d keeps the native kernel
            y = F.conv3d(band, weight, bias, stride, (0, 0, pad_w))
        else:
            y = torch.mkldnn_convolution(band, weight, bias, (0, 0, pad_w), stride, (1, 1, 1), 1)
        del band
        if over is None:
            out[:, :, :, o0:o1] = y
            continue
        read_next = H if o1 == out_h else o1 * sh - top  # the first input row the next band reads
        if before_overwrite is not None and read_next > free:
            before_overwrite(free, read_next)
        free = read_next
        if pending is not None:  # the previous band's rows, all below this band's last row
            out[:, :, :, pending[0] : pending[0] + pending[1].shape[3]] = pending[1]
        pending = (o0, y)
    if pending is not None:
        out[:, :, :, pending[0] :] = pending[1]
    return out


def upsampling_conv3d_in_row_bands(
    frame: Callable[[int], Tensor], num_frames: int, phase_weight: Tensor, phase_bias: Tensor
) -> Tensor:
    """:class:`vqtok.model.causal.UpsamplingCausalConv3d`'s conv (nearest 2x, then a causal 3x3x3 conv, as four
    phase convs, see :mod:`vqtok.model.subpixel`) over frame(i) -> (B, C, h, w), in bands of output rows:
    -> (B, C, num_frames - k_t + 1, 2h, 2w), equal bit for bit to the phase conv over the whole frames, where
    that conv runs oneDNN's kernel.

    ``phase_weight`` (4C, C, k_t, 2, 2) and ``phase_bias`` (4C,) come from :func:`vqtok.model.subpixel.phase_kernels`
    and ``phase_bias``. Output rows 2i and 2i+1 read phase rows i and i+1, which read input rows i-1..i+1: a band
    of output rows [2 i0, 2 i1) is the interleave of phase rows [i0, i1], from padded input rows [i0, i1 + 2).
    """
    first = frame(0)
    B, C, h, w = first.shape
    padding = (1, 1, 1, 1)
    rows = _rows_per_band(first, num_frames, padding, 2, 1) - 1
    out_t = num_frames - phase_weight.shape[2] + 1
    out = first.new_empty(B, C, out_t, 2 * h, 2 * w)
    for i0 in range(0, h, max(1, rows)):
        i1 = min(h, i0 + max(1, rows))
        band, pad_w = _band(frame, num_frames, i0, i1 + 2, padding)
        y = torch.mkldnn_convolution(band, phase_weight, phase_bias, (0, 0, pad_w), (1, 1, 1), (1, 1, 1), 1)
        out[:, :, :, 2 * i0 : 2 * i1] = interleave_phases(y, i1 - i0, w)  # y: (B, 4C, n, i1 - i0 + 1, w + 1)
    return out


def _rows_per_band(
    first: Tensor, num_frames: int, padding: tuple[int, int, int, int], kh: int, sh: int, columns: int = 1
) -> int:
    """Output rows per band so that a band's working buffer (its input, times ``columns``) is about
    :data:`BAND_BYTES`."""
    B, C, _, W = first.shape
    left, right = padding[:2]
    width = W if left == right else left + W + right
    row_bytes = B * C * num_frames * width * first.element_size() * columns
    return max(1, (BAND_BYTES // row_bytes - kh) // sh + 1)


def _band(
    frame: Callable[[int], Tensor], num_frames: int, p0: int, p1: int, padding: tuple[int, int, int, int]
) -> tuple[Tensor, int]:
    """Padded rows [p0, p1) of every frame, -> (band (B, C, num_frames, p1 - p0, W'), width padding left to the
    conv). Rows of the padding are zeros; the width padding is written in too when it is uneven (W' = W + left +
    right), and otherwise left to oneDNN, as F.conv3d does (W' = W)."""
    left, right, top, _ = padding
    first = frame(0)
    B, C, H, W = first.shape
    pad_w, col, width = (left, 0, W) if left == right else (0, left, left + W + right)
    r0, r1 = max(0, p0 - top), min(H, p1 - top)  # the real rows among them
    band = first.new_zeros(B, C, num_frames, p1 - p0, width)
    for i in range(num_frames):
        band[:, :, i, r0 + top - p0 : r1 + top - p0, col : col + W] = frame(i)[:, :, r0:r1]
    return band, pad_w
