"""Loss terms: hinge losses for the discriminator and generator, the VQGAN adaptive weight, and 1 - SSIM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["adaptive_weight", "hinge_d_loss", "hinge_g_loss", "ssim_loss"]


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Hinge loss of the discriminator.

    Args:
        logits_real: Discriminator logits on real images, any shape (e.g. ``[B, 1, h, w]``).
        logits_fake: Logits on reconstructions, any shape.

    Returns:
        float32 scalar ``0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))``, 0 once real > 1 and fake < -1.
    """
    loss_real = F.relu(1.0 - logits_real.float()).mean()
    loss_fake = F.relu(1.0 + logits_fake.float()).mean()
    return 0.5 * (loss_real + loss_fake)


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """Generator side of the hinge GAN loss.

    Args:
        logits_fake: Discriminator logits on reconstructions, any shape.

    Returns:
        float32 scalar ``-mean(logits_fake)``.
    """
    return -logits_fake.float().mean()


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's adaptive GAN weight: balance the two gradients at the decoder's last layer.

    ``w = ||d rec_loss / d last_layer|| / (||d g_loss / d last_layer|| + 1e-4)``, clamped to ``[0, max_weight]``.
    The gradients are taken with ``retain_graph=True`` (the caller still backpropagates both losses) and the norms
    are computed in float32 with autocast off, so bf16/fp16 training gives the same weight.

    Args:
        rec_loss: Scalar reconstruction (+ perceptual) loss, differentiable w.r.t. ``last_layer``.
        g_loss: Scalar generator GAN loss, differentiable w.r.t. ``last_layer``.
        last_layer: Weight of the decoder's final layer.
        max_weight: Upper clamp of the weight.

    Returns:
        Detached float32 scalar in ``[0, max_weight]`` (NaN only if a gradient itself is NaN).
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    with torch.autocast(device_type=last_layer.device.type, enabled=False):
        weight = rec_grad.float().norm() / (g_grad.float().norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


def ssim_loss(x_rec: Tensor, x: Tensor) -> Tensor:
    """Structural term ``1 - SSIM`` of images in [-1, 1], through pytorch-msssim (a maintained implementation).

    Args:
        x_rec: Reconstructions ``[N, C, H, W]``; values outside [-1, 1] are not clamped (the gradient stays).
        x: Originals of the same shape in [-1, 1]; H and W of at least 11 (the Gaussian window).

    Returns:
        float32 scalar ``1 - mean SSIM`` (data range 2, 11x11 window of sigma 1.5, as in the metric).
    """
    from pytorch_msssim import ssim  # the train extra; imported here so the losses above need only torch

    return 1.0 - ssim(x_rec.float(), x.float(), data_range=2.0, size_average=True)
