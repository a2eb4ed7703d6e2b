"""PatchDiscriminator shapes and init, hinge losses on known logits, and the adaptive GAN weight."""

import pytest
import torch

from vqtok.errors import ConfigError
from vqtok.training.discriminator import PatchDiscriminator
from vqtok.training.losses import adaptive_weight, hinge_d_loss, hinge_g_loss


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
