"""Writing safetensors files so that file-system failures surface as ``OSError``, and the dtype ids are stored in."""

from __future__ import annotations

import os
from typing import Literal

import torch
from safetensors.torch import save
from torch import Tensor

# The smallest dtype that holds ids in [0, num_codes), for each of the two files that store ids: (largest
# num_codes, dtype) rows, smallest first. The tables differ on purpose, and neither may change, because each is what
# files already on disk hold and what their readers expect:
# - "tokens" (token files, vqtok-tokens-1, one file per `vqtok encode`): signed, so a user who opens the file with
#   safetensors/numpy gets ids that do arithmetic like the int64 ids `Tokenizer.encode` returns (no uint wraparound);
#   int64 above 2**31 codes.
# - "store" (token store shards, vqtok-store-1, data sets of many items): as small as possible, so uint8 for up to
#   256 codes and uint16 up to 65536 halve the disk and read cost of a store; its readers widen ids to int64 on read.
_ID_DTYPES: dict[str, tuple[tuple[float, torch.dtype], ...]] = {
    "tokens": ((2**15, torch.int16), (2**31, torch.int32), (float("inf"), torch.int64)),
    "store": ((2**8, torch.uint8), (2**16, torch.uint16), (float("inf"), torch.int32)),
}


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, except that a failed write (a full disk, say) raises ``OSError`` with the
    system's reason, as every other write does: ``save_file`` reports it as a ``SafetensorError``.

    The file is serialised in memory first (one extra copy of the tensors' bytes), then written.
    """
    data = save(tensors, metadata=metadata)
    with open(path, "wb") as f:
        f.write(data)


def id_dtype(num_codes: int, file: Literal["tokens", "store"]) -> torch.dtype:
    """The smallest integer dtype that holds ids in [0, ``num_codes``) in ``file``'s table (see ``_ID_DTYPES``).

    Token files ("tokens"): int16, int32 or int64. Token stores ("store"): uint8, uint16 or int32.
    """
    return next(dtype for largest, dtype in _ID_DTYPES[file] if num_codes <= largest)
