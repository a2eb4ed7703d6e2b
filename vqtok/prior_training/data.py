"""The data of a prior run: a token store's items packed whole into fixed-length sequences, with a held-out split."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from vqtok.errors import InputError
from vqtok.store import PackedItems, TokenStore


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
        assert self.train is not None
        return StatefulDataLoader(
            self.train,
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return DataLoader(self.val, batch_size=self.batch_size, num_workers=self.num_workers)
