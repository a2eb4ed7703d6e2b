"""The LightningDataModule that feeds training: a directory of images, or procedural images when there is none."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from vqtok.errors import ConfigError
from vqtok.io.images import list_images
from vqtok.training.data.folder import ImageFolder, collate_images, split_files
from vqtok.training.data.photos import MixedImages, PhotoCrops
from vqtok.training.data.procedural import ProceduralImages
from vqtok.training.data.sampling import KeyedSampler

__all__ = ["ImageDataModule", "SplitDataModule"]

logger = logging.getLogger(__name__)

_TRAIN_STREAM, _VAL_STREAM = 0, 1  # ProceduralImages sub-streams: validation never repeats a training image


class SplitDataModule(L.LightningDataModule):
    """The loaders shared by the tokenizer data modules: ``setup`` builds ``train_set`` and ``val_set``; test and
    predict use the validation set; batches are made by the subclass's ``collate``."""

    collate: Callable[[list[Any]], dict[str, Any]]

    def __init__(self, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def train_dataloader(self) -> StatefulDataLoader:
        """Shuffled batches of this rank's share of the items; the last incomplete batch is dropped.

        The order and every random augmentation are functions of ``seed`` and the epoch
        (:class:`~vqtok.training.data.sampling.KeyedSampler`), and the loader is a ``StatefulDataLoader`` whose
        position Lightning stores in each checkpoint: a run resumed from any checkpoint, mid-epoch included,
        sees exactly the batches the uninterrupted run saw.
        """
        dataset = self._dataset("train_set")
        trainer = self.trainer  # None outside a Trainer
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = KeyedSampler(len(dataset), self.seed, num_replicas=world_size, rank=rank)  # type: ignore[arg-type]
        if trainer is not None:
            # The epoch Lightning will pass to set_epoch, set now: a resumed run builds the iterator before that
            # call, and workers draw their first indices as soon as the iterator exists.
            # Lightning types `current` as the base tracker; the fit loop's epoch progress holds a _ProcessedTracker.
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]
        return StatefulDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate,
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches, in a fixed order (each item's deterministic view)."""
        return DataLoader(
            self._dataset("val_set"),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate,
        )

    def test_dataloader(self) -> DataLoader:
        """The validation batches (there is no separate test split)."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The validation batches."""
        return self.val_dataloader()

    def _dataset(self, name: str) -> Dataset:
        dataset = getattr(self, name)
        if dataset is None:
            self.setup("fit")  # builds both data sets, whatever the stage
            dataset = getattr(self, name)
        return dataset


class ImageDataModule(SplitDataModule):
    """Square image crops in [-1, 1] for training and validating a tokenizer.

    With ``root`` set, images come from that directory (recursively); a deterministic ``val_fraction`` of the
    files (at least one) is held out for validation. With ``root=None``, images are procedural dead-leaves
    renderings (:class:`~vqtok.training.data.procedural.ProceduralImages`), so training needs no data set.
    With ``root=None`` and ``photos`` set, a ``real_fraction`` of each epoch's items are random views of the photos
    under ``photos`` (random scale, position and flip, colour jitter: :class:`~vqtok.training.data.photos.
    PhotoCrops`) and the rest procedural images (:class:`~vqtok.training.data.photos.MixedImages`); validation is
    the procedural validation images followed by centre crops of a held-back ``val_fraction`` of the photos.

    Every loader yields ``{"images": Tensor[B, 3, S, S] float32 in [-1, 1], "num_failed": int}`` (see
    :func:`~vqtok.training.data.folder.collate_images`; unreadable files are dropped and counted).
    ``test_dataloader`` and ``predict_dataloader`` return the validation data.

    The constructor takes primitives only, because LightningCLI builds the ``data:`` section of the config
    from its signature.

    Args:
        root: directory of training images; ``None`` for procedural images.
        image_size: side S of the square crops, in pixels.
        batch_size: images per batch (training drops the last incomplete batch).
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: seed of the procedural images, of the train/validation file split, and of the order of training
            batches and their random crops (one permutation and one crop per item and epoch, independent of
            torch's global seed, so a resumed run repeats them exactly).
        train_samples: length of one procedural training epoch.
        val_samples: number of procedural validation images.
        val_fraction: share of the files in ``root`` (or ``photos``) held out for validation.
        photos: directory of real photos mixed with procedural images (e.g. ``data/training/pool``, written by
            ``python -m tools.fetch_training_data``); checked when the data are set up, so a recipe that names
            it parses before the fetch.
        real_fraction: share of each training epoch's items that are real photo views (with ``photos``).
        colour_jitter: half-width of the brightness, contrast and saturation factors of the photo views.

    Raises:
        ConfigError: an argument is out of range, ``root`` is not an existing directory, or both ``root`` and
            ``photos`` are set.
    """

    collate = staticmethod(collate_images)

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 0,
        train_samples: int = 100_000,
        val_samples: int = 64,
        val_fraction: float = 0.01,
        photos: str | None = None,
        real_fraction: float = 0.5,
        colour_jitter: float = 0.1,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_arguments(root, image_size, batch_size, num_workers, seed, train_samples, val_samples, val_fraction)
        _check_photo_arguments(root, photos, real_fraction, colour_jitter)
        self.save_hyperparameters()
        self.photos = photos
        self.real_fraction = real_fraction
        self.colour_jitter = colour_jitter
        self.root = root
        self.image_size = image_size
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.val_fraction = val_fraction

    def setup(self, stage: str | None = None) -> None:
        """Build the training and validation data sets (once; later calls do nothing).

        Raises:
            ConfigError: ``root`` holds fewer than 2 images, or fewer training images than ``batch_size``.
        """
        if self.train_set is not None:
            return
        if self.root is None and self.photos is not None:
            self._setup_mixed()
            return
        if self.root is None:
            self.train_set = ProceduralImages(self.train_samples, self.image_size, self.seed, _TRAIN_STREAM)
            self.val_set = ProceduralImages(self.val_samples, self.image_size, self.seed, _VAL_STREAM)
            return
        train_files, val_files = self._split()
        self.train_set = ImageFolder(self.root, self.image_size, train=True, files=train_files)
        self.val_set = ImageFolder(self.root, self.image_size, train=False, files=val_files)
        logger.info("data.root %s: %d training and %d validation images", self.root, len(train_files), len(val_files))

    def _setup_mixed(self) -> None:
        """Real photo views mixed with procedural images; validation: procedural, then held-back photos."""
        assert self.photos is not None
        if not Path(self.photos).is_dir():
            raise ConfigError(
                f"data.photos {self.photos!r} is not a directory: fetch the training photos with "
                "`python -m tools.fetch_training_data` (they go to data/training/pool), or unset data.photos"
            )
        train_files, val_files = self._split(self.photos, "photos", check_batch=False)
        photos = PhotoCrops(train_files, self.image_size, self.colour_jitter)
        self.train_set = MixedImages(
            photos, self.train_samples, self.image_size, self.real_fraction, self.seed, _TRAIN_STREAM
        )
        self.val_set = ConcatDataset(
            [
                ProceduralImages(self.val_samples, self.image_size, self.seed, _VAL_STREAM),
                PhotoCrops(val_files, self.image_size, jitter=0.0),
            ]
        )
        logger.info(
            "data.photos %s: %d training and %d validation photos, %.0f%% of training items real",
            self.photos,
            len(train_files),
            len(val_files),
            100 * self.real_fraction,
        )

    def _split(
        self, root: str | None = None, option: str = "root", check_batch: bool = True
    ) -> tuple[list[Path], list[Path]]:
        """List ``root`` (``data.root`` by default) and split it into training and validation files."""
        root = self.root if root is None else root
        assert root is not None
        files = list_images(root)
        if len(files) < 2:
            raise ConfigError(
                f"data.{option} {root!r} holds {len(files)} image(s); at least 2 are needed (one for training, "
                f"one for validation). Add images, or leave data.{option} unset to train on procedural images."
            )
        train_files, val_files = split_files(files, self.val_fraction, self.seed)
        if check_batch and len(train_files) < self.batch_size:
            raise ConfigError(
                f"data.root {self.root!r} has {len(train_files)} training images, fewer than data.batch_size "
                f"({self.batch_size}), so no full training batch can be formed: lower data.batch_size"
            )
        return train_files, val_files


def _check_photo_arguments(root: str | None, photos: str | None, real_fraction: float, jitter: float) -> None:
    """Raise ConfigError naming the photo-mixing ``data.*`` option that is out of range."""
    if root is not None and photos is not None:
        raise ConfigError(
            "data.root and data.photos are both set: data.photos mixes real photos with procedural images, "
            "data.root trains on a folder alone; set one of them"
        )
    if not 0.0 <= real_fraction <= 1.0:
        raise ConfigError(f"data.real_fraction must be in [0, 1], got {real_fraction}")
    if not 0.0 <= jitter < 1.0:
        raise ConfigError(f"data.colour_jitter must be in [0, 1), got {jitter}")


def _check_arguments(
    root: str | None,
    image_size: int,
    batch_size: int,
    num_workers: int,
    seed: int,
    train_samples: int,
    val_samples: int,
    val_fraction: float,
) -> None:
    """Raise ConfigError naming the ``data.*`` option that is out of range."""
    minimums = {
        "image_size": (image_size, 1),
        "batch_size": (batch_size, 1),
        "num_workers": (num_workers, 0),
        "seed": (seed, 0),
        "train_samples": (train_samples, 1),
        "val_samples": (val_samples, 1),
    }
    for name, (value, minimum) in minimums.items():
        if value < minimum:
            raise ConfigError(f"data.{name} must be at least {minimum}, got {value}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    if root is not None and not Path(root).is_dir():
        reason = "is not a directory" if Path(root).exists() else "does not exist"
        raise ConfigError(
            f"data.root {root!r} {reason}: point data.root at a directory of images, "
            "or leave it unset (null) to train on procedural images"
        )
