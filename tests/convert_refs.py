"""Reference tokenizers for the conversion tests: the authors' own modules at a small size with random weights,
saved the way their training code saves them, and their encode/decode as their code runs it.

- taming: taming-transformers' Encoder, Decoder and VectorQuantizer in a Lightning 1.x ``.ckpt`` (``state_dict``
  with ``loss.*``, ``callbacks`` keyed by a callback class, so torch's weights-only loader refuses the file).
- LlamaGen: its VQModel is taming's modules under other names (tokenizer/tokenizer_image/vq_model.py): the fixture
  is taming's modules renamed to LlamaGen's published state-dict keys, saved as its train script saves
  (``{"model": ..., "args": argparse.Namespace}``), with its l2-normalised lookup computed here.
- diffusers: ``VQModel.save_pretrained`` (config.json + safetensors).
- Open-MAGVIT2: its improved Encoder/Decoder, LFQ and LitEma (open-magvit2 1.1, installed with --no-deps into its
  own folder named by VQTOK_OPEN_MAGVIT2, since it pins old Lightning and transformers) in a Lightning 2 ``.ckpt``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.synthetic import render_dead_leaves

SIZE = 32  # the references' nominal resolution (taming places attention by it); f = 4 below
SIDE = 64  # test inputs: 4 images of 64 x 64 -> 4 x 16 x 16 = 1024 ids per input kind


def inputs(seed: int = 0) -> dict[str, Tensor]:
    """(4, 3, SIDE, SIDE) in [-1, 1]: uniform noise, and dead-leaves images (edges, flat regions, texture)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    leaves = np.stack([render_dead_leaves(rng, SIDE) for _ in range(4)])  # (4, H, W, 3) uint8
    return {
        "random": torch.rand(4, 3, SIDE, SIDE, generator=g) * 2 - 1,
        "real-looking": torch.from_numpy(leaves).permute(0, 3, 1, 2).float() / 127.5 - 1,
    }


class TamingVQGAN(nn.Module):
    """taming.models.vqgan.VQModel's parts and attribute names, without its Lightning base class."""

    def __init__(self, n_embed: int = 64, embed_dim: int = 8, attn_resolutions: tuple[int, ...] = (16,)) -> None:
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import VectorQuantizer

        ddconfig = dict(
            double_z=False, z_channels=32, resolution=SIZE, in_channels=3, out_ch=3, ch=32,
            ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=list(attn_resolutions), dropout=0.0,
        )  # fmt: skip
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(32, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, 32, 1)
        self.loss = nn.Module()  # VQLPIPSWithDiscriminator's weights ride along in taming's checkpoints
        self.loss.discriminator = nn.Sequential(nn.Conv2d(3, 8, 4))
        randomize(self)

    def encode(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> ids (B, H/4, W/4), as taming's VQModel.encode computes them."""
        z = self.quant_conv(self.encoder(x))
        _, _, (_, _, ids) = self.quantize(z)
        return ids.reshape(z.shape[0], z.shape[2], z.shape[3])

    def decode_ids(self, ids: Tensor) -> Tensor:
        z_q = self.quantize.embedding(ids).permute(0, 3, 1, 2)  # (B, D, h, w)
        return self.decoder(self.post_quant_conv(z_q))


def randomize(model: nn.Module) -> None:
    """Random weights with non-trivial norms and biases (default inits leave GroupNorm at identity)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def save_taming_ckpt(model: TamingVQGAN, path: Path) -> None:
    """Save as Lightning 1.0 saved taming's releases: callbacks keyed by the callback class itself."""
    fake = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": fake.__name__})  # noqa: N806
    fake.ModelCheckpoint = ModelCheckpoint  # type: ignore[attr-defined]
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", fake.__name__]
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update({n: types.ModuleType(n) for n in names[:2]} | {fake.__name__: fake})
    try:
        torch.save(
            {
                "epoch": 3,
                "global_step": 1000,
                "pytorch-lightning_version": "1.0.8",
                "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "best_model_path": "x.ckpt"}},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6}]}],
                "lr_schedulers": [],
                "state_dict": model.state_dict(),
            },
            path,
        )
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class LlamaGenVQ(TamingVQGAN):
    """LlamaGen's VQModel: taming's modules with attention at the lowest-resolution level and an l2-normalised
    lookup of 8-dim codes; its state dict is renamed to LlamaGen's keys by :func:`llamagen_state_dict`."""

    def __init__(self) -> None:
        super().__init__(n_embed=64, embed_dim=8, attn_resolutions=(8,))  # (8,): the last of 32, 16, 8
        del self.loss
        with torch.no_grad():  # as LlamaGen's VectorQuantizer.__init__: uniform(-1/K, 1/K), then l2-normalised
            self.quantize.embedding.weight.uniform_(-1 / 64, 1 / 64)
            self.quantize.embedding.weight.copy_(F.normalize(self.quantize.embedding.weight, dim=-1))

    def codebook(self) -> Tensor:
        return F.normalize(self.quantize.embedding.weight, dim=-1)

    def encode(self, x: Tensor) -> Tensor:
        """LlamaGen's VectorQuantizer.forward: z and codes l2-normalised, squared distances, argmin."""
        z = self.quant_conv(self.encoder(x))
        B, D, h, w = z.shape
        z_flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, D), dim=-1)  # (B*h*w, D)
        e = self.codebook()
        d = z_flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * torch.einsum("bd,dn->bn", z_flat, e.t())
        return d.argmin(1).reshape(B, h, w)

    def decode_ids(self, ids: Tensor) -> Tensor:
        z_q = self.codebook()[ids].permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(z_q))


