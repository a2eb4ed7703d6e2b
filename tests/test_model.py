"""The autoencoder: presets, downsampling factors, attention and gradient checkpointing, config round trips."""

import pytest
import torch

from vqtok.config import PRESETS, QuantizerTraining, TokenizerConfig
from vqtok.errors import ConfigError
from vqtok.model import blocks
from vqtok.model.vqvae import VQVAE


@pytest.mark.parametrize(("mults", "f"), [([1, 2, 2], 4), ([1, 1, 2, 2], 8), ([1, 1, 2, 2, 2], 16)])
def test_downsampling_factor_sets_grid_shape(mults, f):
    c = TokenizerConfig.from_name("tiny", channel_mults=mults)
    assert c.downsample == f
    x_rec, q = VQVAE(c)(torch.rand(1, 3, 64, 32) * 2 - 1)
    assert q.ids.shape == (1, 64 // f, 32 // f) and x_rec.shape == (1, 3, 64, 32)


def test_presets_are_valid_and_named():
    for name in PRESETS:
        c = TokenizerConfig.from_name(name)
        assert c.name == name
    assert TokenizerConfig.from_name("f8").downsample == 8 and TokenizerConfig.from_name("f16").downsample == 16
    assert TokenizerConfig.from_name("f8").num_codes == 16384


def test_gradient_checkpointing_gives_the_same_gradients(monkeypatch):
    torch.manual_seed(0)
    plain = VQVAE(TokenizerConfig.from_name("tiny"))
    ckpt = VQVAE(TokenizerConfig.from_name("tiny"), gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    calls = []
    real = blocks.checkpoint
    monkeypatch.setattr(blocks, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    for m in (plain, ckpt):
        m.quantizer.eval()  # same codebook for both: no EMA update between the two runs
        x_rec, q = m(x.clone().requires_grad_())
        ((x_rec - x).abs().mean() + q.loss).backward()
    n_blocks = sum(isinstance(mod, blocks.ResnetBlock) for mod in ckpt.modules())
    assert len(calls) == n_blocks  # every ResNet block of the checkpointed model recomputed, none of the plain one
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert p1.grad is not None and torch.allclose(p1.grad, p2.grad, atol=1e-6), name


def test_attention_can_be_left_out():
    with_attn = VQVAE(TokenizerConfig.from_name("tiny"))
    without = VQVAE(TokenizerConfig.from_name("tiny", attention=False))
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in with_attn.parameters())
    assert without(torch.zeros(1, 3, 16, 16))[0].shape == (1, 3, 16, 16)


def test_config_round_trips_and_rejects_bad_fields(tmp_path):
    c = TokenizerConfig.from_name("f16", num_codes=1024)
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(c.to_dict()))
    assert TokenizerConfig.from_file(path) == c
    with pytest.raises(ConfigError, match="unknown tokenizer config fields \\['colour'\\]"):
        TokenizerConfig.from_dict({**c.to_dict(), "colour": 1})
    with pytest.raises(ConfigError, match="norm_groups"):
        TokenizerConfig(norm_groups=7)
    with pytest.raises(ConfigError, match="codebook must be 'ema' or 'learned'"):
        QuantizerTraining(codebook="kmeans")
    with pytest.raises(ConfigError, match="quantizer must be one of \\['vq', 'fsq', 'lfq'\\]"):
        TokenizerConfig(quantizer="rvq")
    with pytest.raises(ConfigError, match="'fsq' needs code_dim == len\\(levels\\) = 3"):
        TokenizerConfig(quantizer="fsq", levels=[8, 5, 5], code_dim=8)
    with pytest.raises(ConfigError, match="'lfq' needs code_dim"):
        TokenizerConfig(quantizer="lfq", code_dim=40)
    with pytest.raises(ConfigError, match="training options, not architecture"):
        TokenizerConfig.from_name("tiny", gradient_checkpointing=True)
    legacy = {**c.to_dict(), "codebook": "ema", "ema_decay": 0.9, "gradient_checkpointing": True}
    assert TokenizerConfig.from_dict(legacy) == c  # config.json of an export from before vqtok 0.2
    with pytest.raises(ConfigError, match="num_codes must be of type int, got 512.0"):
        TokenizerConfig.from_dict({**c.to_dict(), "num_codes": 512.0})
    with pytest.raises(ConfigError, match="attention must be of type bool"):
        TokenizerConfig.from_dict({**c.to_dict(), "attention": "yes"})
    with pytest.raises(ConfigError, match="unknown preset 'f32'"):
        TokenizerConfig.from_name("f32")
