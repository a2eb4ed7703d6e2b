"""Lookup-free quantization (LFQ; MAGVIT-v2, Open-MAGVIT2): each of K channels is quantized to its sign, so the
codebook is the implicit set of 2^K corners of {-1, 1}^K and an id is the K-bit number of the positive channels.

Training adds an entropy loss that makes each vector's code confident (low per-sample entropy) while the batch
spreads over the codebook (high codebook entropy). Over 2^K codes that entropy cannot be computed directly for
K = 18, so, as in Open-MAGVIT2, the K bits are split into groups of at most ``group_bits`` bits and the entropies
of the groups (each a small sub-codebook) are summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.model.quantizers.base import Quantizer, straight_through


class LookupFreeQuantizer(Quantizer):
    """z (N, K) -> sign(z) in {-1, 1}^K (0 counts as +1); id = sum_k [z_k > 0] 2^k.

    Args:
        bits: K, the number of channels; 2^K codes.
        commitment_weight: weight of ||z - sg(sign(z))||^2.
        entropy_weight: weight of the entropy loss (0 disables it).
        diversity_weight: how much the codebook entropy counts against the per-sample entropy.
        temperature: softmax temperature of the code probabilities in the entropy loss.
        group_bits: the largest sub-codebook the entropy is computed over is 2^group_bits codes.
    """

    _powers: Tensor  # (K,) buffer

    def __init__(
        self,
        bits: int,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.1,
        diversity_weight: float = 1.0,
        temperature: float = 0.01,
        group_bits: int = 9,
    ) -> None:
        super().__init__(2**bits, bits)
        self.commitment_weight = commitment_weight
        self.entropy_weight = entropy_weight
        self.diversity_weight = diversity_weight
        self.temperature = temperature
        self.register_buffer("_powers", 2 ** torch.arange(bits), persistent=False)  # (K,)
        groups = [min(group_bits, bits - start) for start in range(0, bits, group_bits)]
        # The codes of each group: (2^g, g) corners in {-1, 1}, for g bits.
        self._group_sizes = groups
        for i, g in enumerate(groups):
            self.register_buffer(f"_group_codes{i}", _corners(g), persistent=False)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        positive = z > 0  # (N, K)
        codes = torch.where(positive, 1.0, -1.0)
        ids = (positive.long() * self._powers).sum(dim=-1)  # (N,)
        loss = self.commitment_weight * F.mse_loss(z, codes)
        if self.training and self.entropy_weight > 0:
            loss = loss + self.entropy_weight * self._entropy_loss(z)
        zero = torch.zeros((), device=z.device)
        return straight_through(z, codes), ids, loss, zero

    def _entropy_loss(self, z: Tensor) -> Tensor:
        """Sum over bit groups of (mean per-sample entropy - diversity_weight * entropy of the mean)."""
        total = z.new_zeros(())
        start = 0
        for i, g in enumerate(self._group_sizes):
            group_codes = getattr(self, f"_group_codes{i}")  # (2^g, g)
            logits = 2 * z[:, start : start + g] @ group_codes.t() / self.temperature  # (N, 2^g): -||z-c||^2 + const
            p = logits.softmax(dim=-1)
            log_p = logits.log_softmax(dim=-1)
            per_sample = -(p * log_p).sum(dim=-1).mean()
            mean_p = p.mean(dim=0)
            codebook = -(mean_p * mean_p.clamp(min=1e-12).log()).sum()
            total = total + per_sample - self.diversity_weight * codebook
            start += g
        return total

    def indices_to_codes(self, ids: Tensor) -> Tensor:
        bits = (ids.unsqueeze(-1) // self._powers) % 2  # (B, *S, K)
        return (bits.float() * 2 - 1).movedim(-1, 1)


def _corners(bits: int) -> Tensor:
    """(2^bits, bits) float: row j is j's bits (least significant first) mapped to {-1, 1}."""
    j = torch.arange(2**bits).unsqueeze(-1)
    return ((j // 2 ** torch.arange(bits)) % 2).float() * 2 - 1
