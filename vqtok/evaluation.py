"""Reconstruction quality of a tokenizer over files: PSNR, SSIM and codebook usage, as ``vqtok eval`` prints them.

Each file is read at its own resolution, centre-cropped to at most ``crop`` x ``crop`` pixels, encoded, decoded and
rounded to 8-bit levels (what ``vqtok decode`` writes), then compared with the original pixels. A video's PSNR and
SSIM are the means of its per-frame values; an image tokenizer encodes a video's frames one by one, as images
(or, as the held-keyframe baseline, every r-th frame, held for the r - 1 frames after it).
Codebook usage counts the distinct ids over every token of every file.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vqtok.errors import FileFormatError, InputError, VqtokError
from vqtok.inputs import image_batch, to_uint8
from vqtok.io.images import list_images
from vqtok.io.listing import list_files
from vqtok.io.optional import video_io, video_suffixes
from vqtok.metrics import psnr, ssim
from vqtok.tokenizer import Tokenizer
from vqtok.transforms import center_crop

__all__ = ["Evaluation", "FileScore", "evaluate_files", "list_media"]

DEFAULT_CROP = 512  # the largest side scored: bigger images and frames are centre-cropped to this
_FRAMES_PER_BATCH = 16  # an image tokenizer encodes a video's frames in batches of this many


@dataclass(frozen=True)
class FileScore:
    """One file's reconstruction figures."""

    path: Path
    kind: str  # "image" or "video"
    shape: tuple[int, ...]  # (H, W) or (T, H, W), as scored (after the crop)
    psnr: float  # dB; for a video, the mean of its per-frame PSNRs
    ssim: float  # for a video, the mean of its per-frame SSIMs
    tokens: int  # ids this file was encoded into


@dataclass
class Evaluation:
    """Scores of every file that could be read, the files that could not, and how often each code was used."""

    model: str
    num_codes: int
    scores: list[FileScore] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    code_counts: np.ndarray = field(init=False)  # (K,) int64: tokens assigned to each code

    def __post_init__(self) -> None:
        self.code_counts = np.zeros(self.num_codes, dtype=np.int64)

    @property
    def tokens(self) -> int:
        return int(self.code_counts.sum())

    @property
    def codes_used(self) -> int:
        return int(np.count_nonzero(self.code_counts))

    @property
    def usage(self) -> float:
        """Fraction of the codebook that at least one token used."""
        return self.codes_used / self.num_codes

    @property
    def perplexity(self) -> float:
        """exp(entropy) of the code distribution: the number of equally used codes it is worth."""
        p = self.code_counts[self.code_counts > 0] / max(1, self.tokens)
        return float(math.exp(-(p * np.log(p)).sum())) if len(p) else 0.0

    def of_kind(self, kind: str) -> list[FileScore]:
        return [s for s in self.scores if s.kind == kind]

    def summary(self) -> dict:
        """Means per kind and the usage figures, as plain data (what ``vqtok eval --json`` writes)."""
        out: dict = {"model": self.model, "num_codes": self.num_codes}
        for kind in ("image", "video"):
            scores = self.of_kind(kind)
            if scores:
                out[f"{kind}s"] = {
                    "files": len(scores),
                    "mean_psnr": float(np.mean([s.psnr for s in scores])),
                    "mean_ssim": float(np.mean([s.ssim for s in scores])),
                }
        out.update(tokens=self.tokens, codes_used=self.codes_used, usage=self.usage, perplexity=self.perplexity)
        out["files"] = [
            {"path": str(s.path), "kind": s.kind, "shape": list(s.shape), "psnr": s.psnr, "ssim": s.ssim}
            for s in self.scores
        ]
        out["failed"] = [{"path": str(p), "reason": r} for p, r in self.failed]
        return out


