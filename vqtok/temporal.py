"""Temporal chunks of a video, so that long clips are encoded and decoded in memory that does not grow with length.

A causal video tokenizer with temporal factor r maps 1 + r*k frames to 1 + k latent frames. Streamed through
:func:`vqtok.model.causal.streaming`, it takes a first chunk of 1 + C frames and then chunks of C frames
(C a multiple of r), and gives the same latents as one pass over the whole clip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise

import torch
from torch import Tensor


def padded_length(num_frames: int, r: int) -> int:
    """The smallest 1 + r*k >= num_frames: how many frames the tokenizer sees after padding."""
    return 1 + r * -(-(num_frames - 1) // r)


def latent_length(num_frames: int, r: int) -> int:
    """Latent frames t of a num_frames-frame clip: 1 + ceil((T - 1) / r)."""
    return 1 + -(-(num_frames - 1) // r)


def frame_chunks(blocks: Iterable[Tensor], chunk_frames: int, r: int) -> Iterator[Tensor]:
    """Regroup a stream of frames into the chunks a causal tokenizer streams over.

    Args:
        blocks: tensors (B, C, n, H, W), any n >= 1 and dtype, one (B, C, H, W) throughout.
        chunk_frames: C, frames per chunk after the first one (which has 1 + C); a multiple of r.
        r: temporal factor of the tokenizer.

    Yields:
        (B, C, L, H, W) chunks: L = 1 + C, then C, ...; the last one is shorter, padded by repeating the final
        frame so that the total is :func:`padded_length` of the real frames.
    """
    assert chunk_frames % r == 0 and chunk_frames > 0
    pending: list[Tensor] = []
    have, want, first = 0, 1 + chunk_frames, True
    for block in blocks:
        pending.append(block)
        have += block.shape[2]
        while have >= want:
            frames = torch.cat(pending, dim=2)
            yield frames[:, :, :want]
            pending = [frames[:, :, want:]] if have > want else []
            have, want, first = have - want, chunk_frames, False
    if have:
        frames = torch.cat(pending, dim=2)
        target = padded_length(have, r) if first else r * -(-have // r)
        yield torch.cat([frames, frames[:, :, -1:].expand(-1, -1, target - have, -1, -1)], dim=2)


def latent_chunks(num_latents: int, chunk_latents: int) -> list[slice]:
    """Slices of the latent axis matching :func:`frame_chunks`: [0, 1 + m), [1 + m, 1 + 2m), ... up to t."""
    bounds = [0, *range(1 + chunk_latents, num_latents, chunk_latents), num_latents]
    return [slice(a, b) for a, b in pairwise(bounds)]
