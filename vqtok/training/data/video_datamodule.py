"""The LightningDataModule that feeds video training: clips from a folder of videos (or procedural clips when
there is none), each batch mixed with as many still images so a joint image/video tokenizer keeps its image path."""

from __future__ import annotations

import logging
from collections.abc import Sized
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
from torch.utils.data import Dataset

from vqtok.errors import ConfigError
from vqtok.training.data.datamodule import ImageDataModule, SplitDataModule
from vqtok.training.data.procedural_video import ProceduralVideos
from vqtok.training.data.sampling import SampleKey, as_key

__all__ = ["MixedClips", "VideoDataModule", "collate_mixed"]

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
        key = as_key(key)
        item = {"video": self.videos[key]}
        if self.images is not None:
            item["image"] = self.images[key.child(key.index % len(cast(Sized, self.images)), stream=1)]
        return item


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

    ``images``: ``"procedural"`` mixes procedural dead-leaves images into every batch (as many as clips), a
    directory path mixes the images under it, ``None`` trains on clips only.

    Batches: ``{"videos": Tensor[B, 3, T, S, S], "images": Tensor[B, 3, S, S], "num_failed": int}``.

    Args:
        root: directory of training videos; ``None`` for procedural clips.
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
        val_fraction: share of the files in ``root`` held out for validation.
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
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_arguments(root, num_frames, fps, frame_stride, segment_seconds, images)
        self.save_hyperparameters()
        self.root = root
        self.num_frames = num_frames
        self.image_size = image_size
        self.clip_options = _ClipOptions(fps=fps, frame_stride=frame_stride, segment_seconds=segment_seconds)
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.val_fraction = val_fraction
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
        train_images = val_images = None
        if self.image_data is not None:
            self.image_data.setup(stage)
            train_images, val_images = self.image_data.train_set, self.image_data.val_set
        self.train_set = MixedClips(train_videos, train_images)
        self.val_set = MixedClips(val_videos, val_images)

    def _video_sets(self) -> tuple[Dataset, Dataset]:
        T, S = self.num_frames, self.image_size
        if self.root is None:
            return (
                ProceduralVideos(self.train_samples, T, S, self.seed, _TRAIN_STREAM),
                ProceduralVideos(self.val_samples, T, S, self.seed, _VAL_STREAM),
            )
        from vqtok.io.video import list_videos  # PyAV: the video extra
        from vqtok.training.data.folder import split_files
        from vqtok.training.data.video_folder import VideoFolder

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
    root: str | None,
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
    if root is not None and not Path(root).is_dir():
        reason = "is not a directory" if Path(root).exists() else "does not exist"
        raise ConfigError(
            f"data.root {root!r} {reason}: point data.root at a directory of videos, "
            "or leave it unset (null) to train on procedural clips"
        )
