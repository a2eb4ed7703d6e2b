"""LightningModule that trains a VQ-VAE tokenizer against a PatchGAN discriminator (manual optimisation)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.config import CHECKPOINT_CONFIG_KEY, TokenizerConfig
from vqtok.errors import ConfigError, FileFormatError
from vqtok.metrics import psnr, ssim
from vqtok.model.vqvae import VQVAE
from vqtok.training.discriminator import PatchDiscriminator
from vqtok.training.image_log import log_reconstructions
from vqtok.training.losses import adaptive_weight, hinge_d_loss, hinge_g_loss

log = logging.getLogger(__name__)


class TokenizerTraining(L.LightningModule):
    """Trains :class:`VQVAE` with L1/L2 (+ optional perceptual) reconstruction, the quantizer's losses and a
    hinge-loss PatchGAN whose weight is balanced adaptively at the decoder's last layer.

    Args:
        tokenizer: architecture and quantizer of the tokenizer being trained.
        learning_rate: Adam learning rate of generator and discriminator.
        l1_weight: weight of the L1 reconstruction loss.
        l2_weight: weight of the L2 (MSE) reconstruction loss.
        perceptual_weight: weight of the LPIPS-style loss (0 disables it).
        perceptual_weights: local file with VGG16 (+ optional LPIPS head) weights; needed when perceptual_weight > 0.
        disc_weight: scale of the adaptive GAN weight (0 disables the discriminator).
        disc_start_step: training batches before the discriminator starts (counted here, not by global_step).
        disc_channels: width of the discriminator's first layer.
        disc_layers: number of stride-2 layers in the discriminator.
        grad_clip: max gradient norm for both optimizers (0 disables clipping).
        image_log_every_n_steps: batches between logged input/reconstruction grids (0 disables).
        max_nonfinite_steps: stop with an error after this many non-finite losses in a row (each is skipped).
    """

    def __init__(
        self,
        tokenizer: TokenizerConfig,
        learning_rate: float = 1e-4,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        perceptual_weights: str | None = None,
        disc_weight: float = 0.5,
        disc_start_step: int = 20_000,
        disc_channels: int = 64,
        disc_layers: int = 3,
        grad_clip: float = 1.0,
        image_log_every_n_steps: int = 500,
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        if isinstance(tokenizer, dict):  # load_from_checkpoint passes the saved dict back
            tokenizer = TokenizerConfig.from_dict(tokenizer)
        self.save_hyperparameters(ignore=["tokenizer"])
        self.hparams["tokenizer"] = tokenizer.to_dict()  # plain data, so checkpoints load with weights_only=True
        self.automatic_optimization = False
        self.config = tokenizer
        self.model = VQVAE(tokenizer)
        self.discriminator = PatchDiscriminator(tokenizer.in_channels, disc_channels, disc_layers)
        self.perceptual = _build_perceptual(perceptual_weight, perceptual_weights)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self.nonfinite_in_row = 0
        self._last_images: Tensor | None = None
        self.failed_images = 0  # unreadable files met by this rank in the current epoch

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> reconstruction (B, C, H, W)."""
        return self.model(x)[0]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr, betas = self.hparams.learning_rate, (0.5, 0.9)
        opt_g = torch.optim.Adam(self.model.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        return [opt_g, opt_d]

    def reconstruction_loss(self, x: Tensor, x_rec: Tensor) -> dict[str, Tensor]:
        """Weighted reconstruction terms and their sum under "rec"."""
        h = self.hparams
        terms = {"l1": F.l1_loss(x_rec, x), "l2": F.mse_loss(x_rec, x)}
        rec = h.l1_weight * terms["l1"] + h.l2_weight * terms["l2"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(x_rec, x)
            rec = rec + h.perceptual_weight * terms["perceptual"]
        return {**terms, "rec": rec}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["images"]
        self.failed_images += int(batch["num_failed"])
        if x.numel() == 0:  # every image failed to load (each was named in a warning)
            if self._last_images is None:
                raise FileFormatError("the first training batch has no readable image; check data.root")
            log.warning("batch %d: no readable image; training on the previous batch again", batch_idx)
            x = self._last_images  # every DDP rank must take part in every step, so a step is never skipped
        self._last_images = x.detach()
        opt_g, opt_d = self.optimizers()
        gan_active = self.hparams.disc_weight > 0 and int(self.batches_seen) >= self.hparams.disc_start_step

        with self.toggled_optimizer(opt_g):
            x_rec, q = self.model(x)
            losses = self.reconstruction_loss(x, x_rec)
            loss_g = losses["rec"] + q.loss
            if gan_active:
                losses["g_adv"] = hinge_g_loss(self.discriminator(x_rec))
                losses["adaptive_weight"] = adaptive_weight(losses["rec"], losses["g_adv"], self.model.last_layer)
                loss_g = loss_g + self.hparams.disc_weight * losses["adaptive_weight"] * losses["g_adv"]
            finite = self._all_finite(loss_g)
            self._optimizer_step(opt_g, loss_g, finite)

        if gan_active and finite:
            with self.toggled_optimizer(opt_d):
                loss_d = hinge_d_loss(self.discriminator(x.detach()), self.discriminator(x_rec.detach()))
                self._optimizer_step(opt_d, loss_d, self._all_finite(loss_d))
            losses["d"] = loss_d

        self.batches_seen += 1
        losses["disc_active"] = torch.tensor(float(gan_active))
        self._log_train(x, x_rec, q, losses, loss_g)

    def _all_finite(self, loss: Tensor) -> bool:
        """True when the loss is finite on every rank (all ranks must agree to skip a step together)."""
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=self.device)
        bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if float(bad) == 0:
            self.nonfinite_in_row = 0
            return True
        self.nonfinite_in_row += 1
        self.log("train/nonfinite_steps", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)
        log.warning(
            "non-finite loss at batch %d: step skipped (%d in a row)", int(self.batches_seen), self.nonfinite_in_row
        )
        if self.nonfinite_in_row >= self.hparams.max_nonfinite_steps:
            raise RuntimeError(
                f"training stopped: {self.nonfinite_in_row} non-finite losses in a row (model.max_nonfinite_steps="
                f"{self.hparams.max_nonfinite_steps}); lower model.learning_rate or check the data"
            )
        return False

    def _optimizer_step(self, opt: torch.optim.Optimizer, loss: Tensor, finite: bool) -> None:
        """Backward always runs (DDP expects it after every forward); the update only when the loss is finite."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if not finite:
            opt.zero_grad(set_to_none=True)
            return
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()

    def _log_train(self, x: Tensor, x_rec: Tensor, q: Any, losses: dict[str, Tensor], loss_g: Tensor) -> None:
        metrics = {f"train/{k}": v.detach().float() for k, v in losses.items()}
        metrics["train/loss"] = loss_g.detach().float()
        metrics["train/quant_loss"] = q.loss.detach()
        metrics["train/psnr"] = psnr(x_rec.detach().float().clamp(-1, 1), x.float()).mean()
        metrics["codebook/usage_batch"] = q.usage
        metrics["codebook/perplexity_batch"] = q.perplexity
        metrics["codebook/dead_codes"] = q.num_dead
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False)
        every = self.hparams.image_log_every_n_steps
        if every > 0 and (int(self.batches_seen) - 1) % every == 0 and self.trainer.is_global_zero:
            self.log_dict(
                {"train/ssim": ssim(x_rec.detach().float().clamp(-1, 1), x.float()).mean()}, rank_zero_only=True
            )
            log_reconstructions(self.loggers, x, x_rec, int(self.batches_seen), "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        x = batch["images"]
        if x.numel() == 0:
            return
        x_rec, q = self.model(x)
        x_rec = x_rec.float().clamp(-1, 1)
        losses = self.reconstruction_loss(x, x_rec)
        metrics = {f"{stage}/{k}": v.float() for k, v in losses.items()}
        metrics[f"{stage}/psnr"] = psnr(x_rec, x.float()).mean()
        metrics[f"{stage}/ssim"] = ssim(x_rec, x.float()).mean()
        metrics[f"{stage}/usage_batch"] = q.usage
        self.log_dict(metrics, sync_dist=True, batch_size=x.shape[0])
        if batch_idx == 0 and self.trainer.is_global_zero:
            log_reconstructions(self.loggers, x, x_rec, int(self.batches_seen), stage)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Token ids (B, h, w) of a batch of images."""
        return self.model.encode(batch["images"]).ids

    def on_train_epoch_start(self) -> None:
        self.model.quantizer.reset_epoch_stats()
        self.failed_images = 0

    def on_train_epoch_end(self) -> None:
        stats = self.model.quantizer.epoch_stats()
        # Reduced here by every rank at once: a sync_dist metric would be reduced whenever some callback reads it,
        # which the progress bar does on rank 0 only, and the other ranks would never join that collective.
        failed = self.trainer.strategy.reduce(
            torch.tensor(float(self.failed_images), device=self.device), reduce_op="sum"
        )
        epoch_stats = {
            "codebook/usage_epoch": stats["usage"],  # identical on every rank: the counts are all-reduced
            "codebook/perplexity_epoch": stats["perplexity"],
            "data/failed_images": failed,
        }
        self.log_dict(epoch_stats, rank_zero_only=True)
        if self.trainer.world_size > 1:  # every rank must hold the identical codebook; a non-zero value is a bug
            codebooks = self.all_gather(self.model.quantizer.embed.detach())  # (world, K, D)
            self.log("codebook/rank_max_diff", (codebooks - codebooks[0]).abs().max(), rank_zero_only=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.config.to_dict()  # what `vqtok export` reads


def _build_perceptual(weight: float, weights_path: str | None) -> torch.nn.Module | None:
    if weight <= 0:
        return None
    if not weights_path:
        raise ConfigError(
            "model.perceptual_weight > 0 needs model.perceptual_weights: the path of a local VGG16 weights file "
            "(torchvision vgg16 state dict, .safetensors or .pth); nothing is downloaded"
        )
    from vqtok.training.perceptual import PerceptualLoss

    return PerceptualLoss(weights_path)
