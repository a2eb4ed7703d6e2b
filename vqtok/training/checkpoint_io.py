"""Training checkpoints written so that a kill or a full disk never leaves a damaged ``.ckpt`` behind.

Lightning's own writer stages the file in the system temporary folder and moves it into place: when that folder
is on another file system the move is a copy, which a kill or a full disk can cut short, leaving a truncated
``last.ckpt`` that a resumed run then fails to read. :class:`AtomicCheckpointIO` writes beside the target and
renames (see :func:`vqtok.io.atomic.atomic_file`), so the checkpoint on disk is always the previous complete one
or the new complete one. It also loads checkpoints weights-only, always (a pickled object is refused, never run),
and only from local files: nothing is downloaded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol

from vqtok.errors import TrainingError
from vqtok.io.atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and whose write failures say what happened, and whose loads are
    weights-only and local.

    ``vqtok fit`` installs it unless the trainer's ``plugins`` already name a checkpoint I/O plugin. Remote folders
    (``s3://`` and the like) are saved through Lightning's own writer.
    """

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not _is_local_file_protocol(path):  # Lightning would download a URL and unpickle it (weights_only=False)
            raise TrainingError(f"cannot resume from {path}: vqtok reads checkpoints from local files only")
        kwargs = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True, **kwargs)  # --weights_only false is not honoured

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first: torch's zip writer reports a full disk poorly
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as tmp, open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
        except OSError as e:
            raise TrainingError(
                f"training stopped: cannot write checkpoint {path} ({e.strerror or e}); the checkpoints written "
                "before are intact. Free space or choose another folder, then resume with --ckpt_path last"
            ) from e
