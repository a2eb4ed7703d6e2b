"""A video encoder's and decoder's full-resolution levels run depth-first over a chunk, one frame at a time, with
the same convolution calls as one pass over the chunk: bit-identical ids and pixels, and the full-resolution
activations of one frame in memory instead of the whole chunk's.

Inside a stream (:func:`vqtok.model.causal.streaming`) every causal conv continues from its cache, so a chunk may
go through in pieces. In inference a causal conv computes its output one frame at a time
(``CausalConv3d._sliced``), counting from the start of each call. Feeding each module pieces that produce exactly
those one-frame slices (stride 1 in time: 1 frame; stride 2: 1 frame at the start of a stream, then 2) repeats
the very same calls on the very same values, so nothing changes but the order and the memory. Levels hold only
ResNet blocks and down- or up-sampling convs for video models; anything else runs over the whole chunk (the mid
block works at the lowest resolution, where a chunk is small).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.model.autoencoder import Decoder, Encoder
from vqtok.model.blocks import ResnetBlock
from vqtok.model.causal import CausalConv3d, Downsample3d, FrameGroupNorm, Upsample3d

PIECE = 1  # output frames per call of a causal conv in inference (CausalConv3d._sliced's step)


def can_pipeline(half: nn.Module) -> bool:
    """Whether ``half`` is vqtok's video :class:`Encoder` or :class:`Decoder` in a stream, its levels all
    modules :func:`_piece_size` knows."""
    if isinstance(half, Encoder):
        known: tuple[type[nn.Module], ...] = (ResnetBlock, Downsample3d)
    elif isinstance(half, Decoder):
        known = (ResnetBlock, Upsample3d)
    else:
        return False
    streaming = any(m.streaming for m in half.modules() if isinstance(m, CausalConv3d))
    return streaming and all(isinstance(m, known) for m in _level_parts(half))


def _level_parts(half: Encoder | Decoder) -> list[nn.Module]:
    """The modules of the levels, in order."""
    return [m for level in half.levels.children() for m in level.children()]


def encode_levels_in_pieces(encoder: nn.Module, x: Tensor) -> Tensor:
    """encoder(x) for a chunk x (B, C, T, H, W) of a stream: conv_in and the levels depth-first in pieces, then
    the mid block and output layers over the chunk's (small) lowest-resolution features, as Encoder.forward."""
    assert isinstance(encoder, Encoder)
    stages: list[tuple[Callable[[Tensor], Tensor], Callable[[], int]]] = [(encoder.conv_in, lambda: PIECE)]
    stages += [(_given_up(m), _piece_size(m)) for m in _level_parts(encoder)]
    pieces: Iterator[Tensor] = iter([x])
    for i, (module, size) in enumerate(stages):
        pieces = _stage(module, pieces, size, copy_rest=i > 0)  # the caller holds x: views of it cost nothing
    h = torch.cat(list(pieces), dim=2)  # (B, C', t, h, w) at the lowest resolution
    h = encoder.mid(h)
    return encoder.conv_out(F.silu(encoder.norm_out(h), inplace=not torch.is_grad_enabled()))


def decode_levels_in_pieces(decoder: nn.Module, z: Tensor) -> Tensor:
    """decoder(z) for a chunk z (B, z_channels, t, h, w) of a stream: conv_in and the mid block over the chunk's
    (small) latent frames, then the levels and output layers depth-first, one frame at a time, as
    Decoder.forward. -> (B, C_out, T, H, W)."""
    assert isinstance(decoder, Decoder)

    inference = not torch.is_grad_enabled()
    norm_out = decoder.norm_out
    assert isinstance(norm_out, FrameGroupNorm)

    def output_layers(h: Tensor) -> Tensor:  # h: the last block's fresh output, given up (written over)
        h = norm_out.forward_over_input(h) if inference else norm_out(h)
        return decoder.conv_out(F.silu(h, inplace=inference))

    pieces: Iterator[Tensor] = iter([decoder.mid(decoder.conv_in(z))])
    stages: list[Callable[[Tensor], Tensor]] = [*map(_given_up, _level_parts(decoder)), output_layers]
    for module in stages:
        if isinstance(module, Upsample3d) and inference:  # (_given_up leaves an Upsample3d as it is)
            pieces = _frames_of(module, pieces)  # 1 or 2 frames of each piece, one at a time
        else:
            pieces = _stage(module, pieces, lambda: PIECE)
    return torch.cat(list(pieces), dim=2)


def _frames_of(upsample: Upsample3d, pieces: Iterator[Tensor]) -> Iterator[Tensor]:
    """An upsampling's output frames, each alone (B, C, 1, 2H, 2W), for the pieces' frames in order."""
    for piece in pieces:
        yield from upsample.forward_frames(piece)


def _given_up(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """How a stage calls ``module`` on a piece it gives up (the rest of a piece is copied out first, see
    :func:`_stage`): a ResNet block may write over it."""
    return module.forward_over_input if isinstance(module, ResnetBlock) else module


def _piece_size(module: nn.Module) -> Callable[[], int]:
    """Input frames of ``module`` per call that give one slice (PIECE frames) of its output."""
    if isinstance(module, Downsample3d) and module.conv.stride[0] == 2:
        conv = module.conv
        return lambda: 2 * PIECE - 1 if conv.stream_state() is None else 2 * PIECE  # a fresh stream pads 2 frames
    return lambda: PIECE


def _stage(
    module: Callable[[Tensor], Tensor], pieces: Iterator[Tensor], size: Callable[[], int], copy_rest: bool = True
) -> Iterator[Tensor]:
    """Run ``module`` over the frames of ``pieces`` (B, C, n, H, W), ``size()`` frames per call; what is left at
    the end of the chunk goes in one last call, as the slices of one pass would end. Holds no reference to a
    piece it has passed on (the stages downstream run while this generator waits): the frames not yet used are
    copied out of a piece (``copy_rest``), unless the caller keeps the pieces alive anyway."""
    pending: list[Tensor] = []
    have = 0
    for piece in pieces:
        pending.append(piece)
        have += piece.shape[2]
        del piece
        while have >= (n := size()):
            frames = pending[0] if len(pending) == 1 else torch.cat(pending, dim=2)
            pending = [_rest(frames, n, copy_rest)] if have > n else []
            have -= n
            out = [module(frames[:, :, :n])]
            del frames
            yield out.pop()
    if have:
        out = [module(pending[0] if len(pending) == 1 else torch.cat(pending, dim=2))]
        pending.clear()
        yield out.pop()


def _rest(frames: Tensor, n: int, copy: bool) -> Tensor:
    """Frames n: of ``frames``, copied when ``copy`` (a view would keep all of ``frames`` alive)."""
    rest = frames[:, :, n:]
    return rest.clone() if copy else rest
