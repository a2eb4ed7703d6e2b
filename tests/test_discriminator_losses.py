"""PatchDiscriminator shapes and init, hinge losses on known logits, the adaptive GAN weight and 1 - SSIM."""

import pytest
import torch

from vqtok.config import TokenizerConfig
from vqtok.errors import ConfigError
from vqtok.metrics import ssim
from vqtok.training.discriminator import PatchDiscriminator
from vqtok.training.losses import adaptive_weight, hinge_d_loss, hinge_g_loss, ssim_loss
from vqtok.training.module import TokenizerTraining
from vqtok.training.options import LossWeights


@pytest.mark.parametrize(("size", "patches"), [(64, 6), (256, 30)])
def test_patch_logits_shape(size: int, patches: int):
    discriminator = PatchDiscriminator(channels=16)
    logits = discriminator(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 1, patches, patches)


def test_width_cap_groupnorm_and_init():
    discriminator = PatchDiscriminator(in_channels=1, channels=8, num_layers=5)
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 64, 64, 1]  # capped at 8x
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())
    assert all(m.num_channels % m.num_groups == 0 for m in discriminator.modules() if isinstance(m, torch.nn.GroupNorm))
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.1) and abs(weights.mean().item()) < 1e-3
    odd = PatchDiscriminator(channels=48)  # widths 48, 96, ... are not multiples of 32
    assert odd(torch.randn(1, 3, 32, 32)).shape == (1, 1, 2, 2)


def test_invalid_arguments_raise():
    with pytest.raises(ConfigError):
        PatchDiscriminator(num_layers=0)


def test_hinge_losses_on_constructed_logits():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - real) = [0, 0.5, 2] -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + fake) = [0, 1, 2] -> mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1))
    assert hinge_d_loss(torch.full((4,), 3.0), torch.full((4,), -3.0)).item() == 0.0
    assert hinge_g_loss(fake).item() == pytest.approx(1 / 3)


def _tiny_losses(layer: torch.nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = layer(x)
    return out.pow(2).mean(), -out.sum()


def test_adaptive_weight_is_ratio_of_gradient_norms():
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(4, 3), torch.randn(5, 4)
    rec, gan = _tiny_losses(layer, x)
    weight = adaptive_weight(rec, gan, layer.weight)
    rec_grad = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, layer.weight)[0]
    expected = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    torch.testing.assert_close(weight, expected)
    assert not weight.requires_grad and weight.dtype == torch.float32


def test_adaptive_weight_clamped_and_graph_retained():
    layer, x = torch.nn.Linear(4, 3), torch.randn(5, 4)
    rec, _ = _tiny_losses(layer, x)
    gan = 0.0 * layer(x).sum()  # zero generator gradient -> ratio ||g_rec|| / 1e-4, clamped
    assert adaptive_weight(rec, gan, layer.weight, max_weight=10.0).item() == 10.0
    rec.backward()  # the caller can still backpropagate through the graph


def test_adaptive_weight_finite_under_bf16_autocast():
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(4, 3), torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # the losses really come from a low-precision graph
        rec, gan = _tiny_losses(layer, x)
        weight = adaptive_weight(rec, gan, layer.weight)
    assert weight.dtype == torch.float32 and torch.isfinite(weight) and weight > 0


def test_ssim_loss_is_one_minus_the_metric_and_trains_the_reconstruction():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1).requires_grad_(True)
    loss = ssim_loss(noisy, x)
    # pytorch-msssim against vqtok's own metric (the figure the card reports): the same SSIM definition
    assert float(loss) == pytest.approx(1 - float(ssim(noisy.detach(), x).mean()), abs=1e-5)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    with torch.no_grad():  # a step against the gradient raises SSIM
        assert float(ssim_loss(noisy - 0.05 * noisy.grad.sign(), x)) < float(loss)


def test_ssim_weight_adds_the_term_to_the_reconstruction_loss():
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = (x + 0.1).clamp(-1, 1)
    config = TokenizerConfig.from_name("tiny")
    plain = TokenizerTraining(config, loss=LossWeights(l2_weight=1.0)).reconstruction_loss(x, y)
    with_ssim = TokenizerTraining(config, loss=LossWeights(l2_weight=1.0, ssim_weight=0.5)).reconstruction_loss(x, y)
    assert "ssim_loss" not in plain
    assert float(with_ssim["rec"]) == pytest.approx(float(plain["rec"]) + 0.5 * float(ssim_loss(y, x)), abs=1e-6)
