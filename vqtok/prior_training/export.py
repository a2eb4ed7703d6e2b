"""``vqtok prior export``: a training checkpoint -> a prior export (config.json + prior.safetensors)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from vqtok.errors import ConfigError, ExportError
from vqtok.prior import PriorConfig, PriorInfo, build_prior, save_prior
from vqtok.prior_training.module import CHECKPOINT_PRIOR_KEY


def export_prior_checkpoint(ckpt: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Read a ``vqtok prior fit`` checkpoint (weights only) and write its prior to ``out_dir``.

    Raises:
        ExportError: the file is not a prior training checkpoint.
    """
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as e:
        raise ExportError(f"cannot read the checkpoint {ckpt}: {e}") from None
    saved = checkpoint.get(CHECKPOINT_PRIOR_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        raise ExportError(f"{ckpt} is not a checkpoint written by vqtok prior fit")
    try:
        config = PriorConfig.from_dict(saved["prior"])
        info = PriorInfo(saved["tokenizer"], saved["tokenizer_fingerprint"], saved["classes"], saved["grid"])
    except (KeyError, ConfigError) as e:
        raise ExportError(f"{ckpt}: invalid prior description ({e})") from None
    prior = build_prior(config)
    state = {k.removeprefix("prior."): v for k, v in checkpoint["state_dict"].items() if k.startswith("prior.")}
    try:
        prior.load_state_dict(state)
    except RuntimeError as e:
        raise ExportError(f"{ckpt}: the weights do not match the prior's config ({e})") from None
    return save_prior(prior, info, out_dir)
