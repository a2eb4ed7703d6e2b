"""LPIPS-style perceptual distance on a frozen VGG16 backbone, built in plain torch and loaded from a local file.

The backbone is the ``features`` conv stack of torchvision's ``vgg16`` up to ``relu5_3`` (indices 0..29), with the
same module indices, so torchvision's own state dict (``vgg16-397923af.pth``) loads as is. The optional LPIPS linear
heads use the key names of the official LPIPS ``vgg.pth`` (``lin0.model.1.weight`` ... ``lin4.model.1.weight``).
Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from vqtok.errors import ConfigError, InputError

__all__ = ["PerceptualLoss"]

logger = logging.getLogger(__name__)

# torchvision vgg16 "D" plan up to relu5_3; "M" is a 2x2 max-pool. Each conv is followed by a ReLU.
_VGG16_PLAN: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAPS = (3, 8, 15, 22, 29)  # features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_OPTION = "model.loss.perceptual_weights"
_EXPECTED = (
    "a VGG16 state dict with torchvision key names (features.0.weight, features.0.bias, ...), optionally with "
    "the LPIPS heads lin0.model.1.weight ... lin4.model.1.weight, as .safetensors or .pt/.pth "
    "(torchvision's vgg16-397923af.pth works as is)"
)


def _build_vgg16_features() -> nn.Sequential:
    """VGG16 ``features`` up to relu5_3, module indices identical to torchvision's (0..29)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            in_channels = int(item)
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance between two image batches, on a frozen VGG16.

    Features are taken after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, unit-normalised over channels, and
    their squared differences are weighted per channel (LPIPS heads if the weights file has them, else uniform
    ``1/C``, i.e. a mean over channels), averaged over positions and summed over the five layers.

    The module has no trainable parameters and always stays in eval mode (``train()`` is a no-op). Its frozen
    weights are still part of ``state_dict()``, so they are saved in checkpoints of any module that holds it.

    Args:
        weights_path: Local ``.safetensors`` or ``.pt``/``.pth`` file; see the module docstring for the keys.
            ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)``, so pickled objects are refused.

    Raises:
        ConfigError: If the file is missing, unreadable, not a plain tensor dict, or lacks keys / has wrong shapes.
    """

    shift: Tensor  # (1, 3, 1, 1) buffer
    scale: Tensor  # (1, 3, 1, 1) buffer

    def __init__(self, weights_path: str) -> None:
        super().__init__()
        self.features = _build_vgg16_features()
        # LPIPS ScalingLayer: maps [-1, 1] inputs to ImageNet-normalised ones, (x - shift) / scale.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        for i, channels in enumerate(_TAP_CHANNELS):
            self.register_buffer(f"lin{i}", torch.full((1, channels, 1, 1), 1.0 / channels))
        self._load(weights_path)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep the module in eval mode whatever ``mode`` is; it is a fixed loss, never trained."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean perceptual distance between ``x`` and ``y``.

        Args:
            x: Images ``[B, 3, H, W]`` in ``[-1, 1]``, H and W >= 16 (four 2x pools before relu5_3), any float
                dtype; gradients flow back to it.
            y: Reference images, same shape.

        Returns:
            float32 scalar, the distance averaged over the batch (0 for identical inputs).
        """
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"PerceptualLoss needs two [B, 3, H, W] batches, got {tuple(x.shape)}, {tuple(y.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            n = x.shape[0]
            inputs = torch.cat([x, y], dim=0).float()  # [2B, 3, H, W]
            inputs = (inputs - self.shift) / self.scale
            distance = inputs.new_zeros(n)  # [B]
            for i, feats in enumerate(self._taps(inputs)):  # feats: [2B, C_i, H_i, W_i]
                feats = F.normalize(feats, dim=1, eps=1e-10)
                diff = (feats[:n] - feats[n:]).pow(2)  # [B, C_i, H_i, W_i]
                distance = distance + (diff * getattr(self, f"lin{i}")).sum(dim=1).mean(dim=(1, 2))
            return distance.mean()

    def _taps(self, x: Tensor) -> list[Tensor]:
        """Run the backbone, returning the five tapped activations."""
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                outputs.append(x)
        return outputs

    def _load(self, weights_path: str) -> None:
        """Read, check and copy the backbone (and, if present, LPIPS head) weights."""
        state = _read_state_dict(weights_path)
        backbone = {f"features.{name}": ref for name, ref in self.features.state_dict().items()}
        heads = {f"lin{i}.model.1.weight": getattr(self, f"lin{i}") for i in range(len(_TAPS))}
        has_heads = any(key in state for key in heads)
        if not has_heads:
            logger.info("%s has no LPIPS heads (lin*.model.1.weight); using uniform channel weights", weights_path)
        expected = {**backbone, **heads} if has_heads else backbone
        bad = [_describe_mismatch(key, ref, state) for key, ref in expected.items() if _mismatch(key, ref, state)]
        if bad:
            raise ConfigError(f"{_OPTION}={weights_path!r} does not fit VGG16, bad keys: {bad}. Expected {_EXPECTED}.")
        with torch.no_grad():
            for key, ref in expected.items():
                ref.copy_(state[key])  # state_dict() tensors share storage with the parameters and buffers


def _mismatch(key: str, ref: Tensor, state: Mapping[str, Tensor]) -> bool:
    return key not in state or state[key].shape != ref.shape


def _describe_mismatch(key: str, ref: Tensor, state: Mapping[str, Tensor]) -> str:
    if key not in state:
        return f"{key} (missing)"
    return f"{key} (shape {tuple(state[key].shape)}, expected {tuple(ref.shape)})"


def _read_state_dict(weights_path: str) -> Mapping[str, Tensor]:
    """Load a flat ``{name: tensor}`` dict from a local safetensors or torch file, refusing pickled objects."""
    path = Path(weights_path)
    if not path.is_file():
        raise ConfigError(f"{_OPTION}={weights_path!r}: no such file. Expected {_EXPECTED}.")
    if path.suffix not in (".safetensors", ".pt", ".pth"):
        raise ConfigError(f"{_OPTION}={weights_path!r}: unsupported extension {path.suffix!r}. Expected {_EXPECTED}.")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message suggests weights_only=False; we never do that
        raise ConfigError(
            f"{_OPTION}={weights_path!r} failed torch.load(weights_only=True): the file is corrupt or holds pickled "
            f"Python objects, which are refused for safety. Save a plain dict of tensors or use .safetensors."
        ) from error
    except Exception as error:  # corrupt or truncated files raise many types; all mean "unusable"
        raise ConfigError(f"{_OPTION}={weights_path!r} could not be read: {error}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{_OPTION}={weights_path!r} is not a flat dict of tensors. Expected {_EXPECTED}.")
    return state
