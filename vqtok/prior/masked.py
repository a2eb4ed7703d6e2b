"""The masked prior (MaskGIT): predict masked ids of an item from its visible ids, decode in a few parallel steps."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.prior.model import TokenTransformer, item_starts


def same_item_mask(doc: Tensor) -> Tensor:
    """bool (B, 1, L, L): position q sees every position of its own item (bidirectional, block-diagonal)."""
    return (doc[:, :, None] == doc[:, None, :])[:, None]


def cosine_mask_ratio(u: Tensor) -> Tensor:
    """MaskGIT's schedule: the fraction of an item's ids that are masked, cos(pi/2 * u) for u in [0, 1]."""
    return torch.cos(0.5 * math.pi * u)


class MaskedPrior(TokenTransformer):
    """Masked-token prior (MaskGIT): every position of an item sees the whole item; masked positions get the mask
    embedding (id ``num_codes``) and are predicted. The class embedding is added at every position of its item.

    Training masks a cosine-scheduled fraction of each item (drawn per item) and scores the masked positions only.
    """

    causal = False

    def attention_mask(self, doc: Tensor) -> Tensor:
        return same_item_mask(doc)

    def forward(
        self, ids: Tensor, doc: Tensor, coords: Tensor, label: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Logits of every position of packed sequences whose masked positions hold ``num_codes``.

        Args:
            ids: int64 (B, L) in [0, num_codes]: num_codes at masked positions and padding.
            doc: int64 (B, L), the item of each position (-1: padding).
            coords: int64 (B, L, 3), the (t, y, x) of each position in its item's grid.
            label: int64 (B, L), each position's class, or -1 for "no class".
            generator: the random generator of the label dropout in training (None: torch's global one).

        Returns:
            float32 (B, L, num_codes).
        """
        x = self.tok_emb(ids) + self.cls_emb(self._class_ids(label, doc, generator))  # (B, L, dim)
        return self.run(x, coords, doc)

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Mean cross-entropy (nats per token) over the masked real positions of a packed batch; ``generator``
        draws the masks and the label dropout."""
        ids, doc = batch["ids"], batch["doc"]
        u = torch.rand(ids.shape, device=ids.device, generator=generator)
        ratio = cosine_mask_ratio(u.gather(1, item_starts(doc)))  # (B, L): one ratio per item
        masked = (torch.rand(ids.shape, device=ids.device, generator=generator) < ratio) & (doc >= 0)  # (B, L)
        inputs = ids.masked_fill(masked | (doc < 0), self.config.num_codes)
        logits = self(inputs, doc, batch["coords"], batch["label"], generator)  # (B, L, K)
        if not masked.any():  # possible only for tiny batches
            return logits.sum() * 0.0
        return F.cross_entropy(logits[masked], ids[masked])
