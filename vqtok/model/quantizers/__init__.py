"""Quantizers behind one interface (:class:`~vqtok.model.quantizers.base.Quantizer`), chosen by
``TokenizerConfig.quantizer``. Adding one: a file with a Quantizer subclass, and one entry in :data:`QUANTIZERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from vqtok.config import QuantizerTraining, TokenizerConfig
from vqtok.model.quantizers.base import Quantizer, QuantizerOutput
from vqtok.model.quantizers.fsq import FiniteScalarQuantizer
from vqtok.model.quantizers.lfq import LookupFreeQuantizer
from vqtok.model.quantizers.vq import VectorQuantizer, nearest_codes

__all__ = [
    "QUANTIZERS",
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "VectorQuantizer",
    "build_quantizer",
    "nearest_codes",
]


def _vq(c: TokenizerConfig, t: QuantizerTraining) -> Quantizer:
    return VectorQuantizer(
        num_codes=c.num_codes,
        code_dim=c.code_dim,
        l2_normalize=c.l2_normalize,
        codebook=t.codebook,
        decay=t.ema_decay,
        commitment_weight=t.commitment_weight,
        dead_code_threshold=t.dead_code_threshold,
        kmeans_init=t.kmeans_init,
    )


def _fsq(c: TokenizerConfig, t: QuantizerTraining) -> Quantizer:
    return FiniteScalarQuantizer(c.levels)


def _lfq(c: TokenizerConfig, t: QuantizerTraining) -> Quantizer:
    return LookupFreeQuantizer(
        bits=c.code_dim,
        commitment_weight=t.commitment_weight,
        entropy_weight=t.entropy_weight,
        diversity_weight=t.entropy_diversity,
        temperature=t.entropy_temperature,
    )


# config.quantizer -> builder of that quantizer from the architecture and the training options
QUANTIZERS: dict[str, Callable[[TokenizerConfig, QuantizerTraining], Quantizer]] = {"vq": _vq, "fsq": _fsq, "lfq": _lfq}


def build_quantizer(config: TokenizerConfig, training: QuantizerTraining | None = None) -> Quantizer:
    """The quantizer ``config`` names, trained (if at all) with ``training`` (defaults when None)."""
    return QUANTIZERS[config.quantizer](config, training or QuantizerTraining())
