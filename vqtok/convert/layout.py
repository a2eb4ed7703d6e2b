"""Taming-style autoencoders in other codebases' naming: read their architecture from the tensors, map their weights
onto :class:`~vqtok.model.vqvae.VQVAE`.

taming-transformers, LlamaGen and diffusers' VQModel share one design (conv_in; per level ResNet blocks, optional
attention after each, a stride-2 downsample padded right/bottom; mid block ResNet-attention-ResNet; GroupNorm-SiLU-
conv out; 1x1 convs around a codebook) and differ in names. A :class:`Layout` says where each piece lives; level ``i``
counts from full resolution in the encoder and from the lowest resolution in the decoder, as vqtok's modules do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vqtok.config import TokenizerConfig
from vqtok.errors import ConfigError, FileFormatError
from vqtok.model.vqvae import VQVAE


@dataclass(frozen=True)
class Layout:
    """Key prefixes (``str.format`` templates over ``i``, the level, and ``j``, the block) of one codebase."""

    enc_conv_in: str
    enc_res: str
    enc_attn: str
    enc_down: str
    enc_mid: tuple[str, str, str]  # ResNet, attention, ResNet
    enc_norm_out: str
    enc_conv_out: str
    dec_conv_in: str
    dec_mid: tuple[str, str, str]
    dec_res: str  # i: the source's decoder level index (see dec_level)
    dec_attn: str
    dec_up: str
    dec_norm_out: str
    dec_conv_out: str
    dec_reversed: bool  # the source numbers decoder levels from full resolution (taming) rather than the lowest
    skip: str  # the ResNet block's 1x1 shortcut
    attn: tuple[str, str, str, str, str]  # norm, q, k, v, output projection
    codebook: str = "quantize.embedding.weight"
    quant_conv: str = "quant_conv"
    post_quant_conv: str = "post_quant_conv"

    def dec_level(self, level: int, num_levels: int) -> int:
        """The source's index of vqtok decoder level ``level`` (0 = lowest resolution)."""
        return num_levels - 1 - level if self.dec_reversed else level


def _shape(state: dict[str, Tensor], key: str, where: str) -> torch.Size:
    if key not in state:
        raise FileFormatError(f"{where}: no tensor {key!r}; not a checkpoint of this kind (check --from)")
    return state[key].shape


def _count(state: dict[str, Tensor], template: str, **fixed: int) -> int:
    """How many consecutive indices n make ``template.format(n)`` + ".conv1.weight" (or ".norm.weight") present."""
    n = 0
    while any(f"{template.format(n=n, **fixed)}.{leaf}" in state for leaf in ("conv1.weight", "norm.weight")):
        n += 1
    return n


