"""A video encoder's resolution levels run depth-first over a chunk, a few frames at a time, with the same
convolution calls as one pass over the chunk: bit-identical ids, and the full-resolution activations of only a
few frames in memory instead of the whole chunk's.

Inside a stream (:func:`vqtok.model.causal.streaming`) every causal conv continues from its cache, so a chunk may
go through in pieces. In inference a causal conv computes its output two frames at a time
(``CausalConv3d._sliced``), counting from the start of each call. Feeding each module pieces that produce exactly
those two-frame slices (stride 1 in time: 2 frames; stride 2: 3 frames at the start of a stream, then 4) repeats
the very same calls on the very same values, so nothing changes but the order and the memory. Levels hold only
ResNet blocks and down-sampling convs for video models; anything else runs over the whole chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model.autoencoder import Encoder
from vqtok.model.blocks import ResnetBlock
from vqtok.model.causal import CausalConv3d, Downsample3d

PIECE = 2  # output frames per call of a causal conv in inference (CausalConv3d._sliced's step)


def can_pipeline(encoder: nn.Module) -> bool:
    """Whether ``encoder`` is vqtok's video :class:`Encoder` in a stream, its levels all modules
    :func:`_piece_size` knows."""
    if not isinstance(encoder, Encoder):
        return False
    streaming = any(m.streaming for m in encoder.modules() if isinstance(m, CausalConv3d))
    return streaming and all(isinstance(m, (ResnetBlock, Downsample3d)) for m in _level_parts(encoder))


def _level_parts(encoder: Encoder) -> list[nn.Module]:
    """The modules of the encoder's levels, in order."""
    return [m for level in encoder.levels.children() for m in level.children()]


def encode_levels_in_pieces(encoder: nn.Module, x: Tensor) -> Tensor:
    """encoder(x) for a chunk x (B, C, T, H, W) of a stream: conv_in and the levels depth-first in pieces, then
    the mid block and output layers over the chunk's (small) lowest-resolution features, as Encoder.forward."""
    assert isinstance(encoder, Encoder)
    stages: list[tuple[nn.Module, Callable[[], int]]] = [(encoder.conv_in, lambda: PIECE)]
    stages += [(m, _piece_size(m)) for m in _level_parts(encoder)]
    pieces: Iterator[Tensor] = iter([x])
    for module, size in stages:
        pieces = _stage(module, pieces, size)
    h = torch.cat(list(pieces), dim=2)  # (B, C', t, h, w) at the lowest resolution
    h = encoder.mid(h)
    return encoder.conv_out(F.silu(encoder.norm_out(h), inplace=not torch.is_grad_enabled()))


def _piece_size(module: nn.Module) -> Callable[[], int]:
    """Input frames of ``module`` per call that give one two-frame slice of its output."""
    if isinstance(module, Downsample3d) and module.conv.stride[0] == 2:
        conv = module.conv
        return lambda: 2 * PIECE - 1 if conv.stream_state() is None else 2 * PIECE  # a fresh stream pads 2 frames
    return lambda: PIECE


def _stage(module: nn.Module, pieces: Iterator[Tensor], size: Callable[[], int]) -> Iterator[Tensor]:
    """Run ``module`` over the frames of ``pieces`` (B, C, n, H, W), ``size()`` frames per call; what is left at
    the end of the chunk goes in one last call, as the slices of one pass would end. Holds no reference to a
    piece it has passed on (the stages downstream run while this generator waits)."""
    pending: list[Tensor] = []
    have = 0
    for piece in pieces:
        pending.append(piece)
        have += piece.shape[2]
        del piece
        while have >= (n := size()):
            frames = pending[0] if len(pending) == 1 else torch.cat(pending, dim=2)
            pending = [frames[:, :, n:].clone()] if have > n else []  # a copy: the view would keep all of frames
            have -= n
            out = [module(frames[:, :, :n])]
            del frames
            yield out.pop()
    if have:
        out = [module(pending[0] if len(pending) == 1 else torch.cat(pending, dim=2))]
        pending.clear()
        yield out.pop()
