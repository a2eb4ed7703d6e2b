"""Vector quantizer (VQ): nearest-code lookup in fp32, straight-through gradients, EMA or learned codebooks.

Notation: z are encoder outputs with D channels, K is the codebook size, N the number of vectors in a batch
(B times the number of grid positions). Codebook statistics are synchronised across torch.distributed ranks so
every rank always holds the identical codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model import distributed as dist_utils
from vqtok.model.quantizers.base import Quantizer, straight_through

MAX_DISTANCE_BYTES = 2**26  # 1024 rows of 16384 codes; the ids do not depend on it (tested); more is no faster


def nearest_codes(z: Tensor, codebook: Tensor, max_distance_bytes: int = MAX_DISTANCE_BYTES) -> Tensor:
    """Index of the nearest code (squared l2) for each row of z, in fp32, in chunks of bounded memory.

    Args:
        z: (N, D) float vectors.
        codebook: (K, D) float codes.
        max_distance_bytes: upper bound on the size of one (n, K) block of distances.

    Returns:
        (N,) int64 ids. ||z||^2 is dropped from the distance since it does not change the argmin.
    """
    with torch.autocast(z.device.type, enabled=False):
        z, codebook = z.float(), codebook.float()
        e_sq = codebook.pow(2).sum(dim=1)  # (K,)
        chunk = max(1, max_distance_bytes // (4 * codebook.shape[0]))
        ids = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], chunk):
            d = torch.addmm(e_sq, z[start : start + chunk], codebook.t(), alpha=-2.0)  # (n, K) = ||e||^2 - 2 z.e
            ids[start : start + chunk] = d.argmin(dim=1)
        return ids


def _identity(x: Tensor) -> Tensor:
    return x


def _l2_normalize(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1)


class VectorQuantizer(Quantizer):
    """Maps each D-dim vector to the nearest of K codes.

    Args:
        num_codes: codebook size K.
        code_dim: dimension D of each code.
        l2_normalize: look codes up by cosine similarity (vectors and codes l2-normalised).
        codebook: "ema" (codes are EMA means of their assigned vectors, no gradient) or "learned"
            (codes are a parameter trained by the codebook loss ||sg(z) - e||^2).
        decay: EMA decay for cluster sizes and sums (and for usage tracking of learned codebooks).
        commitment_weight: beta in beta * ||z - sg(e)||^2.
        dead_code_threshold: a code whose EMA usage falls below this fraction of an even share (N/K
            assignments per step) is re-seeded from the current batch's vectors. 0 disables restarts.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations for that initialisation.
        eps: Laplace smoothing constant for EMA cluster sizes.
    """

    embed: Tensor  # (K, D) buffer (EMA codebook) or nn.Parameter (learned codebook)
    embed_sum: Tensor  # (K, D) buffer, EMA codebooks only
    cluster_size: Tensor  # (K,) buffer
    initialized: Tensor  # () bool buffer

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        l2_normalize: bool = False,
        codebook: str = "ema",
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        dead_code_threshold: float = 0.1,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(num_codes, code_dim)
        if codebook not in ("ema", "learned"):
            raise ValueError(f"codebook must be 'ema' or 'learned', got {codebook!r}")
        self.num_codes = num_codes
        self.decay, self.eps = decay, eps
        self.commitment_weight = commitment_weight
        self.dead_code_threshold = dead_code_threshold
        self.kmeans_iters = kmeans_iters
        self.normalize = _l2_normalize if l2_normalize else _identity
        self.uses_ema = codebook == "ema"

        embed = self.normalize(torch.randn(num_codes, code_dim))  # (K, D)
        if self.uses_ema:
            self.register_buffer("embed", embed)
            self.register_buffer("embed_sum", torch.zeros(num_codes, code_dim))  # (K, D) EMA of assigned sums
        else:
            self.embed = nn.Parameter(embed)
        # EMA of assignments per step. Starting at 0 makes every code unused at the first step, so restarts seed
        # the codebook from the first batch; codes with no assignments yet keep their initial vector.
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    def codebook(self) -> Tensor:
        """(K, D) fp32 codes as used in the lookup."""
        return self.normalize(self.embed.float())

    def indices_to_codes(self, ids: Tensor) -> Tensor:
        """(B, *S) int ids -> (B, D, *S) fp32 code vectors (what the decoder receives)."""
        return F.embedding(ids, self.codebook()).movedim(-1, 1)

    def identity_tensors(self) -> dict[str, Tensor]:
        return {"embed": self.embed}

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z (N, D) fp32 -> nearest codes (straight-through), ids, commitment (+ codebook) loss, dead codes."""
        z = self.normalize(z)
        update = self.training and _all_finite(z)  # a non-finite batch must not reach the codebook
        if update and not bool(self.initialized):
            self._kmeans_init(z.detach())
        codebook = self.codebook()  # (K, D)
        ids = nearest_codes(z.detach(), codebook.detach())  # (N,)
        e = F.embedding(ids, codebook)  # (N, D); carries the gradient to a learned codebook
        num_dead = torch.zeros((), device=z.device)
        if update:
            counts = dist_utils.all_reduce_sum(torch.bincount(ids, minlength=self.num_codes).float())  # (K,)
            num_dead = self._update_codebook(z.detach(), ids, counts)
        loss = self.commitment_weight * F.mse_loss(z, e.detach())
        if not self.uses_ema:
            loss = loss + F.mse_loss(e, z.detach())
        return straight_through(z, e), ids, loss, num_dead

    @torch.no_grad()
    def _update_codebook(self, z: Tensor, ids: Tensor, counts: Tensor) -> Tensor:
        """EMA statistics (and codes, for EMA codebooks), then dead-code restart. Returns the dead count."""
        self.cluster_size.lerp_(counts, 1 - self.decay)
        if self.uses_ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, ids, z)  # (K, D)
            self.embed_sum.lerp_(dist_utils.all_reduce_sum(sums), 1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace
            seen = (self.cluster_size > 0).unsqueeze(1)  # codes never assigned keep their vector
            self.embed.copy_(torch.where(seen, self.normalize(self.embed_sum / smoothed.unsqueeze(1)), self.embed))
        return self._restart_dead_codes(z)

    @torch.no_grad()
    def _restart_dead_codes(self, z: Tensor) -> Tensor:
        """Re-seed codes whose usage fell below the threshold with vectors of this batch (rank 0's, broadcast).

        A re-seeded code gets an even share of usage, so it has the EMA horizon to win assignments."""
        even_share = self.cluster_size.sum() / self.num_codes  # EMA of N / K
        dead = self.cluster_size < self.dead_code_threshold * even_share  # (K,) identical on all ranks
        num_dead = int(dead.sum())
        if num_dead:
            picks = torch.randint(z.shape[0], (num_dead,), generator=self.generator).to(z.device)
            seeds = dist_utils.broadcast(z[picks].contiguous())  # (num_dead, D)
            self.embed.data[dead] = seeds.to(self.embed.dtype)
            self.cluster_size[dead] = even_share
            if self.uses_ema:
                self.embed_sum[dead] = seeds * even_share
        return torch.tensor(float(num_dead), device=z.device)

    @torch.no_grad()
    def _kmeans_init(self, z: Tensor) -> None:
        """Lloyd's k-means over every rank's vectors (sums all-reduced), started from rank 0's samples."""
        n = z.shape[0]
        if n >= self.num_codes:
            picks = torch.randperm(n, generator=self.generator)[: self.num_codes].to(z.device)
        else:
            picks = torch.randint(n, (self.num_codes,), generator=self.generator).to(z.device)
        centroids = dist_utils.broadcast(z[picks].contiguous())  # (K, D)
        counts = torch.zeros(self.num_codes, device=z.device)
        for _ in range(self.kmeans_iters):
            ids = nearest_codes(z, centroids)
            counts = dist_utils.all_reduce_sum(torch.bincount(ids, minlength=self.num_codes).float())
            sums = dist_utils.all_reduce_sum(torch.zeros_like(centroids).index_add_(0, ids, z))
            means = self.normalize(sums / counts.clamp(min=1).unsqueeze(1))
            centroids = torch.where(counts.unsqueeze(1) > 0, means, centroids)
        self.embed.data.copy_(centroids.to(self.embed.dtype))
        self.cluster_size.copy_(counts)  # empty clusters count as dead and are re-seeded at once
        if self.uses_ema:
            self.embed_sum.copy_(centroids * self.cluster_size.unsqueeze(1))
        self.initialized.fill_(True)


def _all_finite(z: Tensor) -> bool:
    """Whether z is finite on every rank (the ranks must agree before updating the shared codebook)."""
    bad = torch.tensor(0.0 if bool(torch.isfinite(z).all()) else 1.0, device=z.device)
    return float(dist_utils.all_reduce_sum(bad)) == 0
