"""Grids of inputs above their reconstructions, sent to TensorBoard or written as PNGs beside other logs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.fabric.loggers import Logger
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from vqtok.io.images import save_image

log = logging.getLogger(__name__)


def reconstruction_grid(x: Tensor, x_rec: Tensor, max_images: int = 8) -> Tensor:
    """Inputs (top row) over reconstructions (bottom row): (B, 3, H, W) pairs in [-1, 1] -> (3, 2H, nW) in [0, 1].

    For videos (B, 3, T, H, W) the rows show the frames of the first clip.
    """
    if x.ndim == 5:
        x, x_rec = x[0].transpose(0, 1), x_rec[0].transpose(0, 1)  # (T, 3, H, W)
    n = min(max_images, x.shape[0])
    top = torch.cat(list(x[:n].detach().float()), dim=-1)  # (3, H, n*W)
    bottom = torch.cat(list(x_rec[:n].detach().float()), dim=-1)
    return ((torch.cat([top, bottom], dim=-2).clamp(-1, 1) + 1) / 2).cpu()


def log_reconstructions(loggers: Sequence[Logger], x: Tensor, x_rec: Tensor, step: int, tag: str) -> None:
    """Send the grid to every TensorBoard logger; other loggers get a PNG in ``<log_dir>/images/``."""
    grid = reconstruction_grid(x, x_rec)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(f"{tag}/reconstructions", grid, global_step=step)
        elif logger.log_dir is not None:
            path = Path(logger.log_dir) / "images" / f"{tag}_{step:08d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(path, grid.permute(1, 2, 0).numpy())
