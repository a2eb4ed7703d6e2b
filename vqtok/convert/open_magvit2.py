"""Open-MAGVIT2 (Luo et al. 2024, TencentARC/Open-MAGVIT2): Lightning 2 ``.ckpt`` files (``imagenet_256_L.ckpt``,
``imagenet_128_L.ckpt``) whose ``state_dict`` holds ``encoder.*``, ``decoder.*``, the loss's weights under
``loss.*`` and, with ``use_ema`` (the published models), the EMA copy of every weight under ``model_ema.*`` (names
without dots), which is what its evaluation uses and what is converted here.

Architecture (open_magvit2/taming/modules/diffusionmodules/improved_model.py): see :mod:`vqtok.model.magvit2`;
LFQ on the encoder's ``z_channels`` (18) output, id = sum of 2^k over the positive channels k (the non-factorised
index; the factorised pair of 9-bit ids is (id % 512, id // 512)).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from vqtok.config import TokenizerConfig
from vqtok.convert.options import ConvertOptions, default_name
from vqtok.convert.pickle_reader import read_checkpoint
from vqtok.errors import ConfigError, FileFormatError
from vqtok.model.vqvae import VQVAE

LICENSE = "apache-2.0"  # TencentARC/Open-MAGVIT2
EMA_PREFIX = "model_ema."


def read_model(path: Path, options: ConvertOptions) -> VQVAE:
    """An Open-MAGVIT2 checkpoint -> vqtok model (the tensors only: nothing in the file runs)."""
    ckpt = read_checkpoint(path)
    root = ckpt.root
    if not isinstance(root, dict) or "state_dict" not in root:
        raise FileFormatError(
            f"{path}: no 'state_dict' entry; Open-MAGVIT2's Lightning checkpoints have one{ckpt.note()}"
        )
    state = _with_ema(ckpt.tensors(root["state_dict"], "state_dict"))
    name = options.name or default_name(path)
    config = _infer_config(state, str(path), options, name)
    model = VQVAE(config).eval()
    n, blocks = len(config.channel_mults), config.num_res_blocks
    mapped = {_vqtok_key(k, n, blocks): v.float() for k, v in state.items() if k.startswith(("encoder.", "decoder."))}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(mapped)), sorted(set(mapped) - set(expected))
    wrong = [k for k in set(expected) & set(mapped) if expected[k].shape != mapped[k].shape]
    if missing or unexpected or wrong:
        raise ConfigError(
            f"{path}: the weights do not fit the inferred architecture: missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}, misshapen {wrong[:4]}"
        )
    model.load_state_dict(mapped)
    return model


def _with_ema(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The weights with their EMA copies in place of the raw ones, where the checkpoint holds them."""
    ema = {k[len(EMA_PREFIX) :]: v for k, v in state.items() if k.startswith(EMA_PREFIX)}
    if not ema:
        return state
    return {k: ema.get(k.replace(".", ""), v) for k, v in state.items() if not k.startswith(EMA_PREFIX)}


def _infer_config(state: dict[str, Tensor], where: str, options: ConvertOptions, name: str) -> TokenizerConfig:
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise FileFormatError(f"{where}: no tensor {key!r}; not an Open-MAGVIT2 checkpoint (check --from)")
        return tuple(state[key].shape)

    base = shape("encoder.conv_in.weight")[0]
    levels = next(i for i in range(64) if f"encoder.down.{i}.block.0.conv1.weight" not in state)
    blocks = next(j for j in range(64) if f"encoder.down.0.block.{j}.conv1.weight" not in state)
    widths = [shape(f"encoder.down.{i}.block.0.conv1.weight")[0] for i in range(levels)]
    z_channels = shape("encoder.conv_out.weight")[0]
    if levels == 0 or any(w % base for w in widths):
        raise FileFormatError(f"{where}: no encoder levels of widths that are multiples of {base}; check --from")
    return TokenizerConfig(
        name=name,
        in_channels=shape("encoder.conv_in.weight")[1],
        base_channels=base,
        channel_mults=[w // base for w in widths],
        num_res_blocks=blocks,
        attention=False,
        z_channels=z_channels,
        norm_groups=options.norm_groups or 32,
        quantizer="lfq",
        code_dim=z_channels,
        l2_normalize=False,
        backbone="magvit2",
        source=options.source or f"Open-MAGVIT2 {name}",
        license=options.license or LICENSE,
    )


_RENAMES = (
    (r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.levels.\1.\2."),
    (r"^encoder\.mid_block\.", "encoder.mid."),
    (r"^decoder\.mid_block\.", "decoder.mid."),
    (r"\.nin_shortcut\.", ".skip."),
)


def _vqtok_key(key: str, levels: int, blocks: int) -> str:
    """An Open-MAGVIT2 state-dict key -> vqtok's (magvit2 backbone); the decoder's levels count from the lowest."""
    down = re.match(r"^encoder\.down\.(\d+)\.downsample\.(weight|bias)$", key)
    if down:
        return f"encoder.levels.{down[1]}.{blocks}.{down[2]}"  # after the level's ResNet blocks
    level = re.match(r"^decoder\.(up|adaptive)\.(\d+)\.(.*)$", key)
    if level:
        d = levels - 1 - int(level[2])  # vqtok numbers decoder levels from the lowest resolution
        rest = level[3]
        if level[1] == "adaptive":
            return f"decoder.levels.{d}.adaptive.{rest}"
        rest = re.sub(r"^block\.", "blocks.", rest).replace("upsample.conv1.", "upsample.conv.")
        key = f"decoder.levels.{d}.{rest}"
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key
