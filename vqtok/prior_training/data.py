"""The data of a prior run: a token store's items packed whole into fixed-length sequences, with a held-out split."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from vqtok.errors import InputError
from vqtok.store import PackedItems, TokenStore
from vqtok.training.data.sampling import KeyedSampler, SampleKey, as_key


class _Sequences(Dataset):
    """Packed sequences indexed by the sampler's keys (only the index is used: packing draws nothing)."""

    def __init__(self, packed: PackedItems) -> None:
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, key: int | SampleKey) -> dict[str, torch.Tensor]:
        return self.packed[as_key(key).index]


class PriorDataModule(L.LightningDataModule):
    """Packed sequences of a store (:class:`vqtok.store.PackedItems`) for training and held-out loss.

    Args:
        store: the token store (``vqtok tokenize --out``); a labelled one (``--labels folder``) gives a
            class-conditional prior.
        seq_len: positions per packed sequence; at least the store's longest item.
        batch_size: sequences per batch.
        val_fraction: the share of items held out (chosen by ``seed``; at least one when above 0).
        num_workers: DataLoader worker processes.
        seed: the held-out split, the packing and the order of the training sequences.
    """

    def __init__(
        self,
        store: str,
        seq_len: int = 1024,
        batch_size: int = 8,
        val_fraction: float = 0.05,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise InputError(f"data.val_fraction must lie in [0, 1), got {val_fraction}")
        self.store_path, self.seq_len, self.batch_size = store, seq_len, batch_size
        self.val_fraction, self.num_workers, self.seed = val_fraction, num_workers, seed
        self.train: PackedItems | None = None
        self.val: PackedItems | None = None

    def setup(self, stage: str) -> None:
        store = TokenStore(self.store_path)
        if len(store) == 0:
            raise InputError(f"the store {self.store_path} has no items: tokenize a data set into it first")
        order = torch.randperm(len(store), generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_val = min(max(1, round(self.val_fraction * len(store))), len(store) - 1) if self.val_fraction else 0
        held_out, train = sorted(order[:n_val]), sorted(order[n_val:])
        self.train = PackedItems(store, self.seq_len, seed=self.seed, items=train)
        self.val = PackedItems(store, self.seq_len, items=held_out) if held_out else None

    def train_dataloader(self) -> StatefulDataLoader:
        """Shuffled batches of this rank's share of the packed sequences; the order of epoch e is a function of
        (seed, e), and the loader's position is saved in every checkpoint, so a resumed run (mid-epoch included)
        sees the batches the uninterrupted run saw. Under DDP each rank takes its own share of every epoch."""
        assert self.train is not None
        trainer = self.trainer  # None outside a Trainer
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = KeyedSampler(len(self.train), self.seed, num_replicas=world_size, rank=rank)
        if trainer is not None:  # a resumed run builds the iterator before Lightning calls set_epoch
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]
        return StatefulDataLoader(
            _Sequences(self.train),
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return DataLoader(self.val, batch_size=self.batch_size, num_workers=self.num_workers)