def infer_config(
    state: dict[str, Tensor],
    layout: Layout,
    where: str,
    norm_groups: int,
    l2_normalize: bool,
    labels: tuple[str, str, str],
) -> TokenizerConfig:
    """The :class:`TokenizerConfig` of a checkpoint's tensors. GroupNorm's group count and whether codes are
    l2-normalised leave no trace in the tensors: the caller gives them (from the published config), with the
    labels (name, source, license)."""
    conv_in = _shape(state, f"{layout.enc_conv_in}.weight", where)  # (C0, in, 3, 3)
    levels = _count(state, layout.enc_res.replace("{i}", "{n}").replace("{j}", "0"))
    if levels == 0:
        raise FileFormatError(f"{where}: no encoder blocks at {layout.enc_res.format(i=0, j=0)!r}; check --from")
    blocks = _count(state, layout.enc_res.replace("{j}", "{n}"), i=0)
    base = conv_in[0]
    widths = [_shape(state, f"{layout.enc_res.format(i=i, j=0)}.conv1.weight", where)[0] for i in range(levels)]
    if any(w % base for w in widths):
        raise ConfigError(f"{where}: level widths {widths} are not multiples of the first conv's width {base}")
    attention_levels = [
        i for i in range(levels) if f"{layout.enc_attn.format(i=i, j=0)}.{layout.attn[1]}.weight" in state
    ]
    codebook = _shape(state, layout.codebook, where)  # (K, D)
    config = TokenizerConfig(
        in_channels=conv_in[1],
        base_channels=base,
        channel_mults=[w // base for w in widths],
        num_res_blocks=blocks,
        attention=f"{layout.enc_mid[1]}.{layout.attn[1]}.weight" in state,
        z_channels=_shape(state, f"{layout.enc_conv_out}.weight", where)[0],
        norm_groups=norm_groups,
        quantizer="vq",
        num_codes=codebook[0],
        code_dim=codebook[1],
        l2_normalize=l2_normalize,
        attention_levels=attention_levels,
        name=labels[0],
        source=labels[1],
        license=labels[2],
    )
    _check_decoder(state, layout, config, where)
    return config


def _check_decoder(state: dict[str, Tensor], layout: Layout, c: TokenizerConfig, where: str) -> None:
    """vqtok's decoder mirrors the encoder: refuse checkpoints whose decoder does not (say why)."""
    n = len(c.channel_mults)
    for level in range(n):
        src = layout.dec_level(level, n)
        blocks = _count(state, layout.dec_res.replace("{j}", "{n}"), i=src)
        if blocks != c.num_res_blocks + 1:
            raise ConfigError(
                f"{where}: decoder level {src} has {blocks} ResNet blocks; vqtok's decoder has num_res_blocks + 1 = "
                f"{c.num_res_blocks + 1} (the encoder has {c.num_res_blocks})"
            )
        width = _shape(state, f"{layout.dec_res.format(i=src, j=0)}.conv1.weight", where)[0]
        expected = c.base_channels * c.channel_mults[n - 1 - level]
        if width != expected:
            raise ConfigError(
                f"{where}: decoder widths do not mirror the encoder's (level {src}: {width}, not {expected})"
            )
        attn = f"{layout.dec_attn.format(i=src, j=0)}.{layout.attn[1]}.weight" in state
        if attn != (n - 1 - level in c.attention_levels):
            raise ConfigError(
                f"{where}: the decoder's attention levels do not mirror the encoder's {c.attention_levels}"
            )
    if (f"{layout.dec_mid[1]}.{layout.attn[1]}.weight" in state) != c.attention:
        raise ConfigError(f"{where}: the encoder and decoder disagree on attention in the middle block")


def map_state(state: dict[str, Tensor], layout: Layout, config: TokenizerConfig) -> dict[str, Tensor]:
    """The checkpoint's tensors under vqtok's names (fp32), for a model of ``config`` built by :func:`infer_config`."""
    out: dict[str, Tensor] = {}
    n, blocks = len(config.channel_mults), config.num_res_blocks
    _copy(out, state, "encoder.conv_in", layout.enc_conv_in)
    for i in range(n):
        pos = 0
        for j in range(blocks):
            _resnet(out, state, f"encoder.levels.{i}.{pos}", layout.enc_res.format(i=i, j=j), layout)
            pos += 1
            if i in config.attention_levels:
                _attention(out, state, f"encoder.levels.{i}.{pos}", layout.enc_attn.format(i=i, j=j), layout)
                pos += 1
        if i < n - 1:
            _copy(out, state, f"encoder.levels.{i}.{pos}.conv", f"{layout.enc_down.format(i=i)}.conv")
    _mid(out, state, "encoder.mid", layout.enc_mid, layout, config.attention)
    _copy(out, state, "encoder.norm_out", layout.enc_norm_out)
    _copy(out, state, "encoder.conv_out", layout.enc_conv_out)
    _copy(out, state, "quant_conv", layout.quant_conv)
    out["quantizer.embed"] = state[layout.codebook].float()
    _copy(out, state, "post_quant_conv", layout.post_quant_conv)
    _copy(out, state, "decoder.conv_in", layout.dec_conv_in)
    _mid(out, state, "decoder.mid", layout.dec_mid, layout, config.attention)
    for level in range(n):
        src, pos = layout.dec_level(level, n), 0
        for j in range(blocks + 1):
            _resnet(out, state, f"decoder.levels.{level}.{pos}", layout.dec_res.format(i=src, j=j), layout)
            pos += 1
            if n - 1 - level in config.attention_levels:
                _attention(out, state, f"decoder.levels.{level}.{pos}", layout.dec_attn.format(i=src, j=j), layout)
                pos += 1
        if level < n - 1:
            _copy(out, state, f"decoder.levels.{level}.{pos}.conv", f"{layout.dec_up.format(i=src)}.conv")
    _copy(out, state, "decoder.norm_out", layout.dec_norm_out)
    _copy(out, state, "decoder.conv_out", layout.dec_conv_out)
    return out


def _copy(out: dict[str, Tensor], state: dict[str, Tensor], dst: str, src: str) -> None:
    for leaf in ("weight", "bias"):
        if f"{src}.{leaf}" not in state:
            raise FileFormatError(f"the checkpoint has no tensor {src}.{leaf} (for vqtok's {dst}.{leaf})")
        out[f"{dst}.{leaf}"] = state[f"{src}.{leaf}"].float()


def _resnet(out: dict[str, Tensor], state: dict[str, Tensor], dst: str, src: str, layout: Layout) -> None:
    for name in ("norm1", "conv1", "norm2", "conv2"):
        _copy(out, state, f"{dst}.{name}", f"{src}.{name}")
    if f"{src}.{layout.skip}.weight" in state:
        _copy(out, state, f"{dst}.skip", f"{src}.{layout.skip}")


def _attention(out: dict[str, Tensor], state: dict[str, Tensor], dst: str, src: str, layout: Layout) -> None:
    """Separate q, k, v (1x1 convs, or linear layers in diffusers) -> vqtok's one qkv 1x1 conv."""
    norm, q, k, v, proj = layout.attn
    _copy(out, state, f"{dst}.norm", f"{src}.{norm}")
    parts: dict[str, Tensor] = {}
    for name in (q, k, v, proj):
        _copy(parts, state, name, f"{src}.{name}")
    c = parts[f"{q}.weight"].shape[0]
    out[f"{dst}.qkv.weight"] = torch.cat([parts[f"{x}.weight"].reshape(c, c) for x in (q, k, v)]).reshape(
        3 * c, c, 1, 1
    )
    out[f"{dst}.qkv.bias"] = torch.cat([parts[f"{x}.bias"] for x in (q, k, v)])
    out[f"{dst}.proj.weight"] = parts[f"{proj}.weight"].reshape(c, c, 1, 1)
    out[f"{dst}.proj.bias"] = parts[f"{proj}.bias"]


def _mid(
    out: dict[str, Tensor], state: dict[str, Tensor], dst: str, src: tuple[str, str, str], layout: Layout, attn: bool
) -> None:
    _resnet(out, state, f"{dst}.0", src[0], layout)
    if attn:
        _attention(out, state, f"{dst}.1", src[1], layout)
    _resnet(out, state, f"{dst}.2", src[2], layout)


def build_model(state: dict[str, Tensor], layout: Layout, config: TokenizerConfig, where: str) -> VQVAE:
    """A :class:`VQVAE` of ``config`` holding the checkpoint's weights; every vqtok weight must come from it, and
    every encoder and decoder weight of the checkpoint must be used (else it has a part vqtok would silently drop)."""
    tracked = _ReadTracker(state)
    mapped = map_state(tracked, layout, config)
    unused = sorted(k for k in state if k.startswith(("encoder.", "decoder.")) and k not in tracked.read)
    if unused:
        raise ConfigError(f"{where}: the checkpoint has weights vqtok's model has no place for: {unused[:5]}")
    model = VQVAE(config).eval()
    expected = model.state_dict()
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise ConfigError(f"{where}: tensors do not fit the inferred architecture: {', '.join(wrong[:5])}")
    result = model.load_state_dict(mapped, strict=False)
    training_state = {k for k in expected if k.startswith("quantizer.") and k != "quantizer.embed"}
    missing = sorted(set(result.missing_keys) - training_state)
    if missing or result.unexpected_keys:
        raise ConfigError(f"{where}: could not map {missing[:5]} / {result.unexpected_keys[:5]}")
    bad = sorted(k for k, v in mapped.items() if not torch.isfinite(v).all())
    if bad:
        raise FileFormatError(f"{where}: non-finite values in {bad[:5]}")
    return model


class _ReadTracker(dict):
    """The state dict, recording which keys were read."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__(state)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Tensor:
        self.read.add(key)
        return super().__getitem__(key)
