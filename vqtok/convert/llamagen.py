"""LlamaGen's VQ tokenizers (Sun et al. 2024, FoundationVision/LlamaGen): ``vq_ds8_c2i.pt``, ``vq_ds16_c2i.pt``,
``vq_ds16_t2i.pt``, torch ``.pt`` files whose ``model`` entry is the VQModel's state dict (training files add the
optimiser, the discriminator and an argparse ``args``).

Architecture (tokenizer/tokenizer_image/vq_model.py, taming's with other names): ``conv_blocks[i].res[j]``,
attention after every block of the lowest-resolution level, ``mid.0/1/2``; the decoder's ``conv_blocks`` numbered
from the lowest resolution; GroupNorm(32); 8-dim codes compared l2-normalised (``codebook_l2_norm=True``).
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
    enc_res="encoder.conv_blocks.{i}.res.{j}",
    enc_attn="encoder.conv_blocks.{i}.attn.{j}",
    enc_down="encoder.conv_blocks.{i}.downsample",
    enc_mid=("encoder.mid.0", "encoder.mid.1", "encoder.mid.2"),
    enc_norm_out="encoder.norm_out",
    enc_conv_out="encoder.conv_out",
    dec_conv_in="decoder.conv_in",
    dec_mid=("decoder.mid.0", "decoder.mid.1", "decoder.mid.2"),
    dec_res="decoder.conv_blocks.{i}.res.{j}",
    dec_attn="decoder.conv_blocks.{i}.attn.{j}",
    dec_up="decoder.conv_blocks.{i}.upsample",
    dec_norm_out="decoder.norm_out",
    dec_conv_out="decoder.conv_out",
    dec_reversed=False,
    skip="nin_shortcut",
    attn=("norm", "q", "k", "v", "proj_out"),
)
LICENSE = "mit"  # FoundationVision/LlamaGen


def read_model(path: Path, options: ConvertOptions) -> VQVAE:
    """A LlamaGen VQ checkpoint -> vqtok model (the tensors only: nothing in the file runs)."""
    ckpt = read_checkpoint(path)
    root = ckpt.root
    if isinstance(root, dict) and "model" in root:
        state = ckpt.tensors(root["model"], "model")
    elif isinstance(root, dict) and "encoder.conv_in.weight" in root:  # a bare state dict
        state = ckpt.tensors(root, "the state dict")
    else:
        raise FileFormatError(
            f"{path}: no 'model' entry; LlamaGen's VQ checkpoints keep the state dict there{ckpt.note()}"
        )
    name = options.name or default_name(path)
    config = infer_config(
        state,
        LAYOUT,
        str(path),
        norm_groups=options.norm_groups or 32,
        l2_normalize=True if options.l2_normalize is None else options.l2_normalize,
        labels=(name, options.source or f"LlamaGen {name}", options.license or LICENSE),
    )
    return build_model(state, LAYOUT, config, str(path))
