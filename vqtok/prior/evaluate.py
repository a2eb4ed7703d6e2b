"""Held-out bits per token of an autoregressive prior on a token store, and the unigram baseline it must beat."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vqtok.errors import InputError
from vqtok.prior.export import Prior
from vqtok.prior.model import ARPrior
from vqtok.store import PackedItems, TokenStore


def check_store(prior: Prior, store: TokenStore) -> None:
    """Refuse a store whose ids are not those of the tokenizer the prior was trained on.

    Raises:
        InputError: the store was tokenized by another tokenizer (fingerprints differ), or its vocabulary is not the
            prior's.
    """
    num_codes = prior.model.config.num_codes
    if store.meta.model_fingerprint != prior.tokenizer_fingerprint or store.meta.num_codes != num_codes:
        raise InputError(
            f"the store {store.path} holds ids of {store.meta.model!r} ({store.meta.model_fingerprint}, "
            f"{store.meta.num_codes} codes), but the prior was trained on those of {prior.tokenizer!r} "
            f"({prior.tokenizer_fingerprint}, {num_codes} codes): tokenize the data with the "
            "prior's tokenizer"
        )


@torch.no_grad()
def bits_per_token(prior: Prior, store: TokenStore, items: Sequence[int] | None = None, batch_size: int = 16) -> float:
    """The mean negative log2-likelihood of the ids of ``store`` (only ``items``, e.g. a held-out split) under an
    autoregressive prior, each item conditioned on its class when the prior and the store both have labels.

    Raises:
        InputError: a masked (MaskGIT) prior (it has no per-token likelihood), or a store of another tokenizer.
    """
    if not isinstance(prior.model, ARPrior):
        raise InputError("bits per token need an autoregressive prior (objective 'ar'); a MaskGIT prior has none")
    check_store(prior, store)
    longest = max(store.records[i].length for i in (items if items is not None else range(len(store))))
    packed = PackedItems(store, longest, items=items)
    device = next(prior.model.parameters()).device
    nats, count = 0.0, 0
    for start in range(0, len(packed), batch_size):
        stop = min(start + batch_size, len(packed))
        batch = torch.utils.data.default_collate([packed[j] for j in range(start, stop)])
        batch = {k: v.to(device) for k, v in batch.items()}
        if not prior.classes:
            batch["label"] = torch.full_like(batch["label"], -1)
        logits = prior.model(batch["ids"], batch["doc"], batch["coords"], batch["label"])  # (B, L, K)
        real = batch["doc"] >= 0
        nats += float(F.cross_entropy(logits[real], batch["ids"][real], reduction="sum"))
        count += int(real.sum())
    return nats / count / math.log(2)


def unigram_bits_per_token(store: TokenStore, fit_items: Sequence[int], eval_items: Sequence[int]) -> float:
    """The baseline: bits per token of ``eval_items`` under the id frequencies of ``fit_items`` (add-one smoothed),
    what a prior that ignores positions, classes and context would reach."""
    counts = torch.ones(store.meta.num_codes, dtype=torch.float64)
    for i in fit_items:
        counts += torch.bincount(store.ids(i).flatten(), minlength=store.meta.num_codes).double()
    log2p = (counts / counts.sum()).log2()
    total, n = 0.0, 0
    for i in eval_items:
        ids = store.ids(i).flatten()
        total -= float(log2p[ids].sum())
        n += ids.numel()
    return total / n
