"""Transformer parts of the priors: rotary positions over (t, y, x), attention through SDPA (or FlashAttention's
variable-length kernel, :mod:`vqtok.prior.varlen`), SwiGLU blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.prior.varlen import VarlenSegments


def block_causal_mask(doc: Tensor) -> Tensor:
    """The attention mask of packed sequences: position q sees position k when both belong to one item and k <= q.

    Args:
        doc: int64 (B, L), the item each position belongs to (as :class:`vqtok.store.PackedItems` gives it; padding
            is -1, and padding positions see the padding before them, so no row of the mask is empty).

    Returns:
        bool (B, 1, L, L), True where attention is allowed (the ``attn_mask`` of scaled_dot_product_attention).
    """
    L = doc.shape[1]
    same = doc[:, :, None] == doc[:, None, :]  # (B, L, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=doc.device).tril()  # (L, L)
    return (same & causal)[:, None]  # (B, 1, L, L)


class Rotary3d(nn.Module):
    """Rotary position embedding over three axes (t, y, x): the head's channel pairs are split between the axes
    (a quarter to t, the rest halved between y and x), each pair turned by ``coord * frequency``. Attention scores
    then depend on the offsets between positions only, for grids of any size, images (t = 0) and videos alike.
    """

    freqs: Tensor  # (pairs,) float32
    axis: Tensor  # (pairs,) int64

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        pairs = head_dim // 2
        t_pairs = pairs // 4
        y_pairs = (pairs - t_pairs) // 2
        counts = (t_pairs, y_pairs, pairs - t_pairs - y_pairs)  # channel pairs per axis (t, y, x)
        freqs = [base ** (-torch.arange(n, dtype=torch.float64) / max(n, 1)) for n in counts]
        axis = torch.cat([torch.full((n,), a) for a, n in enumerate(counts)])  # (pairs,) the axis each pair turns on
        self.register_buffer("freqs", torch.cat(freqs).float(), persistent=False)  # (pairs,)
        self.register_buffer("axis", axis.long(), persistent=False)  # (pairs,)

    def forward(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """coords int64 (B, L, 3) -> (cos, sin), each float32 (B, 1, L, head_dim / 2)."""
        angles = coords[..., self.axis].float() * self.freqs  # (B, L, pairs)
        return angles.cos()[:, None], angles.sin()[:, None]


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, H, L, head_dim), turned pairwise: channel i pairs with channel i + head_dim / 2."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, L, head_dim / 2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


@dataclass
class LayerCache:
    """Keys and values of the positions generated so far, for one block (sampling with a KV cache)."""

    k: Tensor  # (B, H, N, head_dim), filled up to `length`
    v: Tensor  # (B, H, N, head_dim)
    length: int = 0


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        cache: LayerCache | None = None,
        segments: VarlenSegments | None = None,
    ) -> Tensor:
        """x (B, L, dim) -> (B, L, dim). With ``cache`` the L new positions attend to the cached ones and themselves
        (all of one item: causal among the new ones when ``mask`` says so). With ``segments`` (packed training
        batches on CUDA with flash-attn) attention runs within the segments through their kernel, and ``mask`` is
        None."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            end = cache.length + L
            cache.k[:, :, cache.length : end] = k
            cache.v[:, :, cache.length : end] = v
            cache.length = end
            k, v = cache.k[:, :, :end], cache.v[:, :, :end]  # (B, H, end, hd)
        p = self.dropout if self.training else 0.0
        if segments is not None:
            y = segments.attend(q, k, v, p)  # (B, H, L, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, L, hd)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + SwiGLU(norm(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        cache: LayerCache | None = None,
        segments: VarlenSegments | None = None,
    ) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, mask, cache, segments))
        return x + self.drop(self.mlp(self.norm2(x)))
