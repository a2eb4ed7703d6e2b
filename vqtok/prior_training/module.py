"""LightningModule that trains a prior (:mod:`vqtok.prior`) on packed sequences of a token store."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from vqtok.errors import ConfigError, InputError
from vqtok.prior import PriorConfig, PriorInfo, build_prior
from vqtok.store import TokenStore

CHECKPOINT_PRIOR_KEY = "vqtok_prior"  # in training checkpoints: the prior's config and info, what export reads


class PriorTraining(L.LightningModule):
    """Trains an :class:`~vqtok.prior.ARPrior` or :class:`~vqtok.prior.MaskedPrior` with AdamW, a linear warm-up
    and a half-cosine decay; logs the loss in nats and bits per token, on training and held-out sequences.

    The vocabulary and the classes come from the store (``data.store``, linked here by the CLI).

    Args:
        store: the token store the prior learns.
        dim: width of the transformer.
        depth: number of blocks.
        heads: attention heads.
        objective: "ar" (next token) or "maskgit" (masked tokens).
        label_dropout: share of items trained without their class (for classifier-free guidance).
        gradient_checkpointing: recompute each block in the backward pass (less memory, more time).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay of the matrices (not of embeddings and norms).
        warmup_steps: optimizer steps of linear warm-up.
        lr_decay_steps: steps (warm-up included) of the half-cosine decay to a tenth of the rate (0: no decay).
        conditional: True: class-conditional, and a store without labels is an error; False: unconditional (labels
            ignored); None: conditional exactly when the store is labelled.
        seed: the label dropout and MaskGIT's masks of each step are drawn from a generator seeded by
            (seed, step, batch, rank), never from torch's global one, so a resumed run draws what the whole run drew.
            (``dropout`` above 0 still draws from the global generator.)
    """

    def __init__(
        self,
        store: str,
        dim: int = 256,
        depth: int = 6,
        heads: int = 4,
        objective: str = "ar",
        label_dropout: float = 0.1,
        gradient_checkpointing: bool = False,
        learning_rate: float = 3e-4,
        weight_decay: float = 0.05,
        warmup_steps: int = 100,
        lr_decay_steps: int = 0,
        conditional: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        reader = TokenStore(store)
        records, meta = reader.records, reader.meta
        if not records:
            raise InputError(f"the store {store} has no items: tokenize a data set into it first")
        if conditional and not meta.classes:
            raise ConfigError(
                f"model.conditional is true, but the store {store} has no labels: tokenize it with --labels folder "
                "(data/CLASS/...), or set model.conditional to false or null"
            )
        classes = list(meta.classes or []) if conditional is not False else []
        self.config = PriorConfig(
            num_codes=meta.num_codes,
            num_classes=len(classes),
            dim=dim,
            depth=depth,
            heads=heads,
            objective=objective,
            label_dropout=label_dropout,
            gradient_checkpointing=gradient_checkpointing,
        )
        grids = Counter(tuple(r.grid) for r in records)
        self.info = PriorInfo(meta.model, meta.model_fingerprint, classes, list(grids.most_common(1)[0][0]))
        self.prior = build_prior(self.config)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.prior.loss(batch, self._step_generator(batch_idx))
        tokens = int((batch["doc"] >= 0).sum())
        self.log("train/loss", loss, prog_bar=True, batch_size=tokens)
        self.log("train/bits_per_token", loss / math.log(2), batch_size=tokens)
        self.log("train/tokens", float(tokens), reduce_fx="sum", on_step=False, on_epoch=True)
        return loss

    def _step_generator(self, batch_idx: int) -> torch.Generator:
        """The generator of a training batch's random draws: a function of (seed, step, batch, rank) only."""
        words = [self.hparams["seed"], self.global_step, batch_idx, self.global_rank]
        seed = int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)
        return torch.Generator(self.device).manual_seed(seed)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        generator = torch.Generator(self.device).manual_seed(batch_idx)  # MaskGIT: the same masks every time
        loss = self.prior.loss(batch, generator)
        tokens = int((batch["doc"] >= 0).sum())
        self.log("val/loss", loss, batch_size=tokens, sync_dist=True)
        self.log("val/bits_per_token", loss / math.log(2), prog_bar=True, batch_size=tokens, sync_dist=True)

    def configure_optimizers(self) -> Any:  # noqa: ANN401 - Lightning's union of optimizer configs
        decay = [p for n, p in self.prior.named_parameters() if p.ndim >= 2 and "emb" not in n]
        no_decay = [p for n, p in self.prior.named_parameters() if p.ndim < 2 or "emb" in n]
        groups = [
            {"params": decay, "weight_decay": self.hparams["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=self.hparams["learning_rate"], betas=(0.9, 0.95))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _lr_factor(self, step: int) -> float:
        warmup, decay = self.hparams["warmup_steps"], self.hparams["lr_decay_steps"]
        if warmup and step < warmup:
            return (step + 1) / warmup
        if not decay or step >= decay:
            return 0.1 if decay else 1.0
        progress = (step - warmup) / max(1, decay - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_PRIOR_KEY] = {"prior": self.config.to_dict(), **self.info.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume (or validate) a prior on a store of another tokenizer or other classes.

        Raises:
            ConfigError: the checkpoint's prior was trained on the ids of another tokenizer, or on other classes.
        """
        saved = checkpoint.get(CHECKPOINT_PRIOR_KEY)
        if not isinstance(saved, dict):
            raise ConfigError("the checkpoint was not written by vqtok prior fit (no prior description in it)")
        store = self.hparams["store"]
        if saved.get("tokenizer_fingerprint") != self.info.tokenizer_fingerprint:
            raise ConfigError(
                f"the checkpoint's prior was trained on the ids of {saved.get('tokenizer')!r} "
                f"({saved.get('tokenizer_fingerprint')}), but the store {store} holds those of {self.info.tokenizer!r} "
                f"({self.info.tokenizer_fingerprint}): give data.store a store tokenized with the prior's tokenizer"
            )
        if list(saved.get("classes", [])) != self.info.classes:
            raise ConfigError(
                f"the checkpoint's prior knows the classes {saved.get('classes')}, the store {store} has "
                f"{self.info.classes}: resume on the store it was trained on"
            )
