"""The torch backend: the :class:`~vqtok.model.vqvae.VQVAE` itself, streaming through its causal convolutions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor

from vqtok.backends.base import Half
from vqtok.backends.frame_pipeline import can_pipeline, decode_levels_in_pieces, encode_levels_in_pieces
from vqtok.export import fingerprint
from vqtok.model.causal import TileStreams, streaming
from vqtok.model.vqvae import VQVAE


class TorchBackend:
    """A VQVAE (already on its device, in its dtype, in eval mode) as a :class:`~vqtok.backends.base.Backend`."""

    def __init__(self, model: VQVAE) -> None:
        self.model = model
        self.config = model.config

    def encode_ids(self, x: Tensor) -> Tensor:
        if x.ndim == 5 and can_pipeline(self.model.encoder):  # a chunk of a video stream: depth-first, same ids
            z = encode_levels_in_pieces(self.model.encoder, x)  # (B, z_channels, t, h, w)
            return self.model.quantizer(self.model.quant_conv(z)).ids
        return self.model.encode(x).ids

    def decode_ids(self, ids: Tensor) -> Tensor:
        decoder = self.model.decoder
        if ids.ndim == 4 and can_pipeline(decoder):  # a chunk of a video stream: depth-first, the same pixels
            codes = self.model.quantizer.indices_to_codes(ids).to(decoder.conv_in.weight.dtype)  # (B, D, t, h, w)
            return decode_levels_in_pieces(decoder, self.model.post_quant_conv(codes))
        return self.model.decode_ids(ids)

    def codes(self, ids: Tensor) -> Tensor:
        return self.model.quantizer.indices_to_codes(ids)

    @contextmanager
    def stream(self, half: Half) -> Iterator[TileStreams]:
        module = self.model.encoder if half == "encoder" else self.model.decoder
        with streaming(module):
            yield TileStreams(module)

    def fingerprints(self) -> tuple[str, ...]:
        return (fingerprint(self.config, self.model.identity_tensors()),)
