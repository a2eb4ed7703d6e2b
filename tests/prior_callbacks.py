"""A Lightning callback for the prior training tests, given on the command line as
``--trainer.callbacks+=prior_callbacks.RecordRanks`` (tests/ is on the PYTHONPATH of the processes they start)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch


def sequence_key(ids: torch.Tensor) -> str:
    """A short digest of one packed sequence's ids (L,): which sequence a rank trained on."""
    return hashlib.sha1(ids.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


class RecordRanks(L.Callback):
    """Write ``folder/rank{R}.json``: the digests of the sequences each epoch of rank R trained on, and at the end
    a digest of the rank's weights (DDP keeps every rank's weights identical)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.epochs: dict[int, list[str]] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:  # noqa: ANN401
        seen = self.epochs.setdefault(trainer.current_epoch, [])
        seen.extend(sequence_key(row) for row in batch["ids"].cpu())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = hashlib.sha1()
        for name, tensor in sorted(pl_module.state_dict().items()):
            weights.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"epochs": self.epochs, "weights": weights.hexdigest(), "world_size": trainer.world_size}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
