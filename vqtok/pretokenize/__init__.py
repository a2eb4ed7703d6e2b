"""Dataset-scale tokenization (``vqtok tokenize``): files -> a sharded, resumable token store.

Needs the ``train`` extra (Lightning runs the job, on one or many devices). Reading a store does not: see
:mod:`vqtok.store`.
"""

from vqtok.pretokenize.job import Summary, TokenizeOptions, tokenize_to_store
from vqtok.pretokenize.resolution import Resolution

__all__ = ["Resolution", "Summary", "TokenizeOptions", "tokenize_to_store"]
