"""The VQ-VAE tokenizer model: encoder -> 1x1 conv to code space -> quantizer -> 1x1 conv -> decoder.

An image model works on (B, C, H, W); a video model (``config.video``) is causal 3D over (B, C, T, H, W).
"""

from __future__ import annotations

from typing import TypedDict

from torch import Tensor, nn

from vqtok.config import QuantizerTraining, TokenizerConfig
from vqtok.model import magvit2
from vqtok.model.autoencoder import Decoder, Encoder
from vqtok.model.quantizers import QuantizerOutput, build_quantizer

# Which state-dict prefixes each exported half carries. Both carry the quantizer's identity tensors (a learned
# codebook: the encoder needs it for the lookup, the decoder to turn ids back into vectors).
QUANTIZER_PREFIX = "quantizer."
ENCODER_PREFIXES = ("encoder.", "quant_conv.", QUANTIZER_PREFIX)
DECODER_PREFIXES = ("post_quant_conv.", "decoder.")
_POINTWISE = ("quant_conv", "post_quant_conv")


class _Architecture(TypedDict):
    """The arguments the encoder and decoder share."""

    base_channels: int
    channel_mults: list[int]
    num_res_blocks: int
    z_channels: int
    groups: int
    attention: bool
    grad_checkpoint: bool
    video: bool
    temporal_levels: int
    attention_levels: tuple[int, ...]


class VQVAE(nn.Module):
    """Images (B, C, H, W) in [-1, 1], H and W multiples of f, <-> ids (B, H/f, W/f) in [0, K).

    A video model maps (B, C, 1 + r*k, H, W) <-> ids (B, 1 + k, H/f, W/f), r = ``config.temporal_downsample``.

    Args:
        config: the architecture.
        quantizer_training: how the quantizer trains (defaults when None; irrelevant for inference).
        gradient_checkpointing: recompute ResNet blocks in backward to save activation memory (training only).
    """

    def __init__(
        self,
        config: TokenizerConfig,
        quantizer_training: QuantizerTraining | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        c = config
        arch = _Architecture(
            base_channels=c.base_channels,
            channel_mults=c.channel_mults,
            num_res_blocks=c.num_res_blocks,
            z_channels=c.z_channels,
            groups=c.norm_groups,
            attention=c.attention,
            grad_checkpoint=gradient_checkpointing,
            video=c.video,
            temporal_levels=c.temporal_levels,
            attention_levels=tuple(c.attention_levels),
        )
        pointwise = nn.Conv3d if c.video else nn.Conv2d
        self.encoder: Encoder | magvit2.Encoder
        self.decoder: Decoder | magvit2.Decoder
        self.quant_conv: nn.Module
        self.post_quant_conv: nn.Module
        if c.backbone == "magvit2":  # Open-MAGVIT2's design: LFQ on the encoder's output itself (z_channels bits)
            shared = (c.base_channels, c.channel_mults, c.num_res_blocks, c.z_channels, c.norm_groups)
            self.encoder = magvit2.Encoder(c.in_channels, *shared)
            self.quant_conv, self.post_quant_conv = nn.Identity(), nn.Identity()
            self.decoder = magvit2.Decoder(c.in_channels, *shared)
        else:
            self.encoder = Encoder(in_channels=c.in_channels, **arch)
            self.quant_conv = pointwise(c.z_channels, c.code_dim, 1)
            self.post_quant_conv = pointwise(c.code_dim, c.z_channels, 1)
            self.decoder = Decoder(out_channels=c.in_channels, **arch)
        self.quantizer = build_quantizer(c, quantizer_training)

    def encode(self, x: Tensor) -> QuantizerOutput:
        """x (B, C, [T,] H, W) -> quantizer output with z_q (B, D, [t,] h, w) fp32 and ids (B, [t,] h, w)."""
        return self.quantizer(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: Tensor) -> Tensor:
        """z_q (B, D, [t,] h, w) -> reconstruction (B, C, [1 + r(t-1),] h*f, w*f), unclamped, in the decoder's dtype."""
        z_q = z_q.to(self.decoder.conv_in.weight.dtype)
        return self.decoder(self.post_quant_conv(z_q))

    def decode_ids(self, ids: Tensor) -> Tensor:
        """ids (B, [t,] h, w) int64 -> reconstruction (B, C, [1 + r(t-1),] h*f, w*f)."""
        return self.decode(self.quantizer.indices_to_codes(ids))

    def forward(self, x: Tensor) -> tuple[Tensor, QuantizerOutput]:
        """x (B, C, [T,] H, W) -> (reconstruction of the same shape, quantizer output)."""
        q = self.encode(x)
        return self.decode(q.z_q), q

    def identity_tensors(self) -> dict[str, Tensor]:
        """The state-dict tensors that, with the architecture, decide which id stands for which code: the
        quantizer's (a learned codebook), or, for an implicit codebook, the 1x1 convs into and out of code space
        (weights of one trained model, so two FSQ or LFQ models of one architecture differ)."""
        tensors = {QUANTIZER_PREFIX + k: v for k, v in self.quantizer.identity_tensors().items()}
        if tensors:
            return tensors
        # the magvit2 backbone has no 1x1 convs around the codes: the convs into and out of code space instead
        convs = ("encoder.conv_out", "decoder.conv_in") if self.config.backbone == "magvit2" else _POINTWISE
        return {f"{conv}.{k}": v for conv in convs for k, v in self.get_submodule(conv).state_dict().items()}

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's final conv (the adaptive GAN weight balances gradients there)."""
        return self.decoder.conv_out.weight
