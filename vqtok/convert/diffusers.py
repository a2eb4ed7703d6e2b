"""diffusers' ``VQModel`` (e.g. aMUSEd's VQ-GAN, ``amused/amused-256`` subfolder ``vqvae``): a folder with the model's
``config.json`` and ``diffusion_pytorch_model.safetensors``.

Architecture (diffusers/models/autoencoders/vae.py): ``down_blocks[i].resnets[j]`` (attention after each in an
``AttnDownEncoderBlock2D``), ``downsamplers.0`` padded right/bottom, ``mid_block``; ``up_blocks`` numbered from the
lowest resolution; attention through linear ``to_q``/``to_k``/``to_v``/``to_out.0`` with one head.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from vqtok.convert.layout import Layout, build_model, infer_config
from vqtok.convert.options import ConvertOptions, default_name
from vqtok.errors import ConfigError, FileFormatError
from vqtok.model.vqvae import VQVAE

LAYOUT = Layout(
    enc_conv_in="encoder.conv_in",
    enc_res="encoder.down_blocks.{i}.resnets.{j}",
    enc_attn="encoder.down_blocks.{i}.attentions.{j}",
    enc_down="encoder.down_blocks.{i}.downsamplers.0",
    enc_mid=("encoder.mid_block.resnets.0", "encoder.mid_block.attentions.0", "encoder.mid_block.resnets.1"),
    enc_norm_out="encoder.conv_norm_out",
    enc_conv_out="encoder.conv_out",
    dec_conv_in="decoder.conv_in",
    dec_mid=("decoder.mid_block.resnets.0", "decoder.mid_block.attentions.0", "decoder.mid_block.resnets.1"),
    dec_res="decoder.up_blocks.{i}.resnets.{j}",
    dec_attn="decoder.up_blocks.{i}.attentions.{j}",
    dec_up="decoder.up_blocks.{i}.upsamplers.0",
    dec_norm_out="decoder.conv_norm_out",
    dec_conv_out="decoder.conv_out",
    dec_reversed=False,
    skip="conv_shortcut",
    attn=("group_norm", "to_q", "to_k", "to_v", "to_out.0"),
)
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
_BLOCKS = {"DownEncoderBlock2D", "AttnDownEncoderBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D"}


def model_folder(path: Path) -> Path:
    """The VQModel's folder: ``path`` itself, or its ``vqvae`` subfolder (a pipeline's layout, as aMUSEd's)."""
    if not (path / "config.json").is_file() and (path / "vqvae" / "config.json").is_file():
        return path / "vqvae"
    return path


def read_model(path: Path, options: ConvertOptions) -> VQVAE:
    """A diffusers VQModel folder -> vqtok model (safetensors only: nothing is unpickled)."""
    folder = model_folder(path)
    config = _read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileFormatError(f"{folder}: no {WEIGHTS_FILE} (vqtok reads VQModel weights from safetensors only)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise FileFormatError(f"{weights} is not a readable safetensors file: {e}") from None
    name = options.name or default_name(path / "x")
    tokenizer_config = infer_config(
        state,
        LAYOUT,
        str(folder),
        norm_groups=options.norm_groups or int(config.get("norm_num_groups", 32)),
        l2_normalize=bool(options.l2_normalize),
        labels=(name, options.source or f"diffusers VQModel {name}", options.license or _card_license(path) or "other"),
    )
    if tokenizer_config.attention != bool(config.get("mid_block_add_attention", True)):
        raise ConfigError(f"{folder}: config.json's mid_block_add_attention disagrees with the weights")
    return build_model(state, LAYOUT, tokenizer_config, str(folder))


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise FileFormatError(f"{folder}: no readable config.json of a diffusers VQModel: {e}") from None
    if not isinstance(config, dict) or config.get("_class_name") != "VQModel":
        found = config.get("_class_name") if isinstance(config, dict) else config
        raise FileFormatError(f"{folder}/config.json describes {found!r}, not a diffusers VQModel")
    unsupported = []
    if config.get("norm_type", "group") != "group":
        unsupported.append(f"norm_type={config['norm_type']!r} (MoVQ's spatial norm)")
    if config.get("act_fn", "silu") != "silu":
        unsupported.append(f"act_fn={config['act_fn']!r}")
    blocks = [*config.get("down_block_types", []), *config.get("up_block_types", [])]
    unsupported += [f"block {b!r}" for b in blocks if b not in _BLOCKS]
    if unsupported:
        raise ConfigError(f"{folder}: vqtok cannot convert a VQModel with {', '.join(unsupported)}")
    return config


def _card_license(path: Path) -> str | None:
    """The ``license:`` of a Hugging Face model card (README.md) in the folder or the one above it."""
    for card in (path / "README.md", path.parent / "README.md"):
        if card.is_file():
            match = re.search(r"^license:\s*([\w.+-]+)\s*$", card.read_text(errors="replace"), re.MULTILINE)
            if match:
                return match.group(1)
    return None
