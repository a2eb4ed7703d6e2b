"""A trained prior on disk: ``config.json`` (architecture, classes, the tokenizer it was trained on) plus
``prior.safetensors``. Loading needs torch and safetensors only; nothing is unpickled."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from vqtok.errors import ConfigError, ExportError, InputError
from vqtok.io.atomic import atomic_file
from vqtok.io.tensors import save_safetensors
from vqtok.prior.config import PriorConfig
from vqtok.prior.masked import MaskedPrior
from vqtok.prior.model import ARPrior
from vqtok.prior.sampling import sample

PRIOR_FORMAT = "vqtok-prior-1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "prior.safetensors"


@dataclass(frozen=True)
class PriorInfo:
    """What a prior was trained on, saved beside its weights."""

    tokenizer: str  # the tokenizer's config name (as the store records it)
    tokenizer_fingerprint: str  # ids are only meaningful for the tokenizer with this fingerprint
    classes: list[str]  # class names in label order; empty for an unconditional prior
    grid: list[int]  # the store's most common token grid: the default size to sample

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("tokenizer", "tokenizer_fingerprint", "classes", "grid")}


def save_prior(model: ARPrior | MaskedPrior, info: PriorInfo, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/config.json`` and ``out_dir/prior.safetensors`` (each atomically); returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_file(out / WEIGHTS_FILE) as tmp:
        save_safetensors(tensors, tmp, metadata={"format": PRIOR_FORMAT})
    config = {"format": PRIOR_FORMAT, "prior": model.config.to_dict(), **info.to_dict()}
    with atomic_file(out / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return out


class Prior:
    """A loaded prior: the model, its classes and the tokenizer whose ids it generates.

    >>> prior = vqtok.prior.load_prior("priors/shapes")
    >>> ids = prior.sample(8, class_name="disc", cfg_scale=2.0)   # int64 (8, h, w)
    >>> images = vqtok.load(prior.tokenizer).decode(ids)          # check prior.tokenizer_fingerprint first
    """

    def __init__(self, model: ARPrior | MaskedPrior, info: PriorInfo) -> None:
        self.model = model.eval()
        self.info = info

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @property
    def tokenizer(self) -> str:
        return self.info.tokenizer

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.info.tokenizer_fingerprint

    def class_index(self, name: str) -> int:
        """The label of class ``name``.

        Raises:
            InputError: the prior has no such class.
        """
        if name not in self.info.classes:
            known = ", ".join(self.info.classes) or "none: the prior is unconditional"
            raise InputError(f"the prior knows no class {name!r} (its classes: {known})")
        return self.info.classes.index(name)

    def sample(
        self,
        n: int,
        class_name: str | Sequence[str] | None = None,
        grid: Sequence[int] | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> Tensor:
        """``n`` id grids, int64 (n, *grid), of class ``class_name`` (one name, or n names; None: unconditional).

        ``grid`` defaults to the training store's most common grid; ``options`` are those of
        :func:`vqtok.prior.sample` (cfg_scale, temperature, top_k, top_p, steps, ...).
        """
        labels = None
        if class_name is not None:
            names = [class_name] * n if isinstance(class_name, str) else list(class_name)
            labels = [self.class_index(c) for c in names]
        device = next(self.model.parameters()).device
        generator = None if seed is None else torch.Generator(device).manual_seed(seed)
        return sample(self.model, grid or self.info.grid, n, labels, generator=generator, **options)


def load_prior(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Prior:
    """Load a prior written by :func:`save_prior` (``vqtok prior export``).

    Raises:
        ExportError: ``path`` is not a prior export, or its weights do not match its config.
    """
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ExportError(f"{path} is not a vqtok prior export: cannot read {CONFIG_FILE} ({e})") from None
    if not isinstance(config, dict) or config.get("format") != PRIOR_FORMAT:
        raise ExportError(f"{path / CONFIG_FILE} is not a {PRIOR_FORMAT} config")
    try:
        prior_config = PriorConfig.from_dict(config["prior"])
        info = PriorInfo(
            str(config["tokenizer"]),
            str(config["tokenizer_fingerprint"]),
            [str(c) for c in config["classes"]],
            [int(g) for g in config["grid"]],
        )
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise ExportError(f"{path / CONFIG_FILE}: invalid prior config ({e})") from None
    if len(info.classes) != prior_config.num_classes:
        raise ExportError(f"{path / CONFIG_FILE}: {len(info.classes)} class names for {prior_config.num_classes}")
    with torch.device("meta"):
        model = MaskedPrior(prior_config) if prior_config.objective == "maskgit" else ARPrior(prior_config)
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as e:
        raise ExportError(f"cannot read {path / WEIGHTS_FILE}: {e}") from None
    tensors = {k: v.float() for k, v in tensors.items()}  # a float16 copy (smaller to ship) runs in float32
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if {k: tuple(v.shape) for k, v in tensors.items()} != expected:
        raise ExportError(f"{path / WEIGHTS_FILE} does not hold the tensors its config describes")
    model.load_state_dict(tensors, assign=True)
    model.rope = type(model.rope)(prior_config.head_dim, prior_config.rope_base)  # buffers not in the file
    return Prior(model.to(device), info)
