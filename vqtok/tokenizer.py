"""The public facade: ``vqtok.load`` and :class:`Tokenizer` (``encode``, ``decode``, ``codes``)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.config import TokenizerConfig
from vqtok.errors import ExportError, InputError
from vqtok.export import load_export
from vqtok.inputs import ImageInput, id_batch, image_batch
from vqtok.model.vqvae import VQVAE

# Where short names such as "tiny" are looked up: the checkout's checkpoints/ folder.
CHECKPOINT_DIRS = (Path(__file__).resolve().parent.parent / "checkpoints",)


class Tokenizer:
    """An exported VQ-VAE tokenizer ready for inference. Build it with :func:`load`.

    Images are float tensors (B, 3, H, W) in [-1, 1]; token ids are int64 tensors (B, H/f, W/f) in
    [0, codebook_size), f = :attr:`downsample`. Everything runs under ``torch.inference_mode``; the nearest-code
    lookup is always fp32 whatever ``dtype`` the convolutions use.
    """

    def __init__(self, model: VQVAE, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype

    @property
    def config(self) -> TokenizerConfig:
        return self.model.config

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies this model (config and codebook), so token files from another model can be refused."""
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        h.update(self.model.quantizer.embed.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def codebook_size(self) -> int:
        """Number of codes K: ids lie in [0, K)."""
        return self.config.num_codes

    @property
    def downsample(self) -> int:
        """Spatial factor f: an H x W image gives an ceil(H/f) x ceil(W/f) grid of ids."""
        return self.config.downsample

    @torch.inference_mode()
    def encode(self, x: ImageInput) -> Tensor:
        """Images -> token ids.

        Args:
            x: a float tensor (B, 3, H, W) in [-1, 1]; a PIL image; a uint8 array (H, W, 3) or (B, H, W, 3);
                an image file path; or a list of PIL images / arrays / paths of one size. Any H, W: the input is
                padded (edge replication) up to a multiple of f; pass ``size=(H, W)`` to :meth:`decode` to crop back.

        Returns:
            int64 tensor (B, ceil(H/f), ceil(W/f)) on this tokenizer's device.
        """
        x = image_batch(x, self.config.in_channels).to(self.device)
        x = _pad_to_multiple(x, self.downsample).to(self.dtype)
        return self.model.encode(x).ids

    @torch.inference_mode()
    def decode(self, ids: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Token ids (B, h, w) -> images float32 (B, 3, h*f, w*f) in [-1, 1], or cropped to ``size=(H, W)``."""
        ids = id_batch(ids, self.codebook_size).to(self.device)
        y = self.model.decode_ids(ids).float().clamp(-1, 1)
        if size is not None:
            H, W = _crop_size(size, tuple(y.shape[-2:]))
            y = y[..., :H, :W]
        return y

    @torch.inference_mode()
    def codes(self, ids: Tensor) -> Tensor:
        """Token ids (B, h, w) -> the continuous code vectors float32 (B, code_dim, h, w) the decoder receives."""
        return self.model.quantizer.indices_to_codes(id_batch(ids, self.codebook_size).to(self.device))

    def __repr__(self) -> str:
        c = self.config
        return f"Tokenizer(name={c.name!r}, f={self.downsample}, codebook_size={c.num_codes}, device={self.device})"


def _crop_size(size: object, decoded: tuple[int, ...]) -> tuple[int, int]:
    """Validate ``size=(H, W)`` against the decoded (h*f, w*f)."""
    ok = isinstance(size, (tuple, list, torch.Size)) and len(size) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    if not ok or not (0 < size[0] <= decoded[0] and 0 < size[1] <= decoded[1]):
        raise InputError(f"size must be (H, W) ints within the decoded size {decoded}, got {size!r}")
    return int(size[0]), int(size[1])


def _pad_to_multiple(x: Tensor, f: int) -> Tensor:
    """(B, C, H, W) -> (B, C, ceil(H/f)*f, ceil(W/f)*f), replicating the last row/column."""
    pad_h, pad_w = -x.shape[-2] % f, -x.shape[-1] % f
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def resolve_export(name_or_path: str | os.PathLike) -> Path:
    """An export directory from a path, or from a short name of a checkpoint in checkpoints/."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if len(path.parts) == 1:
        for root in CHECKPOINT_DIRS:
            if (root / path).is_dir():
                return root / path
    known = sorted(p.name for root in CHECKPOINT_DIRS if root.is_dir() for p in root.iterdir() if p.is_dir())
    raise ExportError(f"no tokenizer export at {str(name_or_path)!r}: not a directory, nor a short name of {known}")


def load(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tokenizer:
    """Load an exported tokenizer (a directory written by ``vqtok export``, or a short name).

    Args:
        name_or_path: export directory, or the name of a directory in checkpoints/.
        device: where the model runs.
        dtype: dtype of the convolutions (float32, bfloat16, float16); the codebook lookup stays fp32.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise InputError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
    try:
        device = torch.device(device)
        torch.empty(0, device=device)  # fails here, with torch's reason, if the device is unusable
    except (RuntimeError, TypeError) as e:
        raise InputError(f"device {device!r} cannot be used: {e}") from None
    model = load_export(resolve_export(name_or_path))
    model.requires_grad_(False).eval().to(device)
    for name, module in model.named_children():
        if name != "quantizer":
            module.to(dtype)
    return Tokenizer(model, device, dtype)
