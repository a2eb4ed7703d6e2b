"""The quantizer seam: what every quantizer (VQ, FSQ, LFQ) gives the rest of vqtok.

The model, the facade, the export, training and video inflation use only this interface, so adding a quantizer
is a file of its own plus one registry entry (:mod:`vqtok.model.quantizers`). Notation: z are encoder outputs
(B, D, *S) with D channels and S the grid (h, w) or (t, h, w); K is the codebook size; N the number of vectors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vqtok.model import distributed as dist_utils


@dataclass
class QuantizerOutput:
    """What a quantizer's forward returns."""

    z_q: Tensor  # (B, D, *S) fp32: quantized vectors, straight-through gradient to z
    ids: Tensor  # (B, *S) int64 in [0, K)
    loss: Tensor  # () fp32: the quantizer's own training loss (commitment, codebook, entropy terms), 0 if none
    usage: Tensor  # () fraction of the K codes used in this batch (over all ranks in training)
    perplexity: Tensor  # () exp(entropy) of the batch's code histogram
    num_dead: Tensor  # () codes re-seeded in this step (0 for quantizers without restarts, and outside training)


class Quantizer(nn.Module, ABC):
    """Maps (B, D, *S) vectors to ids in [0, K) and ids back to code vectors.

    Subclasses implement :meth:`quantize` and :meth:`indices_to_codes`; this base keeps the per-epoch code
    histogram (all-reduced across DDP ranks, so usage figures cover the implicit codebooks of FSQ and LFQ too) and
    a private random generator whose state a training checkpoint keeps.
    """

    epoch_counts: Tensor  # (K,) buffer

    def __init__(self, codebook_size: int, code_dim: int) -> None:
        super().__init__()
        self.codebook_size = codebook_size  # K
        self.code_dim = code_dim  # D
        self.register_buffer("epoch_counts", torch.zeros(codebook_size), persistent=False)  # (K,)
        # Seeded from torch's initial seed (which seed_everything sets); never the global generator, so a resumed
        # run draws what the uninterrupted one drew.
        self.generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)

    @abstractmethod
    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z (N, D) fp32 -> (z_q (N, D) with straight-through gradient, ids (N,) int64, loss (), num_dead ())."""

    @abstractmethod
    def indices_to_codes(self, ids: Tensor) -> Tensor:
        """(B, *S) int ids -> (B, D, *S) fp32 code vectors (what the decoder receives)."""

    def identity_tensors(self) -> dict[str, Tensor]:
        """Tensors besides the config that decide which code an id means (a learned codebook); empty for implicit
        codebooks. Exports keep them in float32 and fingerprints hash them."""
        return {}

    def synchronized_tensors(self) -> dict[str, Tensor]:
        """Tensors every DDP rank must hold identically (the quantizer all-reduces what updates them)."""
        return self.identity_tensors()

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize z (B, D, *S); the lookup and losses run in fp32 whatever the autocast state."""
        with torch.autocast(z.device.type, enabled=False):
            z_flat = z.float().movedim(1, -1).reshape(-1, self.code_dim)  # (N, D)
            z_q, ids, loss, num_dead = self.quantize(z_flat)
            counts = torch.bincount(ids, minlength=self.codebook_size).float()  # (K,)
            if self.training:
                counts = dist_utils.all_reduce_sum(counts)
                self.epoch_counts += counts
        out_shape = (z.shape[0], *z.shape[2:])
        return QuantizerOutput(
            z_q=z_q.reshape(*out_shape, self.code_dim).movedim(-1, 1),  # (B, D, *S)
            ids=ids.reshape(out_shape),  # (B, *S)
            loss=loss,
            usage=(counts > 0).float().mean(),
            perplexity=perplexity(counts),
            num_dead=num_dead,
        )

    def epoch_stats(self) -> dict[str, Tensor]:
        """Usage fraction and perplexity of the codes assigned since the last :meth:`reset_epoch_stats`."""
        return {"usage": (self.epoch_counts > 0).float().mean(), "perplexity": perplexity(self.epoch_counts)}

    def reset_epoch_stats(self) -> None:
        self.epoch_counts.zero_()


def straight_through(z: Tensor, z_q: Tensor) -> Tensor:
    """Forward ``z_q``, backward the identity to ``z``."""
    return z + (z_q - z).detach()


def perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of a histogram of code assignments: K for uniform use, 1 for a single code."""
    p = counts / counts.sum().clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())
