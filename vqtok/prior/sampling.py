"""Drawing token grids from a prior: classifier-free guidance, temperature, top-k and top-p; the autoregressive
prior one position at a time (with a KV cache), the masked prior in a few parallel steps (MaskGIT)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from vqtok.errors import InputError
from vqtok.prior.masked import MaskedPrior, cosine_mask_ratio
from vqtok.prior.model import ARPrior
from vqtok.store.packing import grid_coords


@torch.no_grad()
def sample(
    model: ARPrior | MaskedPrior,
    grid: Sequence[int],
    n: int = 1,
    labels: Sequence[int] | Tensor | None = None,
    cfg_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    steps: int = 8,
    choice_temperature: float = 4.5,
    progress: Callable[[int, int], object] | None = None,
) -> Tensor:
    """Draw ``n`` id grids: with an :class:`ARPrior` one position at a time in row-major order; with a
    :class:`MaskedPrior` in ``steps`` parallel steps (all positions start masked; each step predicts every masked
    position and keeps the most confident, so that a cosine-scheduled fraction stays masked, none after the last).

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
            position, the same samples much more slowly (for comparison). Autoregressive prior only.
        steps: masked prior: the number of decoding steps.
        choice_temperature: masked prior: the scale of the Gumbel noise added to the confidences when choosing
            which predictions to keep (annealed to 0 over the steps), as in MaskGIT.
        progress: called as ``progress(done, total)`` after each position (autoregressive prior: total is the
            number of positions) or each step (masked prior: total is ``steps``), e.g. to update a progress bar.

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
    if steps < 1 or choice_temperature < 0:
        raise InputError(f"steps must be at least 1 and choice_temperature >= 0, got {steps} and {choice_temperature}")
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
    if isinstance(model, MaskedPrior):
        try:
            ids = _sample_masked(
                model, cls, coords, guided, cfg_scale, steps, choice_temperature, generator, top_k, top_p, temperature,
                progress,
            )  # fmt: skip
        finally:
            model.train(was_training)
        return ids.view(n, *grid)
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
            if progress is not None:
                progress(i + 1, length)
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


def _sample_masked(
    model: MaskedPrior,
    cls: Tensor,
    coords: Tensor,
    guided: bool,
    cfg_scale: float,
    steps: int,
    choice_temperature: float,
    generator: torch.Generator | None,
    top_k: int | None,
    top_p: float | None,
    temperature: float,
    progress: Callable[[int, int], object] | None,
) -> Tensor:
    """MaskGIT's iterative parallel decoding: class ids cls (B,) and coords (B, N, 3) -> int64 (n, N)."""
    B, N = coords.shape[:2]
    n = B // 2 if guided else B
    mask_id = model.config.num_codes
    ids = torch.full((n, N), mask_id, dtype=torch.int64, device=coords.device)
    doc = torch.zeros(B, N, dtype=torch.int64, device=coords.device)
    label = cls[:, None].expand(B, N)  # the "no class" index reads as no class
    for s in range(steps):
        logits = model(torch.cat([ids, ids]) if guided else ids, doc, coords, label)  # (B, N, K)
        if guided:
            cond, uncond = logits.chunk(2)
            logits = uncond + cfg_scale * (cond - uncond)  # (n, N, K)
        flat = logits.reshape(n * N, -1)
        drawn = _draw(flat, temperature, top_k, top_p, generator)  # (n * N,)
        confidence = (flat / temperature).log_softmax(-1).gather(1, drawn[:, None]).view(n, N)
        unknown = ids == mask_id  # (n, N)
        drawn = torch.where(unknown, drawn.view(n, N), ids)
        # ids to leave masked after this step: the cosine schedule, and at least one fewer than now
        still = int(N * float(cosine_mask_ratio(torch.tensor((s + 1) / steps))))
        still = max(0, min(still, int(unknown.sum(1).min()) - 1))
        if progress is not None:
            progress(s + 1, steps)
        if still == 0:
            ids = drawn
            continue
        noise = torch.rand(n, N, generator=generator, device=ids.device).clamp_(1e-20, 1.0)
        gumbel = -torch.log(-torch.log(noise))
        score = confidence + choice_temperature * (1 - (s + 1) / steps) * gumbel
        score = torch.where(unknown, score, torch.full_like(score, float("inf")))  # known ids stay
        rank = torch.empty_like(ids).scatter_(1, score.argsort(dim=1), torch.arange(N, device=ids.device).expand(n, N))
        ids = torch.where(rank < still, mask_id, drawn)  # the least confident stay masked
    return ids
