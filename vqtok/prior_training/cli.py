"""``vqtok prior fit|validate``: the Lightning CLI over :class:`PriorTraining` and :class:`PriorDataModule`."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from vqtok.prior_training.data import PriorDataModule
from vqtok.prior_training.module import PriorTraining
from vqtok.training.cli import TokenizerCLI


class PriorCLI(TokenizerCLI):
    """The tokenizer's CLI (atomic, weights-only checkpoints; argv handed over as given), with the prior's model
    and data; ``data.store`` is also the model's store."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - a jsonargparse LightningArgumentParser
        parser.link_arguments("data.store", "model.store")


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the CLI. ``args`` as after ``vqtok prior``, e.g. ``["fit", "--config", ...]``."""
    return PriorCLI(
        PriorTraining,
        PriorDataModule,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vqtok prior"},
    )
