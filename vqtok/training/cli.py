"""``vqtok fit|validate|test|predict``: the Lightning CLI over :class:`TokenizerTraining` and a data module.

The data module is chosen in the config by ``data.class_path``: ``vqtok.training.data.ImageDataModule`` (the
default) or ``vqtok.training.data.VideoDataModule``. Checkpoints are written atomically and
read weights-only from local files (:class:`~vqtok.training.checkpoint_io.AtomicCheckpointIO`) unless the config
names its own checkpoint I/O plugin.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.cli import LightningCLI

from vqtok.training.checkpoint_io import AtomicCheckpointIO
from vqtok.training.data import ImageDataModule
from vqtok.training.module import TokenizerTraining
from vqtok.training.options import regroup_flat_options


class TokenizerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - a jsonargparse LightningArgumentParser
        parser.set_defaults({"data": {"class_path": f"{ImageDataModule.__module__}.{ImageDataModule.__name__}"}})

    def parse_arguments(self, parser, args) -> None:  # noqa: ANN001 - a LightningArgumentParser; list or None
        # LightningCLI warns when args are given while sys.argv holds arguments too, taking it for a mix-up; vqtok's
        # main always hands over its own argv (the command line without "vqtok", or a caller's list), so parse it.
        self.config = parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        # Lightning 2.6 merges the hyperparameters a checkpoint saved into the config when --ckpt_path names a file
        # (LightningCLI._parse_ckpt_path). Checkpoints written before the training options were grouped hold them
        # flat (model.learning_rate, ...), which the parser now refuses: regroup them first, so those runs resume.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams = regroup_flat_options({k: v for k, v in hparams.items() if k != "_instantiator"})
        if hparams:
            try:
                self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
            except SystemExit:
                sys.stderr.write(f"the hyperparameters saved in {ckpt_path} do not fit this version's model options\n")
                raise

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        plugins = kwargs.pop("plugins", None) or self._get(self.config_init, "trainer", default={}).get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(plugins=plugins, **kwargs)


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the CLI. ``args`` as on the command line, without the leading ``vqtok``."""
    return TokenizerCLI(
        TokenizerTraining,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vqtok"},
    )
