"""Training order and augmentation randomness as pure functions of (data seed, epoch, position), so that a
resumed run sees the same items, in the same order, with the same random crops, as the run it continues.

The sampler yields :class:`SampleKey` values instead of bare indices: the item to load and the seed of that
draw's augmentation. Data sets take either a key (training) or an int (evaluation: the deterministic view).
Nothing here reads torch's or numpy's global generators, so neither the DataLoader's worker seeding nor
anything else that draws from them between a checkpoint and a resume can change what training sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

__all__ = ["KeyedSampler", "SampleKey", "as_key"]


@dataclass(frozen=True)
class SampleKey:
    """One draw of a training item: which item, and the seed of its random augmentation."""

    index: int  # position in the data set
    seed: int  # 63-bit seed of this draw's augmentation (a function of data seed, epoch and index)

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded for this draw (independent of torch's global generator)."""
        return torch.Generator().manual_seed(self.seed)

    def child(self, index: int, stream: int) -> SampleKey:
        """The key of a second data set's item drawn together with this one (e.g. the image beside a clip)."""
        return SampleKey(index, _mix(self.seed, stream, index))


def as_key(key: int | SampleKey) -> SampleKey:
    """A data set's argument as a key: a plain int is the draw with seed 0 (what evaluation asks for)."""
    if isinstance(key, SampleKey):
        return key
    return SampleKey(int(key), 0)


def _mix(*words: int) -> int:
    """A 63-bit seed from non-negative integers (numpy's SeedSequence hashing: well spread, platform-independent)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class KeyedSampler(StatefulDistributedSampler):
    """A shuffled, rank-sharded order of a data set whose every draw carries its augmentation seed.

    The order of epoch e is a permutation seeded by ``(seed, e)`` (torch's ``DistributedSampler``, so Lightning
    calls :meth:`set_epoch` and leaves the sampler alone under DDP); each position yields
    ``SampleKey(index, seed(seed, e, index))``. Its state is the epoch and the number of items it has yielded
    (torchdata's ``StatefulDistributedSampler`` keeps the count), which a ``StatefulDataLoader`` saves. The epoch
    is part of the state because on a resume Lightning builds the iterator before it calls :meth:`set_epoch`, and
    DataLoader workers start drawing indices as soon as the iterator exists.

    Args:
        num_items: length of the data set.
        seed: seed of the order and of the augmentations (``data.seed``).
        num_replicas: number of DDP ranks the items are split over (1 without DDP).
        rank: this process's rank.
    """

    def __init__(self, num_items: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        # DistributedSampler only reads len(dataset): pass a range instead of the data set itself.
        super().__init__(range(num_items), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.epoch = int(state_dict["epoch"])

    def __iter__(self) -> Iterator[SampleKey]:
        for index in super().__iter__():  # resumes at the loaded position
            yield SampleKey(index, _mix(self.seed, self.epoch, index))
