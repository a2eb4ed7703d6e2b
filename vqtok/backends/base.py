"""The seam between the facade and what runs the model: encode ids, decode ids, look up codes, stream video.

The facade (:class:`vqtok.Tokenizer`) does everything else (input conversion, padding, tiles, temporal chunks,
progress, token files), so a backend only runs whole model calls on tensors that are already padded and batched.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, Protocol

from torch import Tensor

from vqtok.config import TokenizerConfig

BACKENDS = ("torch", "onnx", "auto")  # the names vqtok.load(backend=...) takes
Half = Literal["encoder", "decoder"]


class TileSwitch(Protocol):
    """The stream of one video: :meth:`switch` selects which spatial tile's state the next call continues."""

    def switch(self, tile: int) -> None: ...


class Backend(Protocol):
    """Runs one tokenizer's model. Shapes: images (B, C, H, W), videos (B, C, T, H, W), H and W multiples of f;
    ids (B, [t,] h, w) int64."""

    config: TokenizerConfig

    def encode_ids(self, x: Tensor) -> Tensor:
        """Pixels in [-1, 1] (T = 1 + r*k, or r*k inside a stream after its first chunk) -> ids (B, [t,] h, w)."""
        ...

    def decode_ids(self, ids: Tensor) -> Tensor:
        """ids (B, [t,] h, w) -> unclamped pixels (B, C, [T,] H, W), any float dtype."""
        ...

    def codes(self, ids: Tensor) -> Tensor:
        """ids (B, [t,] h, w) -> code vectors float32 (B, D, [t,] h, w)."""
        ...

    def stream(self, half: Half) -> AbstractContextManager[TileSwitch]:
        """Within the block, video calls of ``half`` continue one stream (see :mod:`vqtok.model.causal`)."""
        ...

    def fingerprints(self) -> tuple[str, ...]:
        """The fingerprints token files of this model may carry (see :func:`vqtok.export.fingerprint`)."""
        ...
