"""PatchGAN discriminator (pix2pix ``NLayerDiscriminator``), with GroupNorm instead of BatchNorm; for video a 3D
version that judges spatio-temporal patches, so flicker and jerky motion are penalised too."""

from __future__ import annotations

import math

from torch import Tensor, nn

from vqtok.errors import ConfigError

__all__ = ["PatchDiscriminator"]

_MAX_GROUPS = 32
_MAX_MULT = 8  # channel width is capped at 8x the first layer's


def _norm(width: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= 32 that divides ``width``."""
    return nn.GroupNorm(math.gcd(_MAX_GROUPS, width), width)


class PatchDiscriminator(nn.Module):
    """Classifies overlapping patches of an image as real or fake.

    Layout: a 4x4 stride-2 conv + LeakyReLU(0.2); ``num_layers - 1`` more 4x4 stride-2 conv + GroupNorm + LeakyReLU
    blocks, doubling the width each time (capped at ``8 * channels``); one such block with stride 1; then a 4x4
    stride-1 conv to one logit channel. GroupNorm replaces pix2pix's BatchNorm, which misbehaves with small
    per-device batches and under DDP. Each logit sees a 70x70 receptive field for ``num_layers=3``.

    With ``video=True`` every conv is 3D with a (3, 4, 4) kernel, stride 1 and padding 1 in time: the input is
    (B, C, T, H, W), any T >= 1, and each logit also sees 2 * (num_layers + 2) + 1 frames.

    Args:
        in_channels: Image channels.
        channels: Width of the first conv.
        num_layers: Number of stride-2 convs (total downsampling ``2 ** num_layers``).
        video: judge videos (B, C, T, H, W) instead of images.

    Raises:
        ConfigError: If an argument is not positive.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3, video: bool = False) -> None:
        super().__init__()
        if min(in_channels, channels, num_layers) < 1:
            raise ConfigError(
                f"PatchDiscriminator needs positive in_channels, channels and num_layers, "
                f"got {in_channels}, {channels}, {num_layers}"
            )
        conv = _conv3d if video else _conv2d
        layers: list[nn.Module] = [conv(in_channels, channels, 2), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, num_layers + 1):
            stride = 2 if n < num_layers else 1  # the last block keeps the resolution
            next_width = channels * min(2**n, _MAX_MULT)
            layers += [conv(width, next_width, stride, bias=False), _norm(next_width), nn.LeakyReLU(0.2)]
            width = next_width
        layers.append(conv(width, 1, 1))
        self.layers = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        """Patch logits.

        Args:
            x: Images ``[B, in_channels, H, W]`` (videos ``[B, in_channels, T, H, W]``) in ``[-1, 1]``; H and W
                at least ``2 ** (num_layers + 2)``.

        Returns:
            Logits ``[B, 1, h, w]`` (``[B, 1, T, h, w]``) with ``h = H / 2**num_layers - 2`` for H divisible by
            ``2**num_layers`` (e.g. 30x30 for 256x256 inputs and the defaults); positive means "real".
        """
        return self.layers(x)


def _conv2d(in_channels: int, out_channels: int, stride: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=1, bias=bias)


def _conv3d(in_channels: int, out_channels: int, stride: int, bias: bool = True) -> nn.Conv3d:
    """Spatially like :func:`_conv2d`; 3 frames wide, stride 1 and padding 1 in time, so T is kept."""
    return nn.Conv3d(in_channels, out_channels, (3, 4, 4), stride=(1, stride, stride), padding=1, bias=bias)


def _init_weights(module: nn.Module) -> None:
    """pix2pix init: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
