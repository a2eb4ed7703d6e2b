"""Collectives that degrade to no-ops outside torch.distributed, so model code runs the same on one process."""

import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of t over all ranks (in place; returns t)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(t: Tensor, src: int = 0) -> Tensor:
    """Rank src's t on every rank (in place; returns t)."""
    if is_distributed():
        dist.broadcast(t, src=src)
    return t
