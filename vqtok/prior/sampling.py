"""Drawing token grids from an autoregressive prior: classifier-free guidance, temperature, top-k and top-p."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from vqtok.errors import InputError
from vqtok.prior.model import ARPrior
from vqtok.store.packing import grid_coords


@torch.no_grad()
def sample(
    model: ARPrior,
    grid: Sequence[int],
    n: int = 1,
    labels: Sequence[int] | Tensor | None = None,
    cfg_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Draw ``n`` id grids, one position at a time in row-major order.

    Args:
        model: the prior (switched to eval mode while sampling, then back).
        grid: the token grid to fill, (h, w) or (t, h, w), as the tokenizer's ``encode`` gives it.
        n: how many grids.
        labels: n class indices in [0, num_classes), or None for unconditional samples.
        cfg_scale: classifier-free guidance: logits = uncond + cfg_scale * (cond - uncond); 1 is plain conditional
            sampling (one forward pass per position), larger values follow the class more closely.
        temperature: divides the logits; above 0.
        top_k: keep only the k most likely ids at each position.
        top_p: keep the smallest set of most likely ids whose probability reaches top_p (nucleus sampling).
        generator: the random generator (on the model's device) for reproducible samples.
        use_cache: keep each position's keys and values (a KV cache); False recomputes the whole prefix at every
            position, the same samples much more slowly (for comparison).

    Returns:
        int64 (n, *grid) in [0, num_codes), on the model's device: decode them with the tokenizer the prior was
        trained on.

    Raises:
        InputError: a bad grid, label, count or sampling setting.
    """
    config = model.config
    grid = tuple(int(g) for g in grid)
    if len(grid) not in (2, 3) or min(grid) < 1 or n < 1:
        raise InputError(f"grid must be (h, w) or (t, h, w) of positive sizes and n >= 1, got {grid} and {n}")
    if not temperature > 0 or (top_k is not None and top_k < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise InputError("temperature must be above 0, top_k at least 1 and top_p in (0, 1]")
    device = next(model.parameters()).device
    null = config.null_class
    if labels is None:
        cls = torch.full((n,), null, dtype=torch.int64, device=device)
    else:
        cls = torch.as_tensor(labels, dtype=torch.int64, device=device).flatten()
        if cls.numel() != n or (cls.numel() and not 0 <= int(cls.min()) <= int(cls.max()) < config.num_classes):
            raise InputError(f"labels must be {n} class indices in [0, {config.num_classes}), got {cls.tolist()}")
    guided = labels is not None and cfg_scale != 1.0
    if guided:
        cls = torch.cat([cls, torch.full_like(cls, null)])  # (2n,): conditional, then unconditional
    length = math.prod(grid)
    coords = grid_coords(grid).to(device).expand(cls.numel(), length, 3)  # (B, N, 3)
    out = torch.empty(n, length, dtype=torch.int64, device=device)

    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(cls.numel(), length) if use_cache else None
        x = model.cls_emb(cls)[:, None]  # (B, 1, dim): the input at position 0
        for i in range(length):
            if cache is not None:
                logits = model.step(x, coords[:, i : i + 1], cache)  # (B, K)
            else:
                prefix = torch.cat([out[:, :i], out[:, :1]], dim=1)  # (n, i + 1): the last id is never an input
                prefix = torch.cat([prefix, prefix]) if guided else prefix
                doc = torch.zeros_like(prefix)
                label = torch.where(cls == null, -1, cls)[:, None].expand_as(prefix)
                logits = model(prefix, doc, coords[:, : i + 1], label)[:, -1]  # (B, K)
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + cfg_scale * (cond - uncond)  # (n, K)
            out[:, i] = _draw(logits, temperature, top_k, top_p, generator)
            if cache is not None:
                nxt = torch.cat([out[:, i], out[:, i]]) if guided else out[:, i]
                x = model.tok_emb(nxt)[:, None]
    finally:
        model.train(was_training)
    return out.view(n, *grid)


def _draw(
    logits: Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> Tensor:
    """logits (n, K) -> int64 (n,) drawn from the filtered, tempered distribution."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (n, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # ids after the set has reached top_p (the first is kept)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