def list_media(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files to evaluate: files as given, folders searched recursively for images and (with PyAV) videos; each
    file once, however it is spelled or linked.

    Raises:
        FileFormatError: a path does not exist.
    """
    found: dict[Path, Path] = {}
    for p in map(Path, paths):
        if p.is_dir():
            listed = list_images(p) + (list_files(p, video_suffixes(), "videos") if video_suffixes() else [])
        elif p.exists():
            listed = [p]
        else:
            raise FileFormatError(f"{str(p)!r} does not exist")
        for f in listed:
            found.setdefault(f.resolve(), f)
    return sorted(found.values())


def _crop(x: torch.Tensor, crop: int | None) -> torch.Tensor:
    """The centre ``crop`` x ``crop`` window (or less, where the image is smaller) of (..., H, W) pixels; all of
    them when ``crop`` is None."""
    return x if crop is None else center_crop(x, crop)


@torch.inference_mode()
def _reconstruct(tok: Tokenizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, 3, [T,] H, W) in [-1, 1] -> (ids, its reconstruction rounded to 8-bit levels, in [-1, 1])."""
    ids = tok.encode(x)
    y = tok.decode(ids, size=tuple(x.shape[2:]))
    return ids, torch.stack([torch.from_numpy(to_uint8(item)).movedim(-1, 0) for item in y]).float() / 127.5 - 1.0


def _score(tok: Tokenizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, 3, [T,] H, W) in [-1, 1] -> (ids, PSNR (N,), SSIM (N,)) of its 8-bit reconstruction."""
    ids, y = _reconstruct(tok, x)
    return ids, psnr(y, x), ssim(y, x)


def _score_video(
    tok: Tokenizer, path: Path, crop: int | None, max_frames: int | None, hold_keyframes: int | None = None
) -> tuple[tuple[int, ...], torch.Tensor, float, float]:
    """A video's frames, decoded one by one and cropped -> (shape, ids, mean per-frame PSNR, SSIM).

    An image tokenizer encodes the frames as images: every frame, or with ``hold_keyframes=r`` only frames 0, r,
    2r, ..., each reconstruction shown again for the r - 1 frames after it (the baseline a 4x temporal video
    tokenizer must beat: 1 + ceil((T - 1) / r) frames of ids, as many as it spends).
    """
    frames = itertools.islice(video_io().iter_frames(path, max_frame_pixels=tok.max_pixels), max_frames)
    crops = [_crop(image_batch(frame, max_pixels=tok.max_pixels), crop) for _, frame in frames]
    if not crops:
        raise FileFormatError(f"{path}: no frame could be read")
    x = torch.cat(crops)  # (T, 3, H, W) in [-1, 1], cropped: already checked frame by frame
    shape = (len(x), *x.shape[-2:])
    if tok.is_video:
        ids, p, s = _score(tok, x.transpose(0, 1)[None])  # one (1, 3, T, H, W) clip
        return shape, ids, float(p[0]), float(s[0])
    step = hold_keyframes or 1
    keys = x[::step]
    parts = [_reconstruct(tok, keys[i : i + _FRAMES_PER_BATCH]) for i in range(0, len(keys), _FRAMES_PER_BATCH)]
    ids, y = (torch.cat(part) for part in zip(*parts, strict=True))  # keyframes as images
    y = y.repeat_interleave(step, dim=0)[: len(x)]  # frame t shows keyframe step * (t // step)
    return shape, ids, float(psnr(y, x).mean()), float(ssim(y, x).mean())


def evaluate_files(
    tok: Tokenizer,
    paths: Iterable[str | os.PathLike],
    crop: int | None = DEFAULT_CROP,
    max_frames: int | None = None,
    hold_keyframes: int | None = None,
) -> Evaluation:
    """Encode and decode each file and score the reconstruction (see the module docstring).

    Args:
        tok: the tokenizer to measure.
        paths: image and video files, and folders (searched recursively).
        crop: score the centre ``crop`` x ``crop`` pixels of larger images and frames; ``None``: whole files.
        max_frames: score only the first frames of longer videos.
        hold_keyframes: image tokenizers only: encode only every ``hold_keyframes``-th frame of a video and show
            each reconstruction for the frames up to the next one (the held-keyframe baseline of video tokenizers).

    Returns:
        The figures. Files that cannot be read, or whose images or frames have more than ``tok.max_pixels``
        pixels, are listed in ``failed`` with the reason, and the others are still scored.
    """
    if crop is not None and crop < tok.downsample:
        raise InputError(f"crop must be at least the tokenizer's downsampling factor {tok.downsample}, got {crop}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    if hold_keyframes is not None and (hold_keyframes < 1 or tok.is_video):
        raise InputError(
            f"hold_keyframes needs an image tokenizer and a value of at least 1, got {hold_keyframes} for "
            f"{'a video' if tok.is_video else 'an image'} tokenizer"
        )
    result = Evaluation(model=tok.config.name, num_codes=tok.codebook_size)
    for path in list_media(paths):
        try:
            if path.suffix.lower() in video_suffixes():
                kind = "video"
                shape, ids, p, s = _score_video(tok, path, crop, max_frames, hold_keyframes)
            else:  # any other file is read as an image, its format decided by its content
                kind, x = "image", _crop(image_batch(path, max_pixels=tok.max_pixels), crop)  # (1, 3, H, W)
                ids, psnrs, ssims = _score(tok, x)
                shape, p, s = x.shape[-2:], float(psnrs[0]), float(ssims[0])
        except VqtokError as e:
            result.failed.append((path, str(e)))
            continue
        except MemoryError:
            result.failed.append((path, "out of memory (try a smaller --crop or --max-frames)"))
            continue
        result.code_counts += np.bincount(ids.flatten().cpu().numpy(), minlength=tok.codebook_size)
        result.scores.append(FileScore(path, kind, tuple(shape), p, s, int(ids.numel())))
    return result
