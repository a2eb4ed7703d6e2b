"""Token stores: a data set's token ids in sharded safetensors files plus a JSONL manifest.

``vqtok tokenize`` writes a store (see :mod:`vqtok.store.layout` for the files); training code reads it with
:class:`TokenStore`, :class:`TokenDataset`, :class:`PackedItems` or :class:`PackedTokens`. Reading needs only
torch and safetensors.
"""

from vqtok.store.layout import ItemRecord, StoreMeta
from vqtok.store.packing import PackedItems, PackedTokens, pack_best_fit
from vqtok.store.reader import StoreItem, TokenDataset, TokenStore

__all__ = [
    "ItemRecord",
    "PackedItems",
    "PackedTokens",
    "StoreItem",
    "StoreMeta",
    "TokenDataset",
    "TokenStore",
    "pack_best_fit",
]
