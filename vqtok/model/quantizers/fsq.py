"""Finite scalar quantization (FSQ; Mentzer et al. 2023, as in NVIDIA Cosmos): each of D channels is bounded and
rounded to one of L_d levels, so the codebook is the implicit grid of prod(L_d) points (e.g. levels
[8, 8, 8, 5, 5, 5] give 64000 codes). Nothing is learned, no code can die, and there is no auxiliary loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vqtok.model.quantizers.base import Quantizer, straight_through

_EPS = 1e-3  # keeps tanh's bound a little inside the outer levels, so they are reachable


class FiniteScalarQuantizer(Quantizer):
    """z (N, D) -> per channel d one of ``levels[d]`` values in [-1, 1]; id = mixed-radix number of the levels.

    Args:
        levels: number of levels per channel (D = len(levels)); each at least 2.
    """

    _levels: Tensor  # (D,) buffer
    _half_width: Tensor  # (D,) buffer
    _basis: Tensor  # (D,) buffer

    def __init__(self, levels: list[int]) -> None:
        super().__init__(math.prod(levels), len(levels))
        self.levels = list(levels)
        L = torch.tensor(levels, dtype=torch.float64)
        # Buffers derived from the config alone: not saved (non-persistent), rebuilt identically at load.
        self.register_buffer("_levels", L.float(), persistent=False)  # (D,)
        self.register_buffer("_half_width", (L // 2).float(), persistent=False)  # (D,) integer levels go -hw..hw
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.long), 0)  # (D,) mixed-radix place values
        self.register_buffer("_basis", basis, persistent=False)

    def bound(self, z: Tensor) -> Tensor:
        """(N, D) -> values in (-(L-1)/2, (L-1)/2) shifted so that rounding gives exactly L integers per channel."""
        half_l = (self._levels - 1) * (1 + _EPS) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        bounded = self.bound(z)  # (N, D)
        rounded = straight_through(bounded, bounded.round())  # integers in [-hw, hw] (even L: [-hw, hw - 1])
        z_q = rounded / self._half_width  # (N, D) in [-1, 1]
        ids = ((rounded.detach() + self._half_width).long() * self._basis).sum(dim=-1)  # (N,)
        zero = torch.zeros((), device=z.device)
        return z_q, ids, zero, zero

    def indices_to_codes(self, ids: Tensor) -> Tensor:
        digits = (ids.unsqueeze(-1) // self._basis) % self._levels.long()  # (B, *S, D) level index per channel
        codes = (digits.float() - self._half_width) / self._half_width  # (B, *S, D) in [-1, 1]
        return codes.movedim(-1, 1)
