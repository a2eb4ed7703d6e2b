"""The Lightning parts of a tokenization job: ``Trainer.predict`` runs the model on every rank, a
``BasePredictionWriter`` commits each unit to the store, and the data module plans the run on rank 0."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from torch.utils.data import DataLoader
from tqdm import tqdm

from vqtok.errors import VqtokError
from vqtok.io.optional import video_suffixes
from vqtok.model.vqvae import VQVAE
from vqtok.pretokenize.items import Entry, InputReader, UnitBatchSampler, collate_inputs, worker_init
from vqtok.pretokenize.plan import Plan, Unit, lock_store, open_store, plan_run, run_units
from vqtok.pretokenize.resolution import Resolution
from vqtok.pretokenize.unit_writer import UnitWriter
from vqtok.store.layout import StoreMeta
from vqtok.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


class EncodeModule(L.LightningModule):
    """Wraps an exported model for ``Trainer.predict``: a batch of decoded inputs -> one result dict per input."""

    def __init__(self, model: VQVAE | Tokenizer, dtype: torch.dtype, chunk_frames: int, max_pixels: int | None) -> None:
        super().__init__()
        self.allow_zero_length_dataloader_with_multiple_devices = True  # a rank may have no units left
        # A VQVAE (Lightning moves it to the rank's device), or a ready tokenizer of another backend (onnxruntime).
        self.model = model if isinstance(model, VQVAE) else None
        self.ready = None if isinstance(model, VQVAE) else model
        self.dtype_ = dtype
        self.chunk_frames = chunk_frames
        self.max_pixels = max_pixels
        self.tokenizer: Tokenizer | None = None

    def on_predict_start(self) -> None:
        # Built here, after Lightning has moved the model to this rank's device.
        if self.model is None:
            self.tokenizer = self.ready
            return
        self.tokenizer = Tokenizer(self.model, self.device, self.dtype_, self.chunk_frames, max_pixels=self.max_pixels)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        results = [{"unit": f["unit"], "source": f["source"], "error": f["error"]} for f in batch["failed"]]
        for pixels, metas in batch["groups"]:
            results += self._encode_group(pixels, metas)
        return results

    def _encode_group(self, pixels: torch.Tensor, metas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """pixels (n, 3, [T,] H, W): float in [-1, 1] (images) or uint8 (videos) -> ids per input, or errors.

        A group that fails as a whole (out of memory, or any error from one bad input) is retried one input at a
        time, so only the inputs that fail alone are recorded as failed and the job goes on.
        """
        assert self.tokenizer is not None
        error = ""
        x: torch.Tensor | None = None
        try:
            x = pixels.float() / 127.5 - 1.0 if pixels.dtype == torch.uint8 else pixels
            ids = self.tokenizer.encode(x).cpu()  # (n, [t,] h, w)
            return [{**m, "ids": ids[k]} for k, m in enumerate(metas)]
        except torch.OutOfMemoryError:
            error = f"out of memory encoding an input of size {tuple(pixels.shape[1:])}"
        except Exception as e:  # noqa: BLE001 - recorded against the input, never fatal to the job
            error = str(e) if isinstance(e, VqtokError) else f"encoding failed ({type(e).__name__}: {e})"
        # Outside the except block, so the failed call's activations are freed before the retries.
        x = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(metas) == 1:
            return [_failure(metas[0], error)]
        return [r for k in range(len(metas)) for r in self._encode_group(pixels[k : k + 1], metas[k : k + 1])]


def _units(trainer: L.Trainer) -> list[Unit]:
    """This rank's units, from the trainer's :class:`InputDataModule`."""
    datamodule = getattr(trainer, "datamodule", None)  # set by Trainer.predict; not in Lightning's types
    assert isinstance(datamodule, InputDataModule)
    return datamodule.units


def _failure(meta: dict[str, Any], error: str) -> dict[str, Any]:
    return {"unit": meta["unit"], "source": meta["source"], "error": error}


class StoreWriter(BasePredictionWriter):
    """Commits each of this rank's units as soon as all its inputs have a result."""

    def __init__(self, store: Path, meta: StoreMeta, shard_bytes: int) -> None:
        super().__init__(write_interval="batch")
        self.store = store
        self.meta = meta
        self.shard_bytes = shard_bytes
        self.units: dict[str, UnitWriter] = {}  # this rank's unfinished units

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """After the data module's setup: a writer for each unit this rank will receive results for."""
        rank = trainer.global_rank
        self.units = {
            u.name: UnitWriter(self.store, u.name, len(u.sources), self.meta, self.shard_bytes, rank)
            for u in _units(trainer)
        }

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for result in prediction:
            writer = self.units[result["unit"]]
            writer.add(result)
            if writer.complete:
                writer.commit()
                del self.units[writer.unit]

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert not self.units, f"units left unfinished: {sorted(self.units)}"


class ItemProgress(Callback):
    """A progress bar of inputs (not batches) on rank 0, with inputs/s and the ETA."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.started = self.finished = 0.0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()
        if self.enabled and trainer.is_global_zero:
            self.bar = tqdm(
                total=sum(len(u.sources) for u in _units(trainer)),  # this rank's inputs
                unit="item",
                desc="tokenize",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 10.0,
            )

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.bar is not None:
            self.bar.update(len(outputs))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finished = time.perf_counter()
        if self.bar is not None:
            self.bar.close()


class InputDataModule(L.LightningDataModule):
    """Plans the run on rank 0 (``prepare_data``), then gives each rank the inputs of its share of the units."""

    def __init__(
        self,
        store: Path,
        sources: list[str],
        meta: StoreMeta,
        resolution: Resolution,
        *,
        unit_items: int,
        batch_size: int,
        num_workers: int,
        retry_failed: bool,
        max_frames: int | None,
        max_pixels: int | None,
        label_roots: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.prepare_data_per_node = False  # one plan for all nodes: the store is on a shared file system
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.store, self.sources, self.meta, self.resolution = store, sources, meta, resolution
        self.unit_items, self.batch_size, self.num_workers = unit_items, batch_size, num_workers
        self.retry_failed, self.max_frames, self.max_pixels = retry_failed, max_frames, max_pixels
        self.label_roots = label_roots  # --labels folder: the source folders whose subfolders name the classes
        self.plan: Plan | None = None  # rank 0 only
        self.units: list[Unit] = []  # this rank's units
        self._lock: int | None = None

    def prepare_data(self) -> None:
        open_store(self.store, self.meta)
        self._lock = lock_store(self.store)  # held until close() (or the process's end, even by kill -9)
        self.plan = plan_run(self.store, self.sources, self.unit_items, self.retry_failed)

    def close(self) -> None:
        """Release the store's lock."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def setup(self, stage: str) -> None:
        assert self.trainer is not None  # Lightning attaches the trainer before setup
        rank, world = self.trainer.global_rank, self.trainer.world_size
        self.units = run_units(self.store)[rank::world]

    def predict_dataloader(self) -> DataLoader:
        entries = [Entry(u.name, s) for u in self.units for s in u.sources]
        reader = InputReader(
            entries,
            self.meta.video,
            self.resolution,
            self.max_frames,
            video_suffixes(),
            self.max_pixels,
            label_roots=self.label_roots,
        )
        return DataLoader(
            reader,
            batch_sampler=UnitBatchSampler([len(u.sources) for u in self.units], self.batch_size),
            num_workers=self.num_workers,
            collate_fn=collate_inputs,
            worker_init_fn=worker_init,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
