"""Start a video tokenizer from a trained image tokenizer by inflating its 2D kernels to causal 3D ones.

A 2D kernel (O, I, kh, kw) becomes a 3D kernel (O, I, kt, kh, kw) that is zero except at the last time tap,
which sees the current frame (causal padding puts the past first). The inflated model therefore computes the
image model's function on every frame, and on a 1-frame video gives exactly the image model's ids; training then
learns to use the past frames. Norms, attention, biases and the quantizer's state (a codebook with its EMA
statistics) are copied.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vqtok.config import TokenizerConfig
from vqtok.errors import ConfigError

# What may differ between an image tokenizer and the video tokenizer inflated from it; the rest must agree.
TIME_FIELDS = ("video", "temporal_downsample")


def architecture_differences(a: TokenizerConfig, b: TokenizerConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """The architecture fields (outside ``ignore``) on which two configs disagree, each with both values."""
    arch_a, arch_b = a.architecture(), b.architecture()
    return [f"{k}: {arch_a[k]!r} vs {arch_b[k]!r}" for k in arch_a if k not in ignore and arch_a[k] != arch_b[k]]


def check_inflatable(image: TokenizerConfig, video: TokenizerConfig) -> None:
    """Raise ConfigError naming every architecture field on which the two configs disagree."""
    if image.video or not video.video:
        raise ConfigError(f"inflation takes an image tokenizer to a video one, not {image.name!r} to {video.name!r}")
    differ = architecture_differences(image, video, ignore=TIME_FIELDS)
    if differ:
        raise ConfigError(
            "the image tokenizer's architecture does not fit the video tokenizer's (image vs video): "
            + "; ".join(differ)
        )


def inflate_state_dict(image_state: dict[str, Tensor], video_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Image-model tensors -> a full state dict for the video model whose (shape-giving) state is ``video_state``.

    Args:
        image_state: state dict of an image :class:`~vqtok.model.vqvae.VQVAE`.
        video_state: state dict of the video VQVAE to fill (only names and shapes are used).

    Raises:
        ConfigError: the names differ, or a tensor's shape is neither equal nor a 2D kernel of the 3D one.
    """
    missing = sorted(set(video_state) - set(image_state))
    unexpected = sorted(set(image_state) - set(video_state))
    if missing or unexpected:
        raise ConfigError(f"cannot inflate: tensors missing {missing[:5]}, not in the video model {unexpected[:5]}")
    out = {}
    for name, target in video_state.items():
        source = image_state[name]
        if source.shape == target.shape:
            out[name] = source.clone()
        elif source.ndim == 4 and target.ndim == 5 and target.shape[:2] + target.shape[3:] == source.shape:
            kernel = torch.zeros(target.shape, dtype=source.dtype)  # (O, I, kt, kh, kw)
            kernel[:, :, -1] = source  # the current frame's tap
            out[name] = kernel
        else:
            raise ConfigError(f"cannot inflate {name}: image shape {tuple(source.shape)} vs {tuple(target.shape)}")
    return out
