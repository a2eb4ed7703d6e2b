"""Writing safetensors files so that file-system failures surface as ``OSError``."""

from __future__ import annotations

import os

from safetensors.torch import save
from torch import Tensor


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, except that a failed write (a full disk, say) raises ``OSError`` with the
    system's reason, as every other write does: ``save_file`` reports it as a ``SafetensorError``.

    The file is serialised in memory first (one extra copy of the tensors' bytes), then written.
    """
    data = save(tensors, metadata=metadata)
    with open(path, "wb") as f:
        f.write(data)
