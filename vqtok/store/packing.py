"""Packing a store's token grids into fixed-length training sequences.

:class:`PackedItems` packs whole items (best-fit decreasing) with per-item positions and document ids, for
block-diagonal attention: what a prior trains on. :class:`PackedTokens` is the plain stream below.

:class:`PackedTokens` layout: the items are taken in store order (sorted by source); each grid is flattened
row-major ((h, w) -> h*w, (t, h, w) -> t*h*w) and followed by one separator id. The result is one stream::

    item0[0] item0[1] ... item0[n0-1] SEP item1[0] ... item1[n1-1] SEP item2[0] ...

which is cut into consecutive sequences of ``seq_len`` ids. An item can span two or more sequences. The last,
shorter sequence is dropped (``drop_last=True``) or filled with the pad id. With K codes, ``sep_id = K`` and
``pad_id = K + 1``, so the vocabulary of the packed sequences is K + 2.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vqtok.errors import InputError
from vqtok.store.reader import TokenStore


class PackedTokens(Dataset):
    """Fixed-length sequences of ids (with separators) over a token store; ``dataset[j]`` is int64 (seq_len,).

    Args:
        store: a :class:`TokenStore` or its path.
        seq_len: ids per sequence.
        drop_last: drop the final sequence if it is shorter than ``seq_len`` (else pad it with ``pad_id``).
    """

    def __init__(self, store: TokenStore | str | os.PathLike[str], seq_len: int, drop_last: bool = True) -> None:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
            raise InputError(f"seq_len must be a positive int, got {seq_len!r}")
        self.store = store if isinstance(store, TokenStore) else TokenStore(store)
        self.seq_len = seq_len
        self.sep_id = self.store.meta.num_codes
        self.pad_id = self.store.meta.num_codes + 1
        # starts[i]: position of item i's first id in the stream; item i occupies [starts[i], starts[i+1]) with its
        # separator at starts[i+1] - 1.
        self.starts = [0, *itertools.accumulate(r.length + 1 for r in self.store.records)]
        total = self.starts[-1]
        self.num_sequences = total // seq_len if drop_last else -(-total // seq_len)

    @property
    def vocab_size(self) -> int:
        """Codebook size + the separator and pad ids."""
        return self.store.meta.num_codes + 2

    def __len__(self) -> int:
        return self.num_sequences

    def __getitem__(self, j: int) -> Tensor:
        if not 0 <= j < len(self):
            raise IndexError(f"sequence {j} out of range for {len(self)} sequences")
        begin, end = j * self.seq_len, min((j + 1) * self.seq_len, self.starts[-1])
        pieces = []
        i = bisect.bisect_right(self.starts, begin) - 1  # the item holding stream position `begin`
        while begin < end:
            start = self.starts[i]
            item = torch.cat([self.store.ids(i).flatten(), torch.tensor([self.sep_id])])  # (n_i + 1,)
            pieces.append(item[begin - start : end - start])
            begin = start + item.numel()
            i += 1
        seq = torch.cat(pieces)
        if seq.numel() < self.seq_len:
            seq = torch.cat([seq, torch.full((self.seq_len - seq.numel(),), self.pad_id)])
        return seq


def pack_best_fit(lengths: Sequence[int], capacity: int, order: Sequence[int] | None = None) -> list[list[int]]:
    """Best-fit decreasing bin packing: the indices of ``lengths`` grouped into bins of total length <= ``capacity``.

    Items are placed longest first (ties in ``order``, default index order), each into the fullest bin it still fits
    in, or a new bin. Every item goes whole into exactly one bin; no bin exceeds ``capacity``.

    Args:
        lengths: positive item lengths, each at most ``capacity``.
        capacity: the bin size.
        order: a permutation of the indices that breaks ties between equal lengths (e.g. a seeded shuffle).

    Returns:
        The bins, each a list of item indices in placement order (longest first), bins in order of creation.
    """
    ranked = sorted(order if order is not None else range(len(lengths)), key=lambda i: -lengths[i])  # stable
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, bin) of the bins not yet full, sorted
    for i in ranked:
        n = lengths[i]
        k = bisect.bisect_left(free, (n, -1))  # the bin with the least space that still holds n
        if k < len(free):
            left, b = free.pop(k)
        else:
            left, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if left - n > 0:
            bisect.insort(free, (left - n, b))
    return bins


class PackedItems(Dataset):
    """Whole items packed into fixed-length sequences, for transformers with per-item (block-diagonal) attention.

    Unlike :class:`PackedTokens`, no item is ever cut: each sequence holds whole items (best-fit decreasing by
    length, so grids of any mix of sizes, images and videos, fill the sequences closely) followed by padding. A
    sequence ``dataset[j]`` is a dict of tensors, all of length ``seq_len`` (L)::

        ids     int64 (L,)    the items' ids, each grid flattened row-major ((t,) h, w), back to back; pad_id after
        doc     int64 (L,)    which item of the sequence a position belongs to: 0, 1, ...; -1 for padding
        pos     int64 (L,)    the position's index within its item, restarting at 0 for every item; 0 for padding
        coords  int64 (L, 3)  the position's (t, y, x) in its item's grid (t = 0 for images); 0 for padding
        label   int64 (L,)    the item's class (an index into store.classes); -1 unlabelled or padding

    A block-diagonal causal mask is ``(doc[q] == doc[k]) & (k <= q)`` (``vqtok.prior.block_causal_mask``); targets
    and losses never cross items when they are taken within one ``doc``. The default collate stacks sequences.

    Args:
        store: a :class:`TokenStore` or its path.
        seq_len: positions per sequence; every item must fit (at most ``seq_len`` ids).
        seed: shuffles the order of items of equal length before packing (None: store order), so different seeds
            give different groupings at the same fill.
        items: pack only these store indices (e.g. a training or held-out split); None: every item.

    Raises:
        InputError: an invalid ``seq_len``, no items, or an item longer than ``seq_len``.
    """

    def __init__(
        self,
        store: TokenStore | str | os.PathLike[str],
        seq_len: int,
        seed: int | None = None,
        items: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
            raise InputError(f"seq_len must be a positive int, got {seq_len!r}")
        self.store = store if isinstance(store, TokenStore) else TokenStore(store)
        self.seq_len = seq_len
        self.pad_id = self.store.meta.num_codes
        chosen = list(range(len(self.store))) if items is None else [int(i) for i in items]
        if not chosen:
            raise InputError(f"the store {self.store.path} has no items to pack")
        lengths = [self.store.records[i].length for i in chosen]
        longest = max(range(len(lengths)), key=lambda k: lengths[k])
        if lengths[longest] > seq_len:
            r = self.store.records[chosen[longest]]
            raise InputError(
                f"{r.source!r} has {lengths[longest]} ids (grid {r.grid}), more than seq_len={seq_len}: items are "
                f"packed whole, so seq_len must be at least the longest item's {lengths[longest]}"
            )
        order = None
        if seed is not None:
            order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
        bins = pack_best_fit(lengths, seq_len, order)
        self.sequences = [[chosen[k] for k in b] for b in bins]  # store indices of each sequence's items
        self.real_tokens = sum(lengths)

    @property
    def fill_fraction(self) -> float:
        """The fraction of all positions that hold real ids (not padding)."""
        return self.real_tokens / (len(self.sequences) * self.seq_len)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, j: int) -> dict[str, Tensor]:
        if not 0 <= j < len(self):
            raise IndexError(f"sequence {j} out of range for {len(self)} sequences")
        L = self.seq_len
        ids = torch.full((L,), self.pad_id, dtype=torch.int64)
        doc = torch.full((L,), -1, dtype=torch.int64)
        pos = torch.zeros(L, dtype=torch.int64)
        coords = torch.zeros(L, 3, dtype=torch.int64)
        label = torch.full((L,), -1, dtype=torch.int64)
        start = 0
        for d, i in enumerate(self.sequences[j]):
            grid = self.store.ids(i)  # (h, w) or (t, h, w)
            n = grid.numel()
            span = slice(start, start + n)
            ids[span] = grid.flatten()
            doc[span] = d
            pos[span] = torch.arange(n)
            coords[span] = grid_coords(tuple(grid.shape))
            item_label = self.store.label(i)
            label[span] = -1 if item_label is None else item_label
            start += n
        return {"ids": ids, "doc": doc, "pos": pos, "coords": coords, "label": label}


def grid_coords(grid: tuple[int, ...]) -> Tensor:
    """The (t, y, x) of each id of a grid flattened row-major: int64 (prod(grid), 3); t = 0 for an (h, w) grid."""
    t, h, w = (1, *grid) if len(grid) == 2 else grid
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([tt.flatten(), yy.flatten(), xx.flatten()], dim=1)  # (t*h*w, 3)
