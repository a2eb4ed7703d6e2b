"""How a tokenizer trains, in three small groups that the YAML names under ``model:``.

    model:
      optimizer: {learning_rate: 1.0e-4, warmup_steps: 100, lr_decay_steps: 30000, min_lr_ratio: 0.05}
      loss: {l1_weight: 1.0, l2_weight: 1.0, ssim_weight: 0.0}
      gan: {weight: 0.5, start_step: 20000}

None of this is architecture: it never reaches an export's ``config.json`` (see :class:`vqtok.config.TokenizerConfig`)
nor a fingerprint. Checkpoints store each group as a plain dict, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vqtok.errors import ConfigError

__all__ = ["GanOptions", "LossWeights", "OptimizerOptions", "as_options", "regroup_flat_options"]


@dataclass(frozen=True)
class OptimizerOptions:
    """Adam and its schedule (``model.optimizer``).

    Args:
        learning_rate: peak Adam learning rate of generator and discriminator.
        warmup_steps: batches of linear warm-up from 0 to ``learning_rate`` (0: none).
        lr_decay_steps: batches (warm-up included) over which the rate falls to ``min_lr_ratio * learning_rate``
            along a half cosine, then stays there (0: constant rate after warm-up).
        min_lr_ratio: the rate at the end of the decay, as a fraction of ``learning_rate``.
        adam_betas: Adam's (beta1, beta2); (0.5, 0.9) suits the GAN phase, (0.9, 0.99) a reconstruction-only run.
        grad_clip: max gradient norm for both optimizers (0 disables clipping).
    """

    learning_rate: float = 1e-4
    warmup_steps: int = 0
    lr_decay_steps: int = 0
    min_lr_ratio: float = 0.0
    adam_betas: tuple[float, float] = (0.5, 0.9)
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))  # a YAML list or a checkpoint's list
        problems = []
        if not self.learning_rate > 0:
            problems.append(f"model.optimizer.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.lr_decay_steps < 0:
            problems.append(
                "model.optimizer.warmup_steps and lr_decay_steps must be >= 0, got "
                f"{self.warmup_steps}, {self.lr_decay_steps}"
            )
        if 0 < self.lr_decay_steps <= self.warmup_steps:
            problems.append(
                f"model.optimizer.lr_decay_steps ({self.lr_decay_steps}) must exceed warmup_steps ({self.warmup_steps})"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"model.optimizer.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            problems.append(f"model.optimizer.adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        if self.grad_clip < 0:
            problems.append(f"model.optimizer.grad_clip must be >= 0, got {self.grad_clip}")
        if problems:
            raise ConfigError("; ".join(problems))

    def learning_rate_at(self, batch: int) -> float:
        """The rate of training batch ``batch`` (0-based): linear warm-up, then a half-cosine decay to
        ``min_lr_ratio``; a function of the batch count, so a resumed run continues the same curve."""
        if batch < self.warmup_steps:
            return self.learning_rate * (batch + 1) / self.warmup_steps
        if self.lr_decay_steps <= 0:
            return self.learning_rate
        progress = min(1.0, (batch - self.warmup_steps) / max(1, self.lr_decay_steps - self.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.learning_rate * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


@dataclass(frozen=True)
class LossWeights:
    """The reconstruction terms and their weights (``model.loss``).

    Args:
        l1_weight: weight of the L1 reconstruction loss.
        l2_weight: weight of the L2 (MSE) reconstruction loss.
        ssim_weight: weight of the structural term ``1 - SSIM`` (pytorch-msssim; 11x11 Gaussian window, per
            frame; 0 disables it).
        perceptual_weight: weight of the LPIPS-style loss (0 disables it).
        perceptual_weights: local file with VGG16 (+ optional LPIPS head) weights; needed when perceptual_weight > 0
            (nothing is downloaded).
    """

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    ssim_weight: float = 0.0
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None

    def __post_init__(self) -> None:
        weights = {"l1_weight": self.l1_weight, "l2_weight": self.l2_weight, "ssim_weight": self.ssim_weight}
        weights["perceptual_weight"] = self.perceptual_weight
        negative = [f"{name}={value}" for name, value in weights.items() if not value >= 0]
        if negative:
            raise ConfigError(f"model.loss weights must be >= 0, got {', '.join(negative)}")
        if self.perceptual_weight > 0 and not self.perceptual_weights:
            raise ConfigError(
                "model.loss.perceptual_weight > 0 needs model.loss.perceptual_weights: the path of a local VGG16 "
                "weights file (torchvision vgg16 state dict, .safetensors or .pth); nothing is downloaded"
            )


@dataclass(frozen=True)
class GanOptions:
    """The hinge-loss PatchGAN (``model.gan``); its weight is balanced adaptively at the decoder's last layer.

    Args:
        weight: scale of the adaptive GAN weight (0 disables the discriminator).
        start_step: training batches before the discriminator starts (counted by the module, not by global_step).
        channels: width of the discriminator's first layer.
        layers: number of stride-2 layers in the discriminator.
    """

    weight: float = 0.5
    start_step: int = 20_000
    channels: int = 64
    layers: int = 3

    def __post_init__(self) -> None:
        if not self.weight >= 0 or self.start_step < 0 or self.channels < 1 or self.layers < 1:
            raise ConfigError(
                "model.gan needs weight >= 0, start_step >= 0, channels >= 1 and layers >= 1, got "
                f"weight={self.weight}, start_step={self.start_step}, channels={self.channels}, layers={self.layers}"
            )


def as_options(cls: type, value: Any, where: str) -> Any:
    """``value`` as an instance of the options dataclass ``cls``: an instance, a dict (a checkpoint's saved
    hyperparameters, or Python callers) or None (the defaults); anything else is a :class:`ConfigError`."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None
    raise ConfigError(f"{where} must be a mapping of {cls.__name__} fields, got {type(value).__name__}")


# Where each flat ``model.*`` key of checkpoints written before the groups (vqtok 0.2) now lives.
_FLAT_KEYS: dict[str, tuple[str, str]] = {
    **{key: ("optimizer", key) for key in ("learning_rate", "warmup_steps", "lr_decay_steps", "min_lr_ratio")},
    "adam_betas": ("optimizer", "adam_betas"),
    "grad_clip": ("optimizer", "grad_clip"),
    **{
        key: ("loss", key)
        for key in ("l1_weight", "l2_weight", "ssim_weight", "perceptual_weight", "perceptual_weights")
    },
    "disc_weight": ("gan", "weight"),
    "disc_start_step": ("gan", "start_step"),
    "disc_channels": ("gan", "channels"),
    "disc_layers": ("gan", "layers"),
}


def regroup_flat_options(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved hyperparameters with the flat keys of older checkpoints (``learning_rate``,
    ``disc_weight``, ...) moved into their groups (``optimizer.learning_rate``, ``gan.weight``, ...), so a run
    started before the groups existed still resumes. Hyperparameters without flat keys come back unchanged."""
    out = {key: value for key, value in hparams.items() if key not in _FLAT_KEYS}
    for key, (name, field_name) in _FLAT_KEYS.items():
        if key in hparams:
            out[name] = {**out.get(name, {}), field_name: hparams[key]}
    return out
