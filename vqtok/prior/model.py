"""The autoregressive prior: a GPT over token grids, one item after another in packed sequences."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vqtok.prior.config import PriorConfig
from vqtok.prior.layers import Block, LayerCache, Rotary3d, block_causal_mask
from vqtok.prior.varlen import flash_varlen_kernel, packed_segments


def first_positions(doc: Tensor) -> Tensor:
    """bool (B, L): True at the first position of each item (and of the padding run) in packed sequences."""
    first = torch.ones_like(doc, dtype=torch.bool)
    first[:, 1:] = doc[:, 1:] != doc[:, :-1]
    return first


def item_starts(doc: Tensor) -> Tensor:
    """int64 (B, L): the index of the first position of each position's item in packed sequences."""
    index = torch.arange(doc.shape[1], device=doc.device).expand_as(doc)  # (B, L)
    return torch.where(first_positions(doc), index, 0).cummax(dim=1).values


class TokenTransformer(nn.Module):
    """What both priors share: id and class embeddings, rotary positions, pre-norm blocks and the output head.

    Subclasses decide what goes in (``forward``) and which positions see which (``causal`` and
    ``attention_mask``).
    """

    causal: bool = True  # within an item: position q sees positions k <= q (AR), or the whole item (MaskGIT: False)

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.num_codes + 1, config.dim)  # + the padding / mask id (never a target)
        self.cls_emb = nn.Embedding(config.num_classes + 1, config.dim)  # + "no class"
        self.rope = Rotary3d(config.head_dim, config.rope_base)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.hidden_dim, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.RMSNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_codes, bias=False)
        self.apply(_init_weights)
        for name, weight in self.blocks.named_parameters():  # scaled residual branches (GPT-2): the stream's
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):  # variance stays near 1 with depth
                nn.init.normal_(weight, std=0.02 / (2 * config.depth) ** 0.5)

    def attention_mask(self, doc: Tensor) -> Tensor:
        """bool (B, 1, L, L): which positions of packed sequences doc int64 (B, L) each position sees."""
        return block_causal_mask(doc)

    def run(self, x: Tensor, coords: Tensor, doc: Tensor) -> Tensor:
        """Input embeddings x (B, L, dim) at coords int64 (B, L, 3) of packed sequences doc int64 (B, L) -> logits
        float32 (B, L, num_codes). Attention stays within items: SDPA with the dense mask, or on CUDA in fp16/bf16
        with flash-attn installed, FlashAttention's variable-length kernel over the items (no mask built)."""
        cos, sin = self.rope(coords)
        kernel = flash_varlen_kernel(x, self.config.head_dim)
        segments = packed_segments(doc, self.causal, kernel) if kernel is not None else None
        mask = self.attention_mask(doc) if segments is None else None  # (B, 1, L, L)
        for block in self.blocks:
            if self.config.gradient_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, mask, None, segments, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, None, segments)
        return self.head(self.norm(x)).float()

    def _class_ids(self, label: Tensor, doc: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-1 and out-of-range labels -> "no class"; in training, drop an item's label with ``label_dropout``
        (one draw per item from ``generator``, at its first position, so all its positions agree)."""
        null = self.config.null_class
        label = torch.where((label >= 0) & (label < null), label, torch.full_like(label, null))
        if self.training and self.config.label_dropout > 0:
            u = torch.rand(label.shape, device=label.device, generator=generator).gather(1, item_starts(doc))  # (B, L)
            label = torch.where(u < self.config.label_dropout, torch.full_like(label, null), label)
        return label


class ARPrior(TokenTransformer):
    """Next-token prior over the ids of one tokenizer (LlamaGen's recipe, small).

    Position p of an item predicts its id p from the item's class and ids 0..p-1: the input at p is the class
    embedding when p = 0, else the embedding of id p-1, and p carries the (t, y, x) of the id it predicts, as
    rotary positions (so grids of any size and videos need no table of positions). Items packed together attend
    only to themselves (block-diagonal causal mask), so a packed batch computes exactly what the items alone do.
    """

    def forward(
        self, ids: Tensor, doc: Tensor, coords: Tensor, label: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Logits of every position of packed sequences.

        Args:
            ids: int64 (B, L), the items' ids in [0, num_codes], num_codes at padding (a batch of
                :class:`vqtok.store.PackedItems`).
            doc: int64 (B, L), the item of each position (-1: padding).
            coords: int64 (B, L, 3), the (t, y, x) of each position in its item's grid.
            label: int64 (B, L), each position's class in [0, num_classes), or -1 for "no class". In training,
                ``label_dropout`` of the items lose their class.
            generator: the random generator of the label dropout (None: torch's global one).

        Returns:
            float32 (B, L, num_codes): logits for the id at each position.
        """
        label = self._class_ids(label, doc, generator)
        first = first_positions(doc)  # (B, L)
        prev = F.pad(ids[:, :-1], (1, 0), value=self.config.num_codes)  # (B, L): the id before each position
        x = torch.where(first[..., None], self.cls_emb(label), self.tok_emb(prev))  # (B, L, dim)
        return self.run(x, coords, doc)

    def loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Mean cross-entropy (nats per token) over the real positions of a packed batch (padding left out);
        ``generator`` draws the label dropout."""
        logits = self(batch["ids"], batch["doc"], batch["coords"], batch["label"], generator)  # (B, L, K)
        real = batch["doc"] >= 0  # (B, L)
        return F.cross_entropy(logits[real], batch["ids"][real])

    # --- sampling, one position at a time with a KV cache (see vqtok.prior.sampling) -----------------------------

    def new_cache(self, batch: int, length: int) -> list[LayerCache]:
        """Empty key/value caches for ``batch`` items of ``length`` positions."""
        p = next(self.parameters())
        shape = (batch, self.config.heads, length, self.config.head_dim)
        return [LayerCache(p.new_empty(shape), p.new_empty(shape)) for _ in self.blocks]

    def step(self, x: Tensor, coords: Tensor, cache: list[LayerCache]) -> Tensor:
        """One position of B items: input embeddings x (B, 1, dim) at coords int64 (B, 1, 3) -> logits (B, K)."""
        cos, sin = self.rope(coords)
        for block, layer_cache in zip(self.blocks, cache):
            x = block(x, cos, sin, None, layer_cache)
        return self.head(self.norm(x))[:, -1].float()


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
