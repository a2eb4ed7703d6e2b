"""Packed sequences as variable-length attention batches (FlashAttention's ``flash_attn_varlen_func``).

A packed batch (``doc`` int64 (B, L), the item of each position, -1 for padding) is a list of segments: the runs of
equal ``doc`` within each row, rows taken one after another. Attention restricted to segments (causal for the AR
prior, bidirectional for MaskGIT) is what the dense block-diagonal masks of :mod:`vqtok.prior.layers` and
:mod:`vqtok.prior.masked` give, provided each item's positions are contiguous in its row, as
:class:`vqtok.store.PackedItems` lays them out (padding runs are segments of their own, as in the masks).

On a CUDA device, with fp16/bf16 activations and the optional ``flash-attn`` package installed
(``pip install vqtok[flash]``), the priors hand these segments to FlashAttention's variable-length kernel instead of
building an (L, L) mask per sequence. That path is not exercised on the CPU-only machines the tests run on;
:func:`reference_varlen_attention` states the same semantics in plain torch, and the tests check it against the dense
masked path.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=..., causal=...)
# with q, k, v (total_tokens, heads, head_dim) -> (total_tokens, heads, head_dim)
VarlenKernel = Callable[..., Tensor]

FLASH_DTYPES = (torch.float16, torch.bfloat16)  # FlashAttention runs in half precision only
FLASH_MAX_HEAD_DIM = 256


def packed_cu_seqlens(doc: Tensor) -> tuple[Tensor, int]:
    """The segments of a packed batch in FlashAttention's layout.

    Args:
        doc: int64 (B, L), the item of each position (-1: padding); an item's positions are contiguous in its row.

    Returns:
        cu_seqlens: int32 (S + 1,), on doc's device: 0, then the cumulative lengths of the S segments (runs of equal
            ``doc`` within a row; every row starts a new one) over the B * L positions taken row-major, so segment s
            is positions ``cu_seqlens[s]:cu_seqlens[s + 1]`` of ``x.reshape(B * L, ...)``; the last entry is B * L.
        max_seqlen: the length of the longest segment.
    """
    B, L = doc.shape
    starts = torch.ones_like(doc, dtype=torch.bool)  # (B, L): True where a segment starts
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    first = starts.flatten().nonzero().flatten()  # (S,) flat index of each segment's first position
    cu_seqlens = torch.cat([first, first.new_tensor([B * L])]).to(torch.int32)  # (S + 1,)
    return cu_seqlens, int((cu_seqlens[1:] - cu_seqlens[:-1]).max())


def reference_varlen_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens_q: Tensor,
    cu_seqlens_k: Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    causal: bool = False,
) -> Tensor:
    """What ``flash_attn.flash_attn_varlen_func`` computes, one segment at a time through SDPA (for tests and CPUs).

    Args:
        q: (total_q, heads, head_dim); segment s is rows ``cu_seqlens_q[s]:cu_seqlens_q[s + 1]``.
        k, v: (total_k, heads, head_dim), split by ``cu_seqlens_k``.
        cu_seqlens_q, cu_seqlens_k: int32 (S + 1,), starting at 0.
        max_seqlen_q, max_seqlen_k: the longest segments (unused: flash-attn needs them, SDPA does not).
        dropout_p: attention dropout (0 in evaluation).
        causal: query i of a segment sees key j when j <= i + (len_k - len_q), FlashAttention's bottom-right
            alignment (for equal lengths: j <= i).

    Returns:
        (total_q, heads, head_dim) in q's dtype.
    """
    del max_seqlen_q, max_seqlen_k
    out = torch.empty_like(q)
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for s in range(len(bounds_q) - 1):
        q0, q1, k0, k1 = bounds_q[s], bounds_q[s + 1], bounds_k[s], bounds_k[s + 1]
        qs, ks, vs = (t.transpose(0, 1)[None] for t in (q[q0:q1], k[k0:k1], v[k0:k1]))  # (1, H, len, hd) each
        mask = None
        if causal:
            i = torch.arange(q1 - q0, device=q.device)[:, None]
            j = torch.arange(k1 - k0, device=q.device)[None, :]
            mask = j <= i + (k1 - k0) - (q1 - q0)  # (len_q, len_k)
        y = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, dropout_p=dropout_p)  # (1, H, len_q, hd)
        out[q0:q1] = y[0].transpose(0, 1)
    return out


@dataclass(frozen=True)
class VarlenSegments:
    """A packed batch as variable-length segments, and the kernel that attends within them."""

    cu_seqlens: Tensor  # int32 (S + 1,): see packed_cu_seqlens
    max_seqlen: int  # the longest segment
    causal: bool  # True: the AR prior (causal within each item); False: MaskGIT (the whole item)
    kernel: VarlenKernel  # flash_attn_varlen_func, or reference_varlen_attention

    def attend(self, q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
        """q, k, v (B, H, L, head_dim) -> (B, H, L, head_dim): each position attends within its segment only."""
        B, H, L, hd = q.shape
        flat = [t.transpose(1, 2).reshape(B * L, H, hd) for t in (q, k, v)]  # (B * L, H, hd) each
        cu, n = self.cu_seqlens, self.max_seqlen
        y = self.kernel(*flat, cu, cu, n, n, dropout_p=dropout_p, causal=self.causal)  # (B * L, H, hd)
        return y.view(B, L, H, hd).transpose(1, 2)


def packed_segments(doc: Tensor, causal: bool, kernel: VarlenKernel) -> VarlenSegments:
    """:class:`VarlenSegments` of a packed batch, doc int64 (B, L) (one host sync, for the longest segment)."""
    cu_seqlens, max_seqlen = packed_cu_seqlens(doc)
    return VarlenSegments(cu_seqlens, max_seqlen, causal, kernel)


def flash_varlen_kernel(x: Tensor, head_dim: int) -> VarlenKernel | None:
    """FlashAttention's ``flash_attn_varlen_func`` when it applies to activations like ``x``: on a CUDA device, in
    float16/bfloat16 (x's dtype, or the CUDA autocast dtype when autocast is on), head_dim at most 256, and the
    ``flash-attn`` package importable. None otherwise (the priors then use SDPA with a dense mask)."""
    if x.device.type != "cuda" or head_dim > FLASH_MAX_HEAD_DIM:
        return None
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
    if dtype not in FLASH_DTYPES:
        return None
    return _flash_attn_varlen_func()


@functools.cache
def _flash_attn_varlen_func() -> VarlenKernel | None:
    """flash_attn.flash_attn_varlen_func, or None when flash-attn is not installed (or its CUDA build fails to load)."""
    try:
        module = importlib.import_module("flash_attn")
    except (ImportError, OSError):
        return None
    return getattr(module, "flash_attn_varlen_func", None)
