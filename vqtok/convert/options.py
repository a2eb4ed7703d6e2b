"""What a converter is told besides the checkpoint: labels for the export and what the tensors cannot show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`vqtok.convert`; ``None`` takes the source's published default.

    Attributes:
        name: the export's name (default: from the checkpoint's file or folder name).
        license: the published model's licence, as a Hugging Face licence id (default: the source code's licence).
        norm_groups: GroupNorm groups (taming and LlamaGen hard-code 32; diffusers' config.json says).
        l2_normalize: codes looked up by cosine similarity (LlamaGen's codebook_l2_norm, True when published).
        source: where the model was published, recorded in the export (default: the codebase and the name).
    """

    name: str | None = None
    license: str | None = None
    norm_groups: int | None = None
    l2_normalize: bool | None = None
    source: str | None = None


def default_name(path: Path) -> str:
    """A model's name from its file: ``logs/vqgan_imagenet_f16_16384/checkpoints/last.ckpt`` ->
    ``vqgan_imagenet_f16_16384``; ``vq_ds16_c2i.pt`` -> ``vq_ds16_c2i``."""
    generic = {"last", "model", "checkpoints", "checkpoint", "ckpts", "vqvae", "snapshots"}
    for part in [path.stem, *(p.name for p in path.parents)]:
        if part and part.lower() not in generic and not _looks_like_revision(part):
            return part
    return path.stem or "converted"


def _looks_like_revision(part: str) -> bool:
    return len(part) == 40 and all(c in "0123456789abcdef" for c in part)
