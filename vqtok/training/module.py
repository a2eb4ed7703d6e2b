"""LightningModule that trains a VQ-VAE tokenizer (image or causal video) against a PatchGAN discriminator
(manual optimisation).

Batches are dicts with ``"images"`` (B, 3, H, W) and/or ``"videos"`` (B, 3, T, H, W) in [-1, 1] and
``"num_failed"``. A video tokenizer trains on both in every step (images as 1-frame videos), so its image path
stays good; each kind's losses are averaged over its own pixels and then summed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from vqtok.config import CHECKPOINT_CONFIG_KEY, QuantizerTraining, TokenizerConfig
from vqtok.errors import ConfigError, FileFormatError, TrainingError
from vqtok.metrics import psnr, ssim
from vqtok.model.inflate import architecture_differences, check_inflatable, inflate_state_dict
from vqtok.model.quantizers import QuantizerOutput
from vqtok.model.vqvae import VQVAE
from vqtok.training.discriminator import PatchDiscriminator
from vqtok.training.image_log import log_reconstructions
from vqtok.training.losses import adaptive_weight, hinge_d_loss, hinge_g_loss, ssim_loss
from vqtok.training.options import GanOptions, LossWeights, OptimizerOptions, as_options

log = logging.getLogger(__name__)

_RESUME_STATE_KEY = "vqtok_resume_state"  # training checkpoints: random and counter state beyond the state dict


class TokenizerTraining(L.LightningModule):
    """Trains :class:`VQVAE` with L1/L2 (+ optional SSIM and perceptual) reconstruction, the quantizer's losses and a
    hinge-loss PatchGAN whose weight is balanced adaptively at the decoder's last layer.

    Args:
        tokenizer: architecture of the tokenizer being trained (what its export's config.json holds).
        quantizer_training: how the quantizer trains (EMA, restarts, loss weights); not part of the export.
        gradient_checkpointing: recompute ResNet blocks in backward to save activation memory.
        optimizer: Adam, its learning-rate schedule and gradient clipping (YAML ``model.optimizer``).
        loss: the reconstruction terms' weights (YAML ``model.loss``).
        gan: the PatchGAN's weight, start and size (YAML ``model.gan``).
        image_log_every_n_steps: batches between logged input/reconstruction grids (0 disables).
        channels_last: keep an image model's weights and batches channels-last (faster convolutions on CPU and
            with bf16; no effect on a video model).
        max_nonfinite_steps: stop with an error after this many non-finite losses in a row (each is skipped).
        init_from: an exported tokenizer (directory or short name) to start a fresh run from: an image export
            initialises a video tokenizer by inflating its 2D kernels (see :mod:`vqtok.model.inflate`); an export of
            the same kind is copied. Read once, when a run starts without ``--ckpt_path``: a resumed run takes its
            weights from the checkpoint, so the export may since have moved or gone.
    """

    batches_seen: Tensor  # () int64 buffer: training batches so far (checkpointed; drives the schedules)

    def __init__(
        self,
        tokenizer: TokenizerConfig,
        quantizer_training: QuantizerTraining | None = None,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerOptions | None = None,
        loss: LossWeights | None = None,
        gan: GanOptions | None = None,
        image_log_every_n_steps: int = 500,
        max_nonfinite_steps: int = 10,
        channels_last: bool = False,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        optimizer = as_options(OptimizerOptions, optimizer, "model.optimizer")
        loss = as_options(LossWeights, loss, "model.loss")
        gan = as_options(GanOptions, gan, "model.gan")
        if type(max_nonfinite_steps) is not int or max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps must be an int >= 1, got {max_nonfinite_steps!r}")
        if isinstance(tokenizer, dict):  # load_from_checkpoint passes the saved dict back
            tokenizer = TokenizerConfig.from_dict(tokenizer)
        if isinstance(quantizer_training, dict):
            quantizer_training = QuantizerTraining(**quantizer_training)
        quantizer_training = quantizer_training or QuantizerTraining()
        self.save_hyperparameters(ignore=["tokenizer", "quantizer_training", "optimizer", "loss", "gan"])
        # Plain data, so checkpoints load with weights_only=True.
        self.hparams["tokenizer"] = tokenizer.to_dict()
        self.hparams["quantizer_training"] = dataclasses.asdict(quantizer_training)
        for name, options in (("optimizer", optimizer), ("loss", loss), ("gan", gan)):
            self.hparams[name] = dataclasses.asdict(options)
        self.optimizer_options, self.loss_weights, self.gan = optimizer, loss, gan
        self.automatic_optimization = False
        self.config = tokenizer
        self.model = VQVAE(tokenizer, quantizer_training, gradient_checkpointing)
        self.memory_format = torch.channels_last if channels_last and not tokenizer.video else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]  # torch's stubs omit it
        self.discriminator = PatchDiscriminator(tokenizer.in_channels, gan.channels, gan.layers, tokenizer.video)
        self.perceptual = _build_perceptual(loss)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self.nonfinite_in_row = 0
        self._last_parts: dict[str, Tensor] = {}  # the last readable pixels of each kind, by metric prefix
        self.failed_images = 0  # unreadable files met by this rank in the current epoch

    @property
    def hparams(self) -> AttributeDict:
        """The ``__init__`` arguments as ``save_hyperparameters`` saved them, read by attribute."""
        hparams = super().hparams
        assert isinstance(hparams, AttributeDict)
        return hparams

    def on_fit_start(self) -> None:
        """Start from ``init_from`` when a run starts fresh; a resumed run (``trainer.ckpt_path`` set, its weights
        already restored) never reads the export again."""
        if self.hparams.init_from and self.trainer.ckpt_path is None:
            self.load_init_from()

    def load_init_from(self) -> None:
        """Load the weights of the export ``init_from`` into the model (inflating an image export for a video
        tokenizer), as a fresh ``vqtok fit`` does before its first step."""
        _initialise(self.model, self.hparams.init_from)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, [T,] H, W) in [-1, 1] -> reconstruction of the same shape."""
        return self.model(x)[0]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr, betas = self.optimizer_options.learning_rate, self.optimizer_options.adam_betas
        opt_g = torch.optim.Adam(self.model.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        return [opt_g, opt_d]

    def learning_rate_at(self, batch: int) -> float:
        """The schedule (:meth:`OptimizerOptions.learning_rate_at`) at a batch count; the count is a buffer saved
        in checkpoints, so a resumed run continues the same curve."""
        return self.optimizer_options.learning_rate_at(batch)

    def reconstruction_loss(self, x: Tensor, x_rec: Tensor) -> dict[str, Tensor]:
        """Weighted reconstruction terms and their sum under "rec"."""
        h = self.loss_weights
        terms = {"l1": F.l1_loss(x_rec, x), "l2": F.mse_loss(x_rec, x)}
        rec = h.l1_weight * terms["l1"] + h.l2_weight * terms["l2"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(_frames(x_rec), _frames(x))
            rec = rec + h.perceptual_weight * terms["perceptual"]
        if h.ssim_weight > 0:
            terms["ssim_loss"] = ssim_loss(_frames(x_rec), _frames(x))
            rec = rec + h.ssim_weight * terms["ssim_loss"]
        return {**terms, "rec": rec}

    def batch_parts(self, batch: dict[str, Any]) -> list[tuple[str, Tensor]]:
        """The batch's pixels in the model's layout, each with its metric prefix: videos ("") first, then images
        ("" for an image tokenizer; "image_" and shape (B, 3, 1, H, W) for a video tokenizer)."""
        parts = []
        videos = batch.get("videos")
        if videos is not None and videos.numel():
            r = self.config.temporal_downsample
            if not self.config.video:
                raise ConfigError("the data gives videos, but model.tokenizer.video is false (an image tokenizer)")
            if (videos.shape[2] - 1) % r:
                raise ConfigError(f"clips of {videos.shape[2]} frames do not fit 1 + {r}k: set data.num_frames to one")
            parts.append(("", videos))
        images = batch.get("images")
        if images is not None and images.numel():
            if self.config.video:
                parts.append(("image_", images[:, :, None]))
            else:
                parts.append(("", images.contiguous(memory_format=self.memory_format)))
        return parts

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        parts = dict(self.batch_parts(batch))
        self.failed_images += int(batch["num_failed"])
        missing = [name for name in self._last_parts if name not in parts]
        if missing:  # every item of a kind failed to load (each was named in a warning)
            log.warning("batch %d: nothing readable for %s; reusing the previous batch's", batch_idx, missing)
            # Every DDP rank must run the same forwards in every step, so a step or a part is never skipped.
            parts = {**parts, **{name: self._last_parts[name] for name in missing}}
        if not parts:
            raise FileFormatError("the first training batch has no readable image or video; check data.root")
        self._last_parts = {name: x.detach() for name, x in parts.items()}
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)  # configure_optimizers returns two
        opt_g, opt_d = optimizers
        lr = self.learning_rate_at(int(self.batches_seen))
        for group in (*opt_g.param_groups, *opt_d.param_groups):
            group["lr"] = lr
        gan_active = self.gan.weight > 0 and int(self.batches_seen) >= self.gan.start_step

        with self.toggled_optimizer(opt_g):
            outputs = [(name, x, *self.model(x)) for name, x in sorted(parts.items())]  # (prefix, x, x_rec, q)
            losses = _sum_terms([self.reconstruction_loss(x, x_rec) for _, x, x_rec, _ in outputs])
            quant_loss = _total(q.loss for *_, q in outputs)
            loss_g = losses["rec"] + quant_loss
            if gan_active:
                losses["g_adv"] = _total(hinge_g_loss(self.discriminator(x_rec)) for _, _, x_rec, _ in outputs)
                losses["adaptive_weight"] = adaptive_weight(losses["rec"], losses["g_adv"], self.model.last_layer)
                loss_g = loss_g + self.gan.weight * losses["adaptive_weight"] * losses["g_adv"]
            finite = self._all_finite(loss_g)
            self._optimizer_step(opt_g, loss_g, finite)

        if gan_active and finite:
            with self.toggled_optimizer(opt_d):
                loss_d = _total(
                    hinge_d_loss(self.discriminator(x.detach()), self.discriminator(x_rec.detach()))
                    for _, x, x_rec, _ in outputs
                )
                self._optimizer_step(opt_d, loss_d, self._all_finite(loss_d))
            losses["d"] = loss_d

        self.batches_seen += 1
        losses["disc_active"] = torch.tensor(float(gan_active))
        losses["quant_loss"] = quant_loss
        losses["loss"] = loss_g
        losses["lr"] = torch.tensor(lr)
        self._log_train(outputs, losses)

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
            raise TrainingError(
                f"training stopped: {self.nonfinite_in_row} non-finite losses in a row (model.max_nonfinite_steps="
                f"{self.hparams.max_nonfinite_steps}); lower model.optimizer.learning_rate or check the data"
            )
        return False

    def _optimizer_step(self, opt: LightningOptimizer, loss: Tensor, finite: bool) -> None:
        """Backward always runs (DDP expects it after every forward); the update only when the loss is finite."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if not finite:
            opt.zero_grad(set_to_none=True)
            return
        clip = self.optimizer_options.grad_clip
        if clip > 0:
            # Lightning's docs pass the LightningOptimizer wrappers of self.optimizers(); its annotation says Optimizer.
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")  # type: ignore[arg-type]
        opt.step()

    def _log_train(self, outputs: list[tuple[str, Tensor, Tensor, QuantizerOutput]], losses: dict[str, Tensor]) -> None:
        metrics = {f"train/{k}": v.detach().float() for k, v in losses.items()}
        for name, x, x_rec, q in outputs:
            x_rec = x_rec.detach().float().clamp(-1, 1)
            metrics[f"train/{name}psnr"] = psnr(x_rec, x.float()).mean()
            metrics[f"train/{name}ssim"] = ssim(x_rec, x.float()).mean()  # every step: a value logged once repeats
            metrics[f"codebook/{name}usage_batch"] = q.usage
            metrics[f"codebook/{name}perplexity_batch"] = q.perplexity
            if name:  # a video tokenizer's image part: its own count besides the step's total
                metrics[f"codebook/{name}dead_codes"] = q.num_dead
        metrics["codebook/dead_codes"] = _total(q.num_dead for *_, q in outputs)  # every part's restarts
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False)
        every = self.hparams.image_log_every_n_steps
        if every > 0 and (int(self.batches_seen) - 1) % every == 0 and self.trainer.is_global_zero:
            _, x, x_rec, _ = outputs[0]
            log_reconstructions(self.loggers, x, x_rec, int(self.batches_seen), "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        for name, x in self.batch_parts(batch):
            x_rec, q = self.model(x)
            x_rec = x_rec.float().clamp(-1, 1)
            losses = self.reconstruction_loss(x, x_rec)
            metrics = {f"{stage}/{name}{k}": v.float() for k, v in losses.items()}
            metrics[f"{stage}/{name}psnr"] = psnr(x_rec, x.float()).mean()
            metrics[f"{stage}/{name}ssim"] = ssim(x_rec, x.float()).mean()
            metrics[f"{stage}/{name}usage_batch"] = q.usage
            self.log_dict(metrics, sync_dist=True, batch_size=x.shape[0])
            if batch_idx == 0 and self.trainer.is_global_zero:
                log_reconstructions(self.loggers, x, x_rec, int(self.batches_seen), f"{stage}{name.rstrip('_')}")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Token ids (B, [t,] h, w) of the batch's videos, or of its images when it has no videos."""
        return self.model.encode(self.batch_parts(batch)[0][1]).ids

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
        shared = self.model.quantizer.synchronized_tensors()
        if self.trainer.world_size > 1 and shared:  # every rank must hold identical ones; a non-zero value is a bug
            diffs = []
            for v in shared.values():
                t = self.all_gather(v.detach())  # (world_size, *v.shape)
                assert isinstance(t, Tensor)
                diffs.append((t - t[0]).abs().max())
            self.log("codebook/rank_max_diff", torch.stack(diffs).max(), rank_zero_only=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.config.to_dict()  # what `vqtok export` reads
        # The training state that is not a tensor of the model: with it a resumed run repeats the uninterrupted one
        # exactly (the data order and augmentations are functions of the epoch, see training/data/sampling.py;
        # Lightning stores the loader's position). Rank 0's generator decides restarts on every rank (broadcast).
        checkpoint[_RESUME_STATE_KEY] = {
            "quantizer_generator": self.model.quantizer.generator.get_state(),
            "nonfinite_in_row": self.nonfinite_in_row,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(_RESUME_STATE_KEY)
        if state is None:  # a checkpoint written before vqtok 0.2: resumes, but restarts draw anew
            log.warning("the checkpoint has no %r: codebook restarts will not repeat the first run", _RESUME_STATE_KEY)
            return
        self.model.quantizer.generator.set_state(state["quantizer_generator"])
        self.nonfinite_in_row = int(state["nonfinite_in_row"])


def _frames(x: Tensor) -> Tensor:
    """Videos (B, C, T, H, W) -> frames (B*T, C, H, W); images pass through."""
    return x.transpose(1, 2).flatten(0, 1) if x.ndim == 5 else x


def _sum_terms(terms: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Add loss dicts key by key (each part's terms are means over its own pixels)."""
    return {k: _total(t[k] for t in terms) for k in terms[0]}


def _total(values: Iterable[Tensor]) -> Tensor:
    """``sum`` of tensors, typed as a tensor (there is always at least one: a batch has at least one part)."""
    total = sum(values)
    assert isinstance(total, Tensor), "nothing to sum"
    return total


def _initialise(model: VQVAE, export_dir: str) -> None:
    """Load the weights of an exported tokenizer into model, inflating 2D kernels for an image -> video start."""
    from vqtok.export import load_export, resolve_export  # imported here so the module loads without them

    source = load_export(resolve_export(export_dir))
    state = source.state_dict()
    if model.config.video and not source.config.video:
        check_inflatable(source.config, model.config)
        state = inflate_state_dict(state, model.state_dict())
    else:
        differ = architecture_differences(source.config, model.config)
        if differ:
            raise ConfigError(
                f"model.init_from {export_dir!r} does not fit model.tokenizer (export vs config): " + "; ".join(differ)
            )
    model.load_state_dict(state)
    log.info("initialised %r from %s (%s)", model.config.name, export_dir, source.config.name)


def _build_perceptual(loss: LossWeights) -> torch.nn.Module | None:
    if loss.perceptual_weight <= 0:
        return None
    from vqtok.training.perceptual import PerceptualLoss

    assert loss.perceptual_weights is not None  # LossWeights checks it
    return PerceptualLoss(loss.perceptual_weights)
