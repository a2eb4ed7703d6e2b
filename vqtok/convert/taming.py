"""taming-transformers VQGAN (Esser et al. 2021): Lightning 1.x ``.ckpt`` files (``last.ckpt``) whose
``state_dict`` holds ``encoder.*``, ``decoder.*``, ``quant_conv``, ``quantize.embedding.weight``,
``post_quant_conv`` and the discriminator and LPIPS weights under ``loss.*`` (not needed to tokenize).

Architecture (taming/modules/diffusionmodules/model.py): ``down[i].block[j]`` / ``down[i].attn[j]`` at the
``attn_resolutions``, ``mid.block_1/attn_1/block_2``; ``up[i]`` numbered from full resolution; GroupNorm(32).
"""

from __future__ import annotations

from pathlib import Path

from vqtok.convert.layout import Layout, build_model, infer_config
from vqtok.convert.options import ConvertOptions, default_name
from vqtok.convert.pickle_reader import read_checkpoint
from vqtok.errors import FileFormatError
from vqtok.model.vqvae import VQVAE

LAYOUT = Layout(
    enc_conv_in="encoder.conv_in",
    enc_res="encoder.down.{i}.block.{j}",
    enc_attn="encoder.down.{i}.attn.{j}",
    enc_down="encoder.down.{i}.downsample",
    enc_mid=("encoder.mid.block_1", "encoder.mid.attn_1", "encoder.mid.block_2"),
    enc_norm_out="encoder.norm_out",
    enc_conv_out="encoder.conv_out",
    dec_conv_in="decoder.conv_in",
    dec_mid=("decoder.mid.block_1", "decoder.mid.attn_1", "decoder.mid.block_2"),
    dec_res="decoder.up.{i}.block.{j}",
    dec_attn="decoder.up.{i}.attn.{j}",
    dec_up="decoder.up.{i}.upsample",
    dec_norm_out="decoder.norm_out",
    dec_conv_out="decoder.conv_out",
    dec_reversed=True,
    skip="nin_shortcut",
    attn=("norm", "q", "k", "v", "proj_out"),
)
LICENSE = "mit"  # CompVis/taming-transformers


def read_model(path: Path, options: ConvertOptions) -> VQVAE:
    """A taming VQGAN checkpoint -> vqtok model (the tensors only: nothing in the file runs)."""
    ckpt = read_checkpoint(path)
    root = ckpt.root
    if not isinstance(root, dict) or "state_dict" not in root:
        raise FileFormatError(f"{path}: no 'state_dict' entry; taming's Lightning checkpoints have one{ckpt.note()}")
    state = ckpt.tensors(root["state_dict"], "state_dict")
    if "quantize.embed.weight" in state:
        raise FileFormatError(f"{path}: a Gumbel-softmax VQGAN (quantize.embed, quantize.proj); vqtok converts VQ ones")
    name = options.name or default_name(path)
    config = infer_config(
        state,
        LAYOUT,
        str(path),
        norm_groups=options.norm_groups or 32,
        l2_normalize=bool(options.l2_normalize),
        labels=(name, options.source or f"taming-transformers {name}", options.license or LICENSE),
    )
    return build_model(state, LAYOUT, config, str(path))
