"""Token stores: a data set's token ids in sharded safetensors files plus a JSONL manifest.

``vqtok tokenize`` writes a store (see :mod:`vqtok.store.layout` for the files); training code reads it with
:class:`TokenStore`, :class:`TokenDataset` or :class:`PackedTokens`. Reading needs only torch and safetensors.
"""

from vqtok.store.layout import ItemRecord, StoreMeta
from vqtok.store.packing import PackedTokens
from vqtok.store.reader import StoreItem, TokenDataset, TokenStore

__all__ = ["ItemRecord", "PackedTokens", "StoreItem", "StoreMeta", "TokenDataset", "TokenStore"]
