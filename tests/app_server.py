"""Shared by the app tests: tiny tokenizers exported for the test, and the real app served on a free local port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from vqtok.config import TokenizerConfig
from vqtok.export import save_export
from vqtok.model.vqvae import VQVAE


def export_tiny_models(folder: Path, seed: int = 0) -> Path:
    """Random-weight ``tiny`` (image) and ``video_tiny`` exports in ``folder``: figures are checked against the
    public API, so the weights need not be trained."""
    torch.manual_seed(seed)
    save_export(VQVAE(TokenizerConfig.from_name("tiny")), folder / "tiny")
    save_export(VQVAE(TokenizerConfig.from_name("video_tiny")), folder / "video_tiny")
    return folder


@contextmanager
def serve_app(models_dir: Path, limits, temp_dir: Path, priors_dir: Path | None = None) -> Iterator[str]:  # noqa: ANN001
    """Launch the app (as ``vqtok demo`` does) with a private Gradio temp dir, and the prior exports inside
    ``priors_dir`` for the Generate tab; yields its URL."""
    from app.app import launch
    from app.models import ModelRegistry
    from app.priors import PriorRegistry

    saved = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    os.environ.update(GRADIO_TEMP_DIR=str(temp_dir), GRADIO_ANALYTICS_ENABLED="False")
    priors = PriorRegistry.discover(folders=[priors_dir]) if priors_dir else None
    demo = launch(ModelRegistry.discover(folders=[models_dir]), limits, port=None, block=False, priors=priors)
    try:
        yield demo.local_url
    finally:
        demo.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
