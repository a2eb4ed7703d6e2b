"""Nearest 2x upsampling followed by a 3x3 conv, computed at the input's resolution.

Output pixel (2i+a, 2j+b) of "upsample, then convolve" sees only input rows i-1..i+1 and columns j-1..j+1, and
several kernel taps land on the same input pixel. Summing those taps turns the 3x3 kernel into four 2x2 kernels,
one per output phase (a, b): 16 taps at the low resolution instead of 9 at four times as many pixels (2.25x fewer
FLOPs), and the 4x-sized upsampled input is never built. Phase a of a row reads input rows i-1+a and i+a, so with
one pixel of zero padding its outputs start a rows down.
"""

from __future__ import annotations

import torch
from torch import Tensor

# _PHASE_TAPS[a, r, k] = 1 if 3x3 kernel row k lands on input row i-1+a+r for output row 2i+a: phase 0 sees row
# i-1 (k=0) and row i (k=1, 2); phase 1 sees row i (k=0, 1) and row i+1 (k=2).
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # (2, 2, 3)


def phase_kernels(weight: Tensor) -> Tensor:
    """A conv weight (O, I, [kt,] 3, 3) -> the four phase kernels stacked (4 * O, I, [kt,] 2, 2), phase 2a + b."""
    taps = _PHASE_TAPS.to(weight)
    if weight.ndim == 4:
        kernel = torch.einsum("ark,oikl,bsl->aboirs", taps, weight, taps)  # (2, 2, O, I, 2, 2)
    else:
        kernel = torch.einsum("ark,oitkl,bsl->aboitrs", taps, weight, taps)  # (2, 2, O, I, kt, 2, 2)
    return kernel.reshape(4 * weight.shape[0], *kernel.shape[3:])


def phase_bias(bias: Tensor) -> Tensor:
    """(O,) -> (4 * O,): every phase has the conv's bias."""
    return bias.repeat(4)


def interleave_phases(y: Tensor, h: int, w: int, channels_last: bool = False) -> Tensor:
    """The phase convs' output, zero-padded by one pixel, (B, 4C, *lead, h+1, w+1) -> the upsampled result
    (B, C, *lead, 2h, 2w): output (2i+a, 2j+b) is phase 2a+b at (i+a, j+b). ``channels_last`` (4-D only)
    assembles it channels-last in memory, as a channels-last model wants it; otherwise contiguous."""
    B, C = y.shape[0], y.shape[1] // 4
    if channels_last:
        phases = y.permute(0, 2, 3, 1)  # (B, h+1, w+1, 4C)
        out = y.new_empty(B, h, 2, w, 2, C)  # (B, h, a, w, b, C)
        for a in (0, 1):
            for b in (0, 1):
                p = 2 * a + b
                out[:, :, a, :, b] = phases[:, a : a + h, b : b + w, p * C : (p + 1) * C]
        return out.reshape(B, 2 * h, 2 * w, C).permute(0, 3, 1, 2)
    lead = y.shape[2:-2]
    out = y.new_empty(B, C, *lead, h, 2, w, 2)  # (B, C, *lead, h, a, w, b)
    for a in (0, 1):
        for b in (0, 1):
            p = 2 * a + b
            out[..., a, :, b] = y[:, p * C : (p + 1) * C, ..., a : a + h, b : b + w]
    return out.reshape(B, C, *lead, 2 * h, 2 * w)