def llamagen_state_dict(model: LlamaGenVQ) -> OrderedDict:
    """taming's keys -> LlamaGen's published VQModel keys (the decoder's levels renumbered from the lowest)."""
    n = len(model.encoder.down)
    out = OrderedDict()
    for key, value in model.state_dict().items():
        key = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.conv_blocks.\1.res.", key)
        key = re.sub(r"^encoder\.down\.(\d+)\.", r"encoder.conv_blocks.\1.", key)
        key = re.sub(r"^decoder\.up\.(\d+)\.", lambda m: f"decoder.conv_blocks.{n - 1 - int(m[1])}.", key)
        key = re.sub(r"^(decoder\.conv_blocks\.\d+)\.block\.", r"\1.res.", key)
        key = re.sub(r"\.mid\.block_1\.", ".mid.0.", key).replace(".mid.attn_1.", ".mid.1.")
        key = key.replace(".mid.block_2.", ".mid.2.")
        out[key] = value
    out["quantize.codebook_used"] = torch.zeros(65536)  # LlamaGen's usage buffer (show_usage=True)
    return out


def save_llamagen_pt(model: LlamaGenVQ, path: Path) -> None:
    """As LlamaGen's train_vq.py saves: model, optimiser, discriminator, steps and the argparse args."""
    args = argparse.Namespace(vq_model="VQ-16", codebook_size=64, codebook_embed_dim=8, codebook_l2_norm=True)
    torch.save({"model": llamagen_state_dict(model), "optimizer": {}, "steps": 10, "args": args}, path)


def diffusers_vqmodel() -> nn.Module:
    """A small diffusers VQModel: attention at the middle level and in the mid block, an 8-dim code space."""
    diffusers = pytest.importorskip(
        "diffusers", reason="the diffusers reference needs diffusers (pip install diffusers)"
    )
    model = diffusers.VQModel(
        block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
        layers_per_block=1,
        latent_channels=16,
        vq_embed_dim=8,
        num_vq_embeddings=64,
        norm_num_groups=16,
    )
    randomize(model)
    return model.eval()


def diffusers_encode(model: nn.Module, x: Tensor) -> Tensor:
    h = model.encode(x).latents  # (B, D, h, w) before quantisation
    _, _, (_, _, ids) = model.quantize(h)
    return ids.reshape(h.shape[0], h.shape[2], h.shape[3])


def diffusers_decode_ids(model: nn.Module, ids: Tensor) -> Tensor:
    z_q = model.quantize.embedding(ids).permute(0, 3, 1, 2)
    return model.decode(z_q, force_not_quantize=True).sample


def import_open_magvit2() -> types.ModuleType:
    """open_magvit2's torch-only modules, from the folder VQTOK_OPEN_MAGVIT2 names (or the environment)."""
    folder = os.environ.get("VQTOK_OPEN_MAGVIT2")
    if folder and folder not in sys.path:
        sys.path.append(folder)
    return pytest.importorskip(
        "open_magvit2.taming.modules.diffusionmodules.improved_model",
        reason="the Open-MAGVIT2 reference needs open-magvit2 1.1: pip install --no-deps --target DIR "
        "open-magvit2==1.1 and VQTOK_OPEN_MAGVIT2=DIR (as .ci/run does)",
    )


class OpenMagvit2(nn.Module):
    """open_magvit2.taming.models.lfqgan.VQModel's parts and names (use_ema=True), without its Lightning base."""

    def __init__(self) -> None:
        super().__init__()
        improved = import_open_magvit2()
        from open_magvit2.taming.modules.ema import LitEma
        from open_magvit2.taming.modules.vqvae.lookup_free_quantize import LFQ

        ddconfig = dict(
            double_z=False, z_channels=10, resolution=SIZE, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2, 2],
            num_res_blocks=2,
        )  # fmt: skip
        self.encoder = improved.Encoder(**ddconfig)
        self.decoder = improved.Decoder(**ddconfig)
        self.loss = nn.Module()
        self.loss.discriminator = nn.Sequential(nn.Conv2d(3, 8, 4))
        self.quantize = LFQ(dim=10, codebook_size=2**10, sample_minimization_weight=1.0, batch_maximization_weight=1.0)
        randomize(self)
        self.model_ema = LitEma(self)
        with torch.no_grad():  # EMA weights that differ from the raw ones, so the test sees which are converted
            for name in self.model_ema.m_name2s_name.values():
                buf = getattr(self.model_ema, name)
                buf.add_(0.05 * torch.randn(buf.shape, generator=torch.Generator().manual_seed(len(name))))

    def use_ema_weights(self) -> None:
        """What its evaluation does (ema_scope): the EMA copies into the model."""
        self.model_ema.copy_to(self)

    def encode(self, x: Tensor) -> Tensor:
        h = self.encoder(x)
        (_, _, ids), _ = self.quantize(h, return_loss_breakdown=True)
        return ids.reshape(h.shape[0], h.shape[2], h.shape[3])

    def decode_ids(self, ids: Tensor) -> Tensor:
        B, h, w = ids.shape
        z_q = self.quantize.get_codebook_entry(ids.reshape(B, h * w), (B, h, w, 10), order=None)
        return self.decoder(z_q)


def save_open_magvit2_ckpt(model: OpenMagvit2, path: Path) -> None:
    """As Lightning 2.2 saves its VQModel: state_dict (model_ema.* included), loops, string-keyed callbacks."""
    torch.save(
        {
            "epoch": 269,
            "global_step": 10,
            "pytorch-lightning_version": "2.2.0",
            "state_dict": model.state_dict(),
            "loops": {"fit_loop": {"state_dict": {}}},
            "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min'}": {"best_model_path": ""}},
            "optimizer_states": [],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": {"n_embed": 1024, "embed_dim": 10, "use_ema": True, "args": argparse.Namespace(x=1)},
        },
        path,
    )
