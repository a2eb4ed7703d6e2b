"""PerceptualLoss: strict, pickle-free loading of VGG16 weights and the behaviour of the distance."""

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vqtok.errors import ConfigError
from vqtok.training.perceptual import PerceptualLoss

_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
_unpickled = []  # appended to if a refused pickle ever gets executed


def _random_vgg16_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-style vgg16 state dict (features + a stub classifier) with He-initialised random convs."""
    generator = torch.Generator().manual_seed(seed)
    state, index, in_channels = {}, 0, 3
    for item in _PLAN:
        if item == "M":
            index += 1
            continue
        fan_in = in_channels * 9
        state[f"features.{index}.weight"] = (
            torch.randn(item, in_channels, 3, 3, generator=generator) * (2 / fan_in) ** 0.5
        )
        state[f"features.{index}.bias"] = torch.zeros(item)
        index, in_channels = index + 2, item  # conv + relu
    state["classifier.6.bias"] = torch.zeros(1000)  # extra keys must be ignored
    return state


def _lpips_heads() -> dict[str, torch.Tensor]:
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}


class _Payload:
    def __reduce__(self):
        return (_unpickled.append, ("executed",))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("vgg")
    state = _random_vgg16_state_dict()
    save_file(state, str(directory / "vgg16.safetensors"))
    torch.save(state, directory / "vgg16.pth")
    torch.save({**state, **_lpips_heads()}, directory / "vgg16_lpips.pt")
    return directory


@pytest.fixture(scope="module")
def loss(weights_dir: Path) -> PerceptualLoss:
    return PerceptualLoss(str(weights_dir / "vgg16.safetensors"))


def _images(seed: int) -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_identity_is_zero_and_distance_grows_with_noise(loss: PerceptualLoss):
    x, noise = _images(0), _images(1)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    distances = [loss((x + level * noise).clamp(-1, 1), x).item() for level in (0.05, 0.2, 0.8)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_gradient_reaches_input_not_backbone(loss: PerceptualLoss):
    x = _images(0).requires_grad_(True)
    loss(x, _images(1)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_stays_in_eval_mode(loss: PerceptualLoss):
    loss.train()
    assert not loss.training and not any(m.training for m in loss.modules())


def test_bf16_autocast_computes_in_fp32(loss: PerceptualLoss):
    x, y = _images(0), _images(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x.bfloat16(), y.bfloat16())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(x.bfloat16().float(), y.bfloat16().float()))


def test_pt_file_loads_the_same_weights(weights_dir: Path, loss: PerceptualLoss):
    from_pt = PerceptualLoss(str(weights_dir / "vgg16.pth"))
    x, y = _images(0), _images(1)
    torch.testing.assert_close(from_pt(x, y), loss(x, y))


def test_lpips_heads_are_used_when_present(weights_dir: Path, loss: PerceptualLoss, caplog):
    with caplog.at_level(logging.INFO, logger="vqtok.training.perceptual"):
        with_heads = PerceptualLoss(str(weights_dir / "vgg16_lpips.pt"))
    assert "uniform" not in caplog.text
    expected = torch.load(weights_dir / "vgg16_lpips.pt", weights_only=True)["lin3.model.1.weight"]
    torch.testing.assert_close(with_heads.lin3, expected)
    x, y = _images(0), _images(1)
    assert with_heads(x, y).item() != pytest.approx(loss(x, y).item())


def test_uniform_heads_logged(weights_dir: Path, caplog):
    with caplog.at_level(logging.INFO, logger="vqtok.training.perceptual"):
        PerceptualLoss(str(weights_dir / "vgg16.safetensors"))
    assert "uniform" in caplog.text


def test_missing_file_names_the_option(tmp_path: Path):
    with pytest.raises(ConfigError, match="perceptual_weights") as info:
        PerceptualLoss(str(tmp_path / "nope.safetensors"))
    assert "features.0.weight" in str(info.value)


def test_wrong_shapes_and_missing_keys_are_listed(tmp_path: Path):
    state = _random_vgg16_state_dict()
    state["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    del state["features.28.bias"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="features.2.weight") as info:
        PerceptualLoss(str(tmp_path / "bad.safetensors"))
    assert "features.28.bias" in str(info.value) and "perceptual_weights" in str(info.value)


def test_pickled_objects_are_refused(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({**_random_vgg16_state_dict(), "payload": _Payload()}, path)
    with pytest.raises(ConfigError, match="perceptual_weights"):
        PerceptualLoss(str(path))
    assert _unpickled == []
