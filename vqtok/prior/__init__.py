"""Priors over token grids: models that learn the distribution of a token store's ids and sample new grids.

Pure torch (no Lightning): :class:`PriorConfig`, :class:`ARPrior` (next-token GPT with 3-axis rotary positions, a
class token and label dropout for classifier-free guidance) and :class:`MaskedPrior` (MaskGIT: cosine-scheduled
masking, iterative parallel decoding), chosen by ``PriorConfig.objective`` (:func:`build_prior`), trained on
:class:`vqtok.store.PackedItems` with block-diagonal masks, and :func:`sample`.

>>> from vqtok.store import PackedItems
>>> data = PackedItems("tokens/", seq_len=1024)
>>> prior = ARPrior(PriorConfig(num_codes=data.store.meta.num_codes, num_classes=len(data.store.classes or [])))
>>> loss = prior.loss(torch.utils.data.default_collate([data[0], data[1]]))
>>> ids = sample(prior, grid=(16, 16), n=4, labels=[0, 0, 1, 1], cfg_scale=2.0)  # int64 (4, 16, 16)
"""

from vqtok.prior.config import OBJECTIVES, PriorConfig
from vqtok.prior.evaluate import bits_per_token, check_store, unigram_bits_per_token
from vqtok.prior.export import Prior, PriorInfo, load_prior, save_prior
from vqtok.prior.layers import block_causal_mask
from vqtok.prior.masked import MaskedPrior
from vqtok.prior.model import ARPrior
from vqtok.prior.sampling import sample

__all__ = [
    "OBJECTIVES",
    "ARPrior",
    "MaskedPrior",
    "Prior",
    "PriorConfig",
    "PriorInfo",
    "bits_per_token",
    "block_causal_mask",
    "build_prior",
    "check_store",
    "load_prior",
    "sample",
    "save_prior",
    "unigram_bits_per_token",
]


def build_prior(config: PriorConfig) -> ARPrior | MaskedPrior:
    """The prior ``config.objective`` names: "ar" -> :class:`ARPrior`, "maskgit" -> :class:`MaskedPrior`."""
    return MaskedPrior(config) if config.objective == "maskgit" else ARPrior(config)
