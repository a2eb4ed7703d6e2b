"""The LightningDataModule that feeds video training: clips from a folder of videos (or procedural clips when
there is none), optionally mixed with camera moves over photos, each batch mixed with as many still images so a
joint image/video tokenizer keeps its image path."""

from __future__ import annotations

import logging
import math
from collections.abc import Sized
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
from torch.utils.data import ConcatDataset, Dataset

from vqtok.errors import ConfigError
from vqtok.training.data.camera_moves import CameraMoves, list_photos
from vqtok.training.data.datamodule import ImageDataModule, SplitDataModule
from vqtok.training.data.folder import split_files
from vqtok.training.data.photos import is_real
from vqtok.training.data.procedural_video import ProceduralVideos
from vqtok.training.data.sampling import SampleKey, as_key

__all__ = ["MixedClips", "MixedVideos", "VideoDataModule", "collate_mixed"]

logger = logging.getLogger(__name__)

_TRAIN_STREAM, _VAL_STREAM = 0, 1  # procedural sub-streams: validation never repeats a training clip


class _ClipOptions(TypedDict):
    """How :class:`VideoFolder` cuts clips from a file (the data module's arguments of the same names)."""

    fps: float | None
    frame_stride: int
    segment_seconds: float


class MixedClips(Dataset):
    """Item i: ``{"video": clip i, "image": image i mod len(images)}`` (no "image" without an image set); a
    :class:`SampleKey` gives the image a seed of its own, derived from the clip's.

    Either entry is ``None`` when its file could not be read (see :func:`collate_mixed`).
    """

    def __init__(self, videos: Dataset, images: Dataset | None) -> None:
        self.videos = videos
        self.images = images

    def __len__(self) -> int:
        return len(cast(Sized, self.videos))  # map-style data sets; torch's Dataset type leaves __len__ out

    def __getitem__(self, key: int | SampleKey) -> dict[str, torch.Tensor | None]:
        # A plain int (evaluation) is passed on as an int, so each data set gives its deterministic view.
        train, draw = isinstance(key, SampleKey), as_key(key)
        item = {"video": self.videos[key]}
        if self.images is not None:
            image = draw.index % len(cast(Sized, self.images))
            item["image"] = self.images[draw.child(image, stream=1) if train else image]
        return item


class MixedVideos(Dataset):
    """Camera moves over photos and other clips in a fixed proportion, one epoch of ``num_samples`` items.

    Item i is a camera move when :func:`~vqtok.training.data.photos.is_real` says so (exactly
    ``floor(n * camera_fraction)`` of the first n items): photo (number of camera items before i) modulo the number
    of photos, so every photo gets the same share. The other items are the other clips in turn (modulo their
    number: a folder of a few videos is drawn many times, each draw with its own random start and crop). A
    :class:`SampleKey` passes its seed on, so each draw has its own camera path.

    Args:
        camera: the camera-move clips (one item per photo).
        others: the other clips (a video folder or procedural clips).
        num_samples: length of one epoch.
        camera_fraction: share of camera-move items, in [0, 1].
    """

    def __init__(self, camera: CameraMoves, others: Dataset, num_samples: int, camera_fraction: float) -> None:
        if not 0.0 <= camera_fraction <= 1.0:
            raise ConfigError(f"camera_fraction must be in [0, 1], got {camera_fraction}")
        self.camera, self.others = camera, others
        self.num_samples, self.camera_fraction = num_samples, camera_fraction

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, key: int | SampleKey) -> torch.Tensor | None:
        """Item ``key`` as float32 (3, T, S, S) in [-1, 1] (``None`` for an unreadable file)."""
        index = as_key(key).index
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        before = math.floor(index * self.camera_fraction)  # camera items before this one
        source: Dataset = self.camera if is_real(index, self.camera_fraction) else self.others
        item = (before if source is self.camera else index - before) % len(cast(Sized, source))
        return source[SampleKey(item, key.seed) if isinstance(key, SampleKey) else item]


def collate_mixed(items: list[dict[str, torch.Tensor | None]]) -> dict[str, Any]:
    """-> ``{"videos": (B, 3, T, S, S), "images": (B', 3, S, S), "num_failed": int}``.

    Items that failed (``None``) are dropped and counted; a kind with no readable item is ``torch.empty(0)``.
    "images" is absent when the items carry no images.
    """
    batch: dict[str, Any] = {"num_failed": 0}
    for key, name in (("video", "videos"), ("image", "images")):
        if key not in items[0]:
            continue
        good = [x for item in items if (x := item[key]) is not None]
        batch["num_failed"] += len(items) - len(good)
        batch[name] = torch.stack(good) if good else torch.empty(0)
    return batch


