"""The public facade: ``vqtok.load`` and :class:`Tokenizer` (``encode``, ``decode``, ``codes``).

Image tokenizers map images (B, 3, H, W) <-> ids (B, h, w). Video tokenizers also map videos (B, 3, T, H, W)
<-> ids (B, t, h, w), streaming long clips through temporal chunks (see :mod:`vqtok.temporal`), and still take
images, which they tokenize as 1-frame videos.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np
import torch
from torch import Tensor

from vqtok.backends.base import BACKENDS, Backend, TileSwitch
from vqtok.backends.torch_model import TorchBackend
from vqtok.config import TokenizerConfig
from vqtok.errors import InputError
from vqtok.export import DEFAULT_MODEL, DTYPES, export_fingerprints, load_export, resolve_export
from vqtok.inputs import ImageInput, VideoInput, check_same_size, id_batch, image_batch, to_uint8, video_batch
from vqtok.io.images import DEFAULT_MAX_PIXELS
from vqtok.io.optional import video_io, video_suffixes
from vqtok.model.vqvae import VQVAE
from vqtok.temporal import frame_chunks, latent_chunks, latent_length
from vqtok.tiling import decode_tiled, encode_tiled
from vqtok.transforms import pad_to_multiple

DEFAULT_CHUNK_FRAMES = 8  # frames per streamed chunk of a video (after the first, which has one more)
# Large frames stream in shorter chunks: a chunk's float32 frames stay under this (ids do not depend on chunking).
# At 1280x720 that is 4 frames (44 MB) instead of 8; up to 1920x1080 it stays a few frames; 256x256 keeps 8.
CHUNK_BYTES = 64 << 20


class Tokenizer:
    """An exported VQ-VAE tokenizer ready for inference. Build it with :func:`load`.

    Images are float tensors (B, 3, H, W) in [-1, 1]; token ids are int64 tensors (B, H/f, W/f) in
    [0, codebook_size), f = :attr:`downsample`. A video tokenizer (:attr:`is_video`) also takes videos
    (B, 3, T, H, W) in [-1, 1] -> ids (B, 1 + ceil((T-1)/r), H/f, W/f), r = :attr:`temporal_downsample`, and runs
    them through chunks of ``chunk_frames`` frames, so memory does not grow with the length. Everything runs under
    ``torch.inference_mode``; the nearest-code lookup is always fp32 whatever ``dtype`` the convolutions use.
    With ``tile_size``, images and video frames larger than that many pixels on a side are encoded and decoded in
    overlapping tiles of that side (see :mod:`vqtok.tiling`; a video keeps one stream per tile), so memory stays
    bounded; ids and pixels then differ a little from one pass. ``None`` (the default) never tiles.
    A tokenizer streams one video at a time: do not interleave two :meth:`decode_chunks` iterators.
    """

    def __init__(
        self,
        model: VQVAE | Backend,
        device: torch.device,
        dtype: torch.dtype,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        tile_size: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fingerprints: tuple[str, ...] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        # What runs the model: the torch VQVAE, or another Backend (an ONNX export through onnxruntime, say).
        self.backend: Backend = TorchBackend(model) if isinstance(model, VQVAE) else model
        r, f = self.backend.config.temporal_downsample, self.backend.config.downsample
        if not isinstance(chunk_frames, int) or chunk_frames < 1 or chunk_frames % r:
            raise InputError(f"chunk_frames must be a positive multiple of the temporal factor {r}, got {chunk_frames}")
        if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 8 * f or tile_size % f):
            raise InputError(
                f"tile_size must be None or a multiple of the downsampling factor {f}, at least {8 * f}, "
                f"got {tile_size!r}"
            )
        if max_pixels is not None and (
            not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1
        ):
            raise InputError(f"max_pixels must be None or a positive int, got {max_pixels!r}")
        self.device = device
        self.dtype = dtype
        self.chunk_frames = chunk_frames
        self.tile_size = tile_size
        self.max_pixels = max_pixels
        # From the export's files (see vqtok.export.export_fingerprints); else from the model's float32 weights.
        self._fingerprints = fingerprints
        self.progress = progress  # called with the pixels (B * T * H * W) of each model call: a batch, tile or chunk

    @property
    def config(self) -> TokenizerConfig:
        return self.backend.config

    @property
    def model(self) -> VQVAE:
        """The torch model (torch backend only)."""
        if not isinstance(self.backend, TorchBackend):
            raise InputError(f"this tokenizer runs on the {type(self.backend).__name__} backend, not a torch model")
        return self.backend.model

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies this model (architecture and the tensors that decide ids), so token files from another model
        can be refused; the name and training options are not part of it."""
        return self.fingerprints[0]

    @functools.cached_property
    def fingerprints(self) -> tuple[str, ...]:
        """The fingerprints a token file of this model may carry: :attr:`fingerprint`, then, for an export from
        before vqtok 0.2, the one token files written then carry."""
        if self._fingerprints is None:
            self._fingerprints = self.backend.fingerprints()
        return self._fingerprints

    @property
    def codebook_size(self) -> int:
        """Number of codes K: ids lie in [0, K)."""
        return self.config.codebook_size

    @property
    def downsample(self) -> int:
        """Spatial factor f: an H x W image gives an ceil(H/f) x ceil(W/f) grid of ids."""
        return self.config.downsample

    @property
    def is_video(self) -> bool:
        """Whether this tokenizer also encodes videos (a causal 3D model)."""
        return self.config.video

    @property
    def temporal_downsample(self) -> int:
        """Temporal factor r: 1 + r*k frames give 1 + k latent frames (1 for image tokenizers)."""
        return self.config.temporal_downsample

    def token_shape(self, size: Sequence[int]) -> tuple[int, ...]:
        """The grid of ids this tokenizer gives an image of ``size`` (H, W): (ceil(H/f), ceil(W/f)); or a video of
        ``size`` (T, H, W): (1 + ceil((T-1)/r), ceil(H/f), ceil(W/f)). The one place that geometry is written down:
        token files, stores and the app check their grids against it."""
        f = self.downsample
        if len(size) not in (2, 3) or not all(isinstance(s, int) and s > 0 for s in size):
            raise InputError(f"size must be (H, W) or (T, H, W) positive ints, got {tuple(size)!r}")
        grid = tuple(-(-s // f) for s in size[-2:])
        return (latent_length(size[0], self.temporal_downsample), *grid) if len(size) == 3 else grid

    def check_grid(self, ids: Tensor, size: Sequence[int]) -> None:
        """Raise :class:`InputError` unless ``ids`` (h, w) or (t, h, w) is the grid :meth:`token_shape` gives
        ``size``, e.g. for an item of a token file, whose ids and size are stored apart."""
        if len(size) == 3 and not self.is_video:
            name = self.config.name
            raise InputError(f"it holds a video's ids {tuple(ids.shape)}, and {name!r} is an image tokenizer")
        expected = self.token_shape(size)
        if tuple(ids.shape) != expected:
            raise InputError(
                f"its grid of ids {tuple(ids.shape)} does not fit its size {tuple(size)}: "
                f"{self.config.name!r} gives that size a grid of {expected}"
            )

    @torch.inference_mode()
    def encode(self, x: ImageInput | VideoInput) -> Tensor:
        """Images or videos -> token ids.

        Args:
            x: images: a float tensor (B, 3, H, W) in [-1, 1]; a uint8 tensor (B, 3, H, W) or (3, H, W) in
                [0, 255]; a PIL image; a uint8 array (H, W, 3) (or, for an image tokenizer, (B, H, W, 3)); an
                image file path; or a list of those of one size.
                Videos (video tokenizers only): a float tensor (B, 3, T, H, W) in [-1, 1]; a uint8 tensor
                (B, 3, T, H, W) in [0, 255]; a uint8 array (T, H, W, 3) or (B, T, H, W, 3); a video file path
                (streamed, see :meth:`encode_video_file`); or a list of those of one size (T, H, W): files are
                streamed one after the other, and their ids stacked into one batch. A list of images or videos of
                different sizes is refused (their ids would not stack): encode them one by one. Any H, W: the
                input is padded (edge replication) up to a multiple of f; any T: the last frame is repeated up to
                1 + r*k frames. Pass ``size`` to :meth:`decode` to crop back. Float pixels with no value below 0
                (likely [0, 1], as torchvision's ToTensor gives) get a one-time ``UserWarning``: use ``x * 2 - 1``.

        Returns:
            int64 tensor (B, ceil(H/f), ceil(W/f)) for images, (B, 1 + ceil((T-1)/r), ceil(H/f), ceil(W/f)) for
            videos, on this tokenizer's device.
        """
        if self.is_video_input(x):
            if not self.is_video:
                raise InputError(
                    f"{self.config.name!r} is an image tokenizer and cannot encode videos; load a video tokenizer "
                    "(config video=true), or encode the frames one by one as images"
                )
            if isinstance(x, (str, os.PathLike)):
                return self.encode_video_file(x).ids
            if isinstance(x, (list, tuple)) and any(isinstance(item, (str, os.PathLike)) for item in x):
                return self._encode_videos(x)
            frames = video_batch(x, self.config.in_channels, self.max_pixels)  # (B, C, T, H, W)
            return self._encode_chunks(frame_chunks([frames], self.chunk_frames, self.temporal_downsample))
        x = image_batch(x, self.config.in_channels, self.max_pixels).to(self.device)
        x = pad_to_multiple(x, self.downsample).to(self.dtype)
        if not self.is_video:
            x = x.contiguous(memory_format=torch.channels_last)  # the layout the image model's weights are in
        if (tiles := self._tiles(x.shape[-2:])) is not None:
            return encode_tiled(self._encode_images, x, self.downsample, *tiles)
        return self._encode_images(x)

    def _encode_videos(self, videos: Sequence[VideoInput]) -> Tensor:
        """A list of videos of one size (T, H, W), files among them -> ids (B, t, h, w); one video in memory at a
        time (files streamed as by :meth:`encode_video_file`)."""
        ids: list[Tensor] = []
        sizes: list[tuple[int, ...]] = []
        for item in videos:
            if not self.is_video_input(item):
                found = repr(str(item)) if isinstance(item, (str, os.PathLike)) else type(item).__name__
                if isinstance(item, (Tensor, np.ndarray)):
                    found += f" of shape {tuple(item.shape)}"
                raise InputError(
                    f"a list given to encode must hold only videos or only images: a video came first, then {found}"
                )
            if isinstance(item, (str, os.PathLike)):
                encoded = self.encode_video_file(item)
                ids.append(encoded.ids)
                sizes.append((encoded.num_frames, encoded.height, encoded.width))
            else:
                frames = video_batch(item, self.config.in_channels, self.max_pixels)  # (B, C, T, H, W)
                ids.append(self._encode_chunks(frame_chunks([frames], self.chunk_frames, self.temporal_downsample)))
                sizes.append(tuple(frames.shape[-3:]))
            check_same_size(sizes, "videos", "(T, H, W)")  # at the first that differs, before reading more
        return torch.cat(ids)

    def _encode_images(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in this tokenizer's dtype, H and W multiples of f -> ids (B, H/f, W/f)."""
        if self.is_video:
            return self._encode(x[:, :, None])[:, 0]  # an image is a 1-frame video
        return self._encode(x)

    def _encode(self, x: Tensor) -> Tensor:
        """One model call: (B, 3, [T,] H, W) -> ids (B, [t,] h, w), reported to :attr:`progress`."""
        ids = self.backend.encode_ids(x)
        if self.progress is not None:
            self.progress(x[:, 0].numel())
        return ids

    def _decode_images(self, ids: Tensor) -> Tensor:
        """ids (B, h, w) on this tokenizer's device -> unclamped float32 (B, 3, h*f, w*f)."""
        if self.is_video:
            return self._decode_ids(ids[:, None])[:, :, 0]  # an image is a 1-frame video
        return self._decode_ids(ids)

    def _decode_ids(self, ids: Tensor) -> Tensor:
        """One model call: ids (B, [t,] h, w) on this tokenizer's device -> unclamped float32 (B, 3, [T,] H, W)."""
        y = self.backend.decode_ids(ids).float()
        if self.progress is not None:
            self.progress(y[:, 0].numel())
        return y

    def _chunk_frames(self, height: int, width: int) -> int:
        """Frames per chunk when streaming frames of ``height`` x ``width``: ``chunk_frames``, cut for large frames
        so that one chunk's float32 frames stay under :data:`CHUNK_BYTES` (never under the temporal factor)."""
        r = self.temporal_downsample
        fitting = CHUNK_BYTES // (3 * 4 * height * width) // r * r
        return max(r, min(self.chunk_frames, fitting))

    def _tiles(self, size: tuple[int, ...]) -> tuple[int, int] | None:
        """(tile side, overlap) in latents when an image of ``size`` (H, W) pixels is processed in tiles."""
        if self.tile_size is None or max(size) <= self.tile_size:
            return None
        side = self.tile_size // self.downsample
        return side, max(1, side // 8)

    @torch.inference_mode()
    def encode_video_file(self, path: str | os.PathLike) -> EncodedVideo:
        """Encode a video file frame by frame (rotation applied), in memory that does not grow with its length.

        Raises:
            FileFormatError: the file cannot be read as a video (the message says why).
            InputError: this is an image tokenizer.
        """
        if not self.is_video:
            raise InputError(f"{self.config.name!r} is an image tokenizer and cannot encode videos")
        video = video_io()
        info = video.probe_video(path, max_frame_pixels=self.max_pixels)
        num_frames = 0

        def frames() -> Iterator[Tensor]:
            nonlocal num_frames
            for _, frame in video.iter_frames(path, max_frame_pixels=self.max_pixels):  # (H, W, 3) uint8
                num_frames += 1
                yield torch.from_numpy(frame).permute(2, 0, 1)[None, :, None]  # (1, 3, 1, H, W) uint8

        chunks = frame_chunks(frames(), self._chunk_frames(info.height, info.width), self.temporal_downsample)
        ids = self._encode_chunks(chunk.float() / 127.5 - 1.0 for chunk in chunks)
        return EncodedVideo(ids=ids, num_frames=num_frames, height=info.height, width=info.width, fps=info.fps)

    def decode_video_file(
        self,
        ids: Tensor,
        path: str | os.PathLike,
        size: tuple[int, int, int] | None = None,
        fps: float | None = None,
        preset: str = "medium",
    ) -> Path:
        """Decode one video's ids (t, h, w) straight into an MP4 (H.264, see :func:`vqtok.io.video.write_video`),
        piece by piece: memory does not grow with the length. ``size=(T, H, W)`` crops it (a token file's recorded
        size); ``fps`` defaults to 24. Returns ``path``, written atomically."""
        if ids.ndim != 3:
            raise InputError(f"decode_video_file takes one video's ids (t, h, w), got shape {tuple(ids.shape)}")
        if not self.is_video:
            raise InputError(f"{self.config.name!r} is an image tokenizer and cannot decode videos")

        def frames() -> Iterator[np.ndarray]:  # uint8 (H, W, 3)
            for piece in self.decode_chunks(ids[None], size=size):  # (1, 3, n, H, W) in [-1, 1]
                yield from to_uint8(piece[0])

        video_io().write_video(path, frames(), fps=fps or 24.0, preset=preset)
        return Path(path)

    def _encode_chunks(self, chunks: Iterable[Tensor]) -> Tensor:
        """Stream chunks (B, 3, L, H, W) in [-1, 1] (as :func:`frame_chunks` cuts them) -> ids (B, t, h, w)."""
        ids = []
        with self.backend.stream("encoder") as streams:
            for chunk in chunks:
                chunk = pad_to_multiple(chunk.to(self.device), self.downsample).to(self.dtype)
                tiles = self._tiles(chunk.shape[-2:])
                if tiles is None:
                    ids.append(self._encode(chunk))  # (B, l, h, w)
                else:
                    encode_tile = _per_tile(streams, self._encode)
                    ids.append(encode_tiled(encode_tile, chunk, self.downsample, *tiles))
        return torch.cat(ids, dim=1)

    @torch.inference_mode()
    def decode(self, ids: Tensor, size: tuple[int, ...] | None = None) -> Tensor:
        """Token ids -> pixels in [-1, 1], float32.

        ids (B, h, w) give images (B, 3, h*f, w*f), cropped to ``size=(H, W)`` if given. For a video tokenizer,
        ids (B, t, h, w) give videos (B, 3, 1 + r(t-1), h*f, w*f), cropped to ``size=(T, H, W)`` if given (see
        :meth:`decode_chunks` to receive a long video piece by piece).
        """
        ids = self._check_ids(ids)
        if ids.ndim == 4:
            return torch.cat(list(self.decode_chunks(ids, size)), dim=2)
        ids = ids.to(self.device)
        f = self.downsample
        if (tiles := self._tiles((ids.shape[-2] * f, ids.shape[-1] * f))) is not None:
            y = decode_tiled(self._decode_images, ids, f, *tiles)
        else:
            y = self._decode_images(ids)
        y = y.clamp(-1, 1).contiguous()  # (B, 3, H, W), NCHW whatever layout the model ran in
        if size is not None:
            H, W = _crop_size(size, tuple(y.shape[-2:]))
            y = y[..., :H, :W]
        return y

    @torch.inference_mode()
    def decode_chunks(self, ids: Tensor, size: tuple[int, ...] | None = None) -> Iterator[Tensor]:
        """Video token ids (B, t, h, w) -> consecutive pieces (B, 3, n, H, W) in [-1, 1] of the decoded video.

        The pieces joined along time equal :meth:`decode`'s result; only one piece is in memory at a time.
        ``size=(T, H, W)`` crops the video (e.g. to the size before padding).
        """
        ids = self._check_ids(ids)
        if ids.ndim != 4:
            raise InputError(f"decode_chunks takes video ids (B, t, h, w), got shape {tuple(ids.shape)}")
        t, h, w = ids.shape[1:]
        r, f = self.temporal_downsample, self.downsample
        T, H, W = (1 + r * (t - 1), h * f, w * f) if size is None else _crop_size(size, (1 + r * (t - 1), h * f, w * f))
        emitted = 0
        tiles = self._tiles((h * f, w * f))
        with self.backend.stream("decoder") as streams:
            for part in latent_chunks(t, self._chunk_frames(h * f, w * f) // r):
                part_ids = ids[:, part].to(self.device)  # (B, l, h, w)
                if tiles is None:
                    y = self._decode_ids(part_ids)  # (B, 3, n, H', W')
                else:
                    y = decode_tiled(_per_tile(streams, self._decode_ids), part_ids, f, *tiles)
                y = y.clamp_(-1, 1)[:, :, : T - emitted, :H, :W]  # in place: no second copy of the piece
                emitted += y.shape[2]
                if y.shape[2]:
                    yield y
                del y  # not alive beside the next chunk's activations
                if emitted >= T:
                    return

    @torch.inference_mode()
    def codes(self, ids: Tensor) -> Tensor:
        """Token ids (B, [t,] h, w) -> the code vectors float32 (B, code_dim, [t,] h, w) the decoder receives."""
        ids = self._check_ids(ids)
        return self.backend.codes(ids.to(self.device))

    def _check_ids(self, ids: Tensor) -> Tensor:
        """Validated int64 ids (see :func:`vqtok.inputs.id_batch`), their grids within ``max_pixels`` once decoded."""
        max_cells = None if self.max_pixels is None else self.max_pixels // self.downsample**2
        return id_batch(ids, self.codebook_size, video=self.is_video, max_cells=max_cells)

    def is_video_input(self, x: object) -> TypeGuard[VideoInput]:
        """Whether :meth:`encode` reads ``x`` as a video: a 5D tensor, a path with a video suffix (.mp4, .mkv,
        .webm, ...), for video tokenizers a 4D/5D array, or a list of such."""
        if isinstance(x, Tensor):
            return x.ndim == 5
        if isinstance(x, np.ndarray):
            return self.is_video and x.ndim in (4, 5)  # image tokenizers read (B, H, W, 3) as images
        if isinstance(x, (str, os.PathLike)):
            return Path(x).suffix.lower() in video_suffixes()
        if isinstance(x, (list, tuple)) and x:
            return self.is_video_input(x[0])
        return False

    def __repr__(self) -> str:
        c = self.config
        kind = f"r={c.temporal_downsample}, " if c.video else ""
        size = f"codebook_size={c.codebook_size}"
        return f"Tokenizer(name={c.name!r}, {kind}f={self.downsample}, {size}, device={self.device})"


def _per_tile(streams: TileSwitch, run: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``run`` for the tiles of one chunk, each in its own stream; tiles come in the same order every chunk."""
    order = itertools.count()

    def run_tile(tile: Tensor) -> Tensor:
        streams.switch(next(order))
        return run(tile)

    return run_tile


@dataclass(frozen=True)
class EncodedVideo:
    """The ids of a video file and what is needed to write the decoded video back like the original."""

    ids: Tensor  # (1, t, h, w) int64
    num_frames: int  # frames read from the file; decode(ids, size=(num_frames, height, width)) crops back
    height: int  # displayed size (rotation applied)
    width: int
    fps: float  # the file's average frame rate


def _crop_size(size: object, decoded: tuple[int, ...]) -> tuple[int, ...]:
    """Validate ``size`` ((H, W) or (T, H, W), like ``decoded``) against the decoded size."""
    n = len(decoded)
    if not (
        isinstance(size, (tuple, list, torch.Size))
        and len(size) == n
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        and all(0 < s <= d for s, d in zip(size, decoded, strict=True))
    ):
        layout = "(H, W)" if n == 2 else "(T, H, W)"
        raise InputError(f"size must be {layout} ints within the decoded size {decoded}, got {size!r}")
    return tuple(int(v) for v in size)


def load(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    tile_size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
    convert_from: str | None = None,
    backend: str = "torch",
) -> Tokenizer:
    """Load an exported tokenizer (a directory written by ``vqtok export``, a short name, or a hub name).

    Args:
        name_or_path: export directory, or the short name of a shipped tokenizer: "image" (the default, f8 with
            16384 codes), "video" (4x8x8), or the smoke models "tiny" and "video_tiny".
        device: where the model runs.
        dtype: dtype of the convolutions (float32, bfloat16, float16); the codebook lookup stays fp32.
        chunk_frames: video tokenizers only: frames per streamed chunk (a multiple of the temporal factor);
            larger chunks use more memory, and give the same ids.
        tile_size: images and video frames with a side longer than this many pixels are encoded and
            decoded in overlapping tiles of this side (memory bounded by the tile; ids and pixels then differ
            slightly from an untiled pass, see the README's performance section). ``None`` (the default) never
            tiles; 512 bounds a 4096x4096 image's round trip to about 1 GB.
        max_pixels: the largest image or video frame (H * W) encoded or decoded, 8192 x 8192 by default;
            larger ones are refused with a clear error before any pixel is decoded (image files are checked from
            their header, so decompression bombs cost nothing). ``None`` lifts the limit.
        progress: called after every model call (a batch, an image tile, a video chunk or a chunk's tile) with
            the pixels it covered (B * T * H * W, tiles with their overlap), e.g. a progress bar's ``update``.
        convert_from: for a hub name ``hf://OWNER/REPO/FILE``: the codebase of the published checkpoint it names
            ("taming", "llamagen", "diffusers", "open-magvit2"; see :func:`vqtok.convert`; or ``?from=SOURCE`` at the
            end of the name), converted once and cached beside the download. ``None``: the name is a vqtok export
            (``hf://OWNER/REPO[/FOLDER]``). Downloads go through huggingface_hub's cache (``HF_HUB_OFFLINE=1``
            reads the cache only).
        backend: "torch" (the default), or "onnx": run a directory written by ``vqtok export-onnx`` through
            onnxruntime (the ``onnx`` extra; CPU, float32, threads as torch's), behind the same methods; or "auto":
            "onnx" for a directory written by ``vqtok export-onnx``, else "torch".
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if dtype not in DTYPES.values():
        raise InputError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
    if max_pixels is not None and (type(max_pixels) is not int or max_pixels < 1):  # before the model loads
        raise InputError(f"max_pixels must be None or a positive int, got {max_pixels!r}")
    try:
        device = torch.device(device)
        torch.empty(0, device=device)  # fails here, with torch's reason, if the device is unusable
    except (RuntimeError, TypeError, ValueError, AssertionError) as e:  # AssertionError: CUDA asked of a CPU build
        raise InputError(f"device {device!r} cannot be used: {e}") from None
    root = _resolve(name_or_path, convert_from)
    if backend == "auto":
        from vqtok.backends.onnx_runtime import is_onnx_export  # needs numpy and safetensors only, not onnxruntime

        backend = "onnx" if is_onnx_export(root) else "torch"
    if backend == "onnx":
        return _load_onnx(root, device, dtype, chunk_frames, tile_size, max_pixels, progress)
    model = load_export(root)
    fingerprints = export_fingerprints(root)
    model.requires_grad_(False).eval().to(device)
    for name, module in model.named_children():
        if name != "quantizer":
            module.to(dtype)
    if not model.config.video:
        # NHWC convolutions are faster in oneDNN and cuDNN (torch's stubs omit Module.to's memory_format)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return Tokenizer(model, device, dtype, chunk_frames, tile_size, max_pixels, fingerprints, progress)


def _resolve(name_or_path: str | os.PathLike, convert_from: str | None) -> Path:
    """The export directory of a path, a short name or a hub name (converted from ``convert_from``)."""
    from vqtok.convert import hub

    if hub.is_hub_name(name_or_path):
        return hub.resolve(str(name_or_path), convert_from)
    if convert_from is not None:
        raise InputError(
            f"convert_from is for hub names (hf://...); convert the checkpoint {str(name_or_path)!r} once with "
            f"vqtok convert {name_or_path} OUT --from {convert_from}, then load OUT"
        )
    return resolve_export(name_or_path)


def _load_onnx(
    root: Path,
    device: torch.device,
    dtype: torch.dtype,
    chunk_frames: int,
    tile_size: int | None,
    max_pixels: int | None,
    progress: Callable[[int], None] | None,
) -> Tokenizer:
    """A Tokenizer over the ONNX export at ``root`` (see :mod:`vqtok.backends.onnx_runtime`)."""
    from vqtok.backends.onnx_runtime import OnnxBackend

    if device.type != "cpu" or dtype != torch.float32:
        raise InputError(f"backend='onnx' runs on the CPU in float32; got device={device}, dtype={dtype}")
    onnx = OnnxBackend(root)
    return Tokenizer(onnx, device, dtype, chunk_frames, tile_size, max_pixels, onnx.fingerprints(), progress)
