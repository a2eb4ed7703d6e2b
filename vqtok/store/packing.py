"""Packing a store's token grids into fixed-length training sequences.

Layout: the items are taken in store order (sorted by source); each grid is flattened row-major ((h, w) -> h*w,
(t, h, w) -> t*h*w) and followed by one separator id. The result is one stream::

    item0[0] item0[1] ... item0[n0-1] SEP item1[0] ... item1[n1-1] SEP item2[0] ...

which is cut into consecutive sequences of ``seq_len`` ids. An item can span two or more sequences. The last,
shorter sequence is dropped (``drop_last=True``) or filled with the pad id. With K codes, ``sep_id = K`` and
``pad_id = K + 1``, so the vocabulary of the packed sequences is K + 2.
"""

from __future__ import annotations

import bisect
import itertools
import os

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
