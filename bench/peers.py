"""The libraries users would pick instead, built to match vqtok's settings. Installed only for the benchmark:
``pip install -e ".[bench]"``."""

from __future__ import annotations

from torch import nn

from vqtok.config import TokenizerConfig

INSTALL = 'the benchmark compares against peer libraries: pip install -e ".[bench]"'


def vector_quantize(num_codes: int, code_dim: int) -> nn.Module:
    """vector-quantize-pytorch's ``VectorQuantize`` as vqtok's EMA quantizer: plain (not cosine) distances,
    decay 0.99, commitment weight 0.25, straight-through gradients (no rotation trick), no k-means, no restarts."""
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError as e:
        raise SystemExit(f"{INSTALL} ({e})") from None
    return VectorQuantize(
        dim=code_dim,
        codebook_size=num_codes,
        decay=0.99,
        commitment_weight=0.25,
        use_cosine_sim=False,
        kmeans_init=False,
        threshold_ema_dead_code=0,
        rotation_trick=False,
    )


def vq_model(config: TokenizerConfig) -> nn.Module:
    """diffusers' ``VQModel`` with vqtok's widths, blocks per level, groups, latent and code sizes and codebook."""
    try:
        from diffusers import VQModel
    except ImportError as e:
        raise SystemExit(f"{INSTALL} ({e})") from None
    levels = len(config.channel_mults)
    return VQModel(
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.base_channels * m for m in config.channel_mults),
        layers_per_block=config.num_res_blocks,
        latent_channels=config.z_channels,
        num_vq_embeddings=config.num_codes,
        norm_num_groups=config.norm_groups,
        vq_embed_dim=config.code_dim,
        mid_block_add_attention=config.attention,
    )


def matched_description(config: TokenizerConfig) -> str:
    widths = [config.base_channels * m for m in config.channel_mults]
    return (
        f"widths {widths}, {config.num_res_blocks} ResNet blocks per encoder level (+1 in the decoder), "
        f"GroupNorm {config.norm_groups}, latent {config.z_channels} ch, {config.num_codes} codes of "
        f"{config.code_dim} dims, mid-block attention {'on' if config.attention else 'off'}"
    )