class VideoDataModule(SplitDataModule):
    """Clips (3, T, S, S) in [-1, 1] for training and validating a video tokenizer, mixed with still images.

    With ``root`` set, clips come from the videos under it (recursively; see
    :class:`~vqtok.training.data.video_folder.VideoFolder`: sampled by timestamps at ``fps``, or at the file's
    rate / ``frame_stride``; a long video gives one clip per ``segment_seconds``; unreadable files are skipped and
    counted). A deterministic ``val_fraction`` of the files (at least one) is held out. With ``root=None`` clips are
    procedural (moving occluding shapes under a panning, zooming camera), so training needs no data set.

    With ``photos`` set, a ``camera_fraction`` of each training epoch's clips are camera moves over the photos under
    it (pans, zooms, small rotations, parallax, brightness drift, motion blur, noise: :class:`~vqtok.training.data.
    camera_moves.CameraMoves`), the rest come from ``root`` or are procedural; a ``val_fraction`` of the photos
    (at least one) is held back, and validation is the other clips' validation set followed by one fixed camera
    move over each held-back photo.

    ``images``: ``"procedural"`` mixes procedural dead-leaves images into every batch (as many as clips), a
    directory path mixes the images under it, ``None`` trains on clips only.

    Batches: ``{"videos": Tensor[B, 3, T, S, S], "images": Tensor[B, 3, S, S], "num_failed": int}``.

    Args:
        root: directory of training videos; ``None`` for procedural clips. Checked when the data are set up (as
            ``photos``), so a recipe that names the fetched clips parses before the fetch.
        num_frames: frames T per clip; 1 + r*k for a tokenizer with temporal factor r (e.g. 17 for r = 4).
        image_size: side S of the square crops.
        batch_size: clips per batch (and images, when mixed).
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: seed of the procedural data, of the train/validation split, and of the order of training batches
            and their random clip starts and crops (see :class:`~vqtok.training.data.sampling.KeyedSampler`).
        fps: sampling rate of the clips; ``None`` uses each file's own rate divided by ``frame_stride``.
        frame_stride: with ``fps=None``, take every n-th frame.
        segment_seconds: length of the segments a long video is split into (one clip per segment and epoch).
        images: "procedural", a directory of images, or ``None``.
        train_samples: length of one procedural training epoch.
        val_samples: number of procedural validation clips.
        val_fraction: share of the files in ``root`` (and ``photos``) held out for validation.
        photos: directory of photos for camera moves (e.g. ``data/training/pool``, written by
            ``python -m tools.fetch_training_data``); checked when the data are set up, so a recipe that names it
            parses before the fetch. ``None``: no camera moves.
        camera_fraction: share of each training epoch's clips that are camera moves (with ``photos``).
    """

    collate = staticmethod(collate_mixed)

    def __init__(
        self,
        root: str | None = None,
        num_frames: int = 17,
        image_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 2,
        seed: int = 0,
        fps: float | None = None,
        frame_stride: int = 1,
        segment_seconds: float = 10.0,
        images: str | None = "procedural",
        train_samples: int = 100_000,
        val_samples: int = 16,
        val_fraction: float = 0.05,
        photos: str | None = None,
        camera_fraction: float = 0.5,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_arguments(num_frames, fps, frame_stride, segment_seconds, images)
        if not 0.0 <= camera_fraction <= 1.0:
            raise ConfigError(f"data.camera_fraction must be in [0, 1], got {camera_fraction}")
        self.save_hyperparameters()
        self.root = root
        self.num_frames = num_frames
        self.image_size = image_size
        self.clip_options = _ClipOptions(fps=fps, frame_stride=frame_stride, segment_seconds=segment_seconds)
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.val_fraction = val_fraction
        self.photos = photos
        self.camera_fraction = camera_fraction
        # Still images: the image data module's data sets, built with the same size, seed and batch size.
        self.image_data = None
        if images is not None:
            image_root = None if images == "procedural" else images
            self.image_data = ImageDataModule(
                root=image_root,
                image_size=image_size,
                batch_size=batch_size,
                num_workers=0,  # the images load inside this module's workers
                seed=seed,
                train_samples=train_samples,
                val_samples=val_samples,
                val_fraction=val_fraction,
            )

    def setup(self, stage: str | None = None) -> None:
        """Build the training and validation data sets (once; later calls do nothing)."""
        if self.train_set is not None:
            return
        train_videos, val_videos = self._video_sets()
        if self.photos is not None:
            train_videos, val_videos = self._with_camera_moves(train_videos, val_videos, self.photos)
        train_images = val_images = None
        if self.image_data is not None:
            self.image_data.setup(stage)
            train_images, val_images = self.image_data.train_set, self.image_data.val_set
        self.train_set = MixedClips(train_videos, train_images)
        self.val_set = MixedClips(val_videos, val_images)

    def _with_camera_moves(self, train: Dataset, val: Dataset, photos: str) -> tuple[Dataset, Dataset]:
        """Mix camera moves over the photos into the training clips; add fixed ones over held-back photos to the
        validation clips."""
        try:
            files = list_photos(photos)
        except ConfigError as e:
            raise ConfigError(f"data.photos: {e}") from None
        if len(files) < 2:
            raise ConfigError(
                f"data.photos {photos!r} holds {len(files)} photo; at least 2 are needed (one for training, one for "
                "validation). Add photos, or unset data.photos."
            )
        train_files, val_files = split_files(files, self.val_fraction, self.seed)
        T, S = self.num_frames, self.image_size
        logger.info(
            "data.photos %s: camera moves over %d training and %d validation photos, %.0f%% of training clips",
            photos,
            len(train_files),
            len(val_files),
            100 * self.camera_fraction,
        )
        mixed = MixedVideos(CameraMoves(train_files, T, S), train, self.train_samples, self.camera_fraction)
        return mixed, ConcatDataset([val, CameraMoves(val_files, T, S)])

    def _video_sets(self) -> tuple[Dataset, Dataset]:
        T, S = self.num_frames, self.image_size
        if self.root is None:
            return (
                ProceduralVideos(self.train_samples, T, S, self.seed, _TRAIN_STREAM),
                ProceduralVideos(self.val_samples, T, S, self.seed, _VAL_STREAM),
            )
        from vqtok.io.video import list_videos  # PyAV: the video extra
        from vqtok.training.data.video_folder import VideoFolder

        if not Path(self.root).is_dir():  # checked here, not at construction: a recipe parses before the fetch
            reason = "is not a directory" if Path(self.root).exists() else "does not exist"
            raise ConfigError(
                f"data.root {self.root!r} {reason}: point data.root at a directory of videos (the fetched clips: "
                "`python -m tools.fetch_training_data`), or leave it unset (null) to train on procedural clips"
            )
        files = list_videos(self.root)
        if len(files) < 2:
            raise ConfigError(
                f"data.root {self.root!r} holds {len(files)} video(s); at least 2 are needed (one for training, one "
                "for validation). Add videos, or leave data.root unset to train on procedural clips."
            )
        train_files, val_files = split_files(files, self.val_fraction, self.seed)
        logger.info("data.root %s: %d training and %d validation videos", self.root, len(train_files), len(val_files))
        train = VideoFolder(self.root, T, S, train=True, files=train_files, **self.clip_options)
        val = VideoFolder(self.root, T, S, train=False, files=val_files, **self.clip_options)
        failed = train.num_failed_probe + val.num_failed_probe
        if failed:
            logger.warning("data.root %s: %d unreadable video file(s) skipped (named above)", self.root, failed)
        return train, val


def _check_arguments(
    num_frames: int,
    fps: float | None,
    frame_stride: int,
    segment_seconds: float,
    images: str | None,
) -> None:
    """Raise ConfigError naming the ``data.*`` option that is out of range (the image options are checked by
    the :class:`ImageDataModule` built for the mixed images)."""
    if num_frames < 1:
        raise ConfigError(f"data.num_frames must be at least 1, got {num_frames}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"data.fps must be positive (or null for each file's own rate), got {fps}")
    if frame_stride < 1:
        raise ConfigError(f"data.frame_stride must be at least 1, got {frame_stride}")
    if not segment_seconds > 0:
        raise ConfigError(f"data.segment_seconds must be positive, got {segment_seconds}")
    if images is not None and images != "procedural" and not Path(images).is_dir():
        raise ConfigError(f"data.images must be 'procedural', a directory of images or null, got {images!r}")
