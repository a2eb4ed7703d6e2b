"""``vqtok fit|validate|test|predict``: the Lightning CLI over :class:`TokenizerTraining` and the image data."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from vqtok.training.data import ImageDataModule
from vqtok.training.module import TokenizerTraining


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the CLI. ``args`` as on the command line, without the leading ``vqtok``."""
    return LightningCLI(
        TokenizerTraining,
        ImageDataModule,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vqtok"},
    )
