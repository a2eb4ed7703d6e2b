"""``tokenize_to_store``: a data set of image and video files -> a resumable token store, on one or many devices."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L

from vqtok._version import __version__
from vqtok.errors import FileFormatError, InputError
from vqtok.export import DTYPES
from vqtok.io.images import DEFAULT_MAX_PIXELS
from vqtok.io.tensors import id_dtype
from vqtok.pretokenize.lightning import EncodeModule, InputDataModule, ItemProgress, StoreWriter
from vqtok.pretokenize.plan import check_store, count_results, merge, wait_for_units
from vqtok.pretokenize.resolution import Resolution
from vqtok.pretokenize.sources import expand_sources, label_roots
from vqtok.store.layout import DTYPE_NAMES, STORE_FILE, StoreMeta
from vqtok.tokenizer import DEFAULT_CHUNK_FRAMES, Tokenizer, load

LABEL_MODES = (None, "folder")  # --labels: none, or the ImageFolder layout (ROOT/CLASS/.../file)


@dataclass(frozen=True)
class TokenizeOptions:
    """Everything ``vqtok tokenize`` takes (see ``vqtok tokenize --help``)."""

    sources: list[str]  # directories, files, file lists, glob patterns
    model: str  # export directory or short name
    out: str  # the store directory
    resolution: Resolution = field(default_factory=Resolution)
    max_frames: int | None = None  # videos: keep only the first frames
    batch_size: int = 16  # inputs per model call (inputs of one size are batched together)
    num_workers: int = 2  # decoding processes per rank
    shard_items: int = 1024  # inputs per work unit, and at most per shard
    shard_mb: float = 256.0  # a unit starts a new shard after this many MB of ids
    retry_failed: bool = False  # try again the inputs an earlier run recorded as failed
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    dtype: str = "float32"  # of the convolutions; the codebook search is fp32 regardless
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    progress: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # larger images and video frames (H * W) fail; None: no limit
    labels: str | None = None  # "folder": record each item's class, the first folder under its SRC folder
    backend: str = "torch"  # or "onnx": model is a directory of vqtok export-onnx, run by onnxruntime on CPU ranks

    def __post_init__(self) -> None:
        for name in ("batch_size", "shard_items", "num_nodes", "chunk_frames"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_workers < 0 or self.shard_mb <= 0:
            raise InputError("num_workers must be >= 0 and shard_mb > 0")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {self.max_frames}")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.labels not in LABEL_MODES:
            raise InputError(f"labels must be one of {[m for m in LABEL_MODES if m]} or None, got {self.labels!r}")


@dataclass(frozen=True)
class Summary:
    """What a run did (rank 0's view of all ranks)."""

    store: str
    requested: int  # inputs named by the sources
    done: int  # stored by this run
    skipped: int  # already in the store before this run
    failed: int  # could not be tokenized in this run (see errors.jsonl)
    failed_before: int  # recorded as failed by an earlier run and not retried (--retry-failed retries them)
    resumed_units: int  # units an interrupted earlier run left unfinished, finished by this one
    seconds: float  # time spent in the predict loop
    items_per_second: float

    def __str__(self) -> str:
        lines = [
            f"{self.store}: {self.done} done, {self.skipped} skipped as already done, {self.failed} failed "
            f"({self.requested} inputs; {self.items_per_second:.1f} items/s over {self.seconds:.1f} s)",
        ]
        if self.resumed_units:
            lines.append(f"resumed {self.resumed_units} unit(s) left unfinished by an interrupted run")
        if self.failed or self.failed_before:
            lines.append(f"failures are listed in {Path(self.store) / 'errors.jsonl'}")
        if self.failed_before:
            lines.append(f"{self.failed_before} input(s) failed in an earlier run; --retry-failed tries them again")
        return "\n".join(lines)


def store_meta(tokenizer: Tokenizer, options: TokenizeOptions) -> StoreMeta:
    config = tokenizer.config.to_dict()
    return StoreMeta(
        model=tokenizer.config.name,
        model_fingerprint=_store_fingerprint(tokenizer, Path(options.out)),
        config_hash=hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
        num_codes=tokenizer.codebook_size,
        ids_dtype=DTYPE_NAMES[id_dtype(tokenizer.codebook_size, "store")],
        video=tokenizer.is_video,
        # everything that changes the ids: a store is only extended or resumed with the same settings
        preprocess={
            **options.resolution.to_dict(),
            "max_frames": options.max_frames,
            "dtype": options.dtype,
            "chunk_frames": options.chunk_frames if tokenizer.is_video else None,
            # only when labelled, so stores made before labels existed keep matching
            **({"labels": options.labels} if options.labels else {}),
        },
        vqtok_version=__version__,
    )


def _store_fingerprint(tokenizer: Tokenizer, store: Path) -> str:
    """The tokenizer's fingerprint, or, for a store this model began before vqtok 0.2, the one recorded there (so
    its shards stay consistent); a store of another model keeps failing check_store."""
    if (store / STORE_FILE).is_file():
        try:
            recorded = StoreMeta.load(store).model_fingerprint
        except FileFormatError:
            return tokenizer.fingerprint  # check_store reports the broken store
        if recorded in tokenizer.fingerprints:
            return recorded
    return tokenizer.fingerprint


def tokenize_to_store(options: TokenizeOptions) -> Summary | None:
    """Tokenize every input into the store ``options.out``; resume it if an earlier run was interrupted.

    Runs ``Trainer.predict`` on ``options.devices`` x ``options.num_nodes`` ranks (or the ranks ``torchrun`` set up).
    Returns the summary on global rank 0 and None on the other ranks.

    Raises:
        InputError: a source that does not exist or matches nothing, or an invalid option.
        ConfigError: the store was made by another model or with other preprocessing, or is in use.
    """
    store = Path(options.out)
    roots = label_roots(options.sources) if options.labels == "folder" else None
    sources = expand_sources(options.sources, exclude=store)
    tokenizer = load(
        options.model,
        device="cpu",
        dtype=DTYPES[options.dtype],
        chunk_frames=options.chunk_frames,
        max_pixels=options.max_pixels,
        backend=options.backend,
    )
    meta = store_meta(tokenizer, options)
    if tokenizer.is_video:
        try:
            import av  # noqa: F401 - fail now, not on every video
        except ImportError as e:
            raise InputError(
                f"{options.model!r} is a video tokenizer: reading videos needs pip install 'vqtok[video]' ({e})"
            ) from None
    if (store / STORE_FILE).exists():
        check_store(store, meta)  # on every rank, before any process group is set up: fail fast and clearly
    writer = StoreWriter(store, meta, shard_bytes=int(options.shard_mb * 2**20))
    progress = ItemProgress(options.progress)
    data = InputDataModule(
        store,
        sources,
        meta,
        options.resolution,
        unit_items=options.shard_items,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        retry_failed=options.retry_failed,
        max_frames=options.max_frames,
        max_pixels=options.max_pixels,
        label_roots=roots,
    )
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available: ..." chatter
    trainer = L.Trainer(
        accelerator=options.accelerator,
        devices=options.devices,
        num_nodes=options.num_nodes,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[writer, progress],
        default_root_dir=os.fspath(store),
    )
    runs = tokenizer.model if options.backend == "torch" else tokenizer  # onnx: the tokenizer itself, on the CPU
    module = EncodeModule(runs, DTYPES[options.dtype], options.chunk_frames, options.max_pixels)
    try:
        with warnings.catch_warnings():
            # UnitBatchSampler yields every index by construction; Lightning cannot tell and says so.
            warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
            warnings.filterwarnings("ignore", message=".*across ranks is zero.*")  # a rank with nothing left to do
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # Lightning/torch 2.13
            trainer.predict(module, datamodule=data, return_predictions=False)
        if not trainer.is_global_zero:
            return None
        # No collective barrier (its timeout would end a long, unbalanced job): rank 0 waits for the other ranks'
        # part files on the shared store, then merges.
        wait_for_units(store, data.plan.units if data.plan else [])
        merge(store)
    finally:
        data.close()
    plan = data.plan
    assert plan is not None
    done, failed = count_results(store, plan.units)
    seconds = max(progress.finished - progress.started, 0.0)
    return Summary(
        store=str(store),
        requested=plan.requested,
        done=done,
        skipped=plan.already_stored,
        failed=failed,
        failed_before=plan.failed_before,
        resumed_units=plan.resumed_units,
        seconds=seconds,
        items_per_second=(done + failed) / seconds if seconds > 0 else 0.0,
    )
