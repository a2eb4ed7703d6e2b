"""The quantizer seam: invariants every quantizer (VQ, FSQ, LFQ) keeps, checked through one interface."""

from __future__ import annotations

import math

import pytest
import torch

from vqtok.config import QuantizerTraining, TokenizerConfig
from vqtok.model.quantizers import (
    QUANTIZERS,
    FiniteScalarQuantizer,
    LookupFreeQuantizer,
    Quantizer,
    VectorQuantizer,
    build_quantizer,
)

CONFIGS = {
    "vq": TokenizerConfig(quantizer="vq", num_codes=64, code_dim=4, l2_normalize=False),
    "fsq": TokenizerConfig(quantizer="fsq", levels=[8, 5, 5, 3], code_dim=4),
    "lfq": TokenizerConfig(quantizer="lfq", code_dim=10),
}


def quantizer(kind: str) -> Quantizer:
    torch.manual_seed(0)
    return build_quantizer(CONFIGS[kind], QuantizerTraining(dead_code_threshold=0.0))


def test_every_registered_quantizer_is_tested():
    assert set(QUANTIZERS) == set(CONFIGS)


@pytest.mark.parametrize("kind", CONFIGS)
def test_ids_lie_in_the_codebook_and_codes_of_ids_are_the_quantized_vectors(kind):
    q = quantizer(kind).eval()
    assert q.codebook_size == CONFIGS[kind].codebook_size
    z = torch.randn(3, q.code_dim, 5, 7) * 2  # (B, D, h, w)
    out = q(z)
    assert out.ids.shape == (3, 5, 7) and out.ids.dtype == torch.int64
    assert int(out.ids.min()) >= 0 and int(out.ids.max()) < q.codebook_size
    assert out.z_q.shape == z.shape and out.z_q.dtype == torch.float32
    torch.testing.assert_close(q.indices_to_codes(out.ids), out.z_q, rtol=0, atol=1e-6)
    video = q(torch.randn(2, q.code_dim, 3, 4, 4))  # (B, D, t, h, w)
    assert video.ids.shape == (2, 3, 4, 4)


@pytest.mark.parametrize("kind", CONFIGS)
def test_the_straight_through_gradient_is_the_identity(kind):
    q = quantizer(kind).eval()
    z = torch.randn(2, q.code_dim, 4, 4, requires_grad=True)
    upstream = torch.randn(2, q.code_dim, 4, 4)
    (q(z).z_q * upstream).sum().backward()
    if isinstance(q, FiniteScalarQuantizer):  # identity through the rounding; the bound's own derivative remains
        zb = z.detach().clone().requires_grad_()
        bounded = q.bound(zb.movedim(1, -1).reshape(-1, q.code_dim)) / q._half_width
        (bounded.reshape(2, 4, 4, q.code_dim).movedim(-1, 1) * upstream).sum().backward()
        torch.testing.assert_close(z.grad, zb.grad)
    else:
        torch.testing.assert_close(z.grad, upstream)


@pytest.mark.parametrize("kind", ["fsq", "lfq"])
def test_implicit_codebooks_enumerate_exactly(kind):
    q = quantizer(kind).eval()
    ids = torch.arange(q.codebook_size)
    codes = q.indices_to_codes(ids[:, None, None])  # (K, D, 1, 1): every code once
    assert torch.unique(codes.flatten(1), dim=0).shape[0] == q.codebook_size  # all distinct
    assert codes.abs().max() <= 1
    u = torch.rand(50_000, q.code_dim, 1, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = torch.atanh(u.clamp(-0.99999, 0.99999))  # spread over what FSQ's tanh bound and LFQ's sign can give
    reached = q(z).ids.flatten()
    assert torch.equal(torch.unique(reached), ids)  # every id is reachable, and no other


def test_fsq_levels_per_channel():
    q = FiniteScalarQuantizer([8, 5, 5, 5, 3])
    assert q.codebook_size == 8 * 5 * 5 * 5 * 3
    codes = q.indices_to_codes(torch.arange(q.codebook_size)[:, None, None]).flatten(1)  # (K, D)
    assert [len(torch.unique(codes[:, d])) for d in range(5)] == [8, 5, 5, 5, 3]
    assert (
        math.prod([8, 8, 8, 5, 5, 5])
        == build_quantizer(TokenizerConfig(quantizer="fsq", levels=[8, 8, 8, 5, 5, 5], code_dim=6)).codebook_size
    )  # Cosmos' 64000


def test_lfq_codes_are_signs_and_ids_their_bits():
    q = LookupFreeQuantizer(3).eval()
    z = torch.tensor([[0.3, -2.0, 0.1], [-0.1, -0.1, -0.1]])[:, :, None, None]  # (2, 3, 1, 1)
    out = q(z)
    assert out.ids.flatten().tolist() == [0b101, 0]
    assert out.z_q[0, :, 0, 0].tolist() == [1.0, -1.0, 1.0]


def test_lfq_entropy_loss_rewards_confident_and_diverse_codes():
    q = LookupFreeQuantizer(4, commitment_weight=0.0, entropy_weight=1.0, temperature=0.1).train()
    spread = torch.tensor([[(-1.0) ** (i >> b & 1) for b in range(4)] for i in range(16)]) * 3  # all 16 corners
    collapsed = torch.ones(16, 4) * 3  # one corner only
    uncertain = torch.zeros(16, 4) + 0.01  # near no corner
    loss = {
        name: float(q.quantize(z)[2])
        for name, z in [("spread", spread), ("collapsed", collapsed), ("uncertain", uncertain)]
    }
    assert loss["spread"] < loss["collapsed"] and loss["spread"] < loss["uncertain"]


@pytest.mark.parametrize("kind", CONFIGS)
def test_usage_statistics_cover_the_whole_codebook(kind):
    q = quantizer(kind).train()
    q.reset_epoch_stats()
    out = q(torch.randn(4, q.code_dim, 8, 8))
    stats = q.epoch_stats()
    used = len(torch.unique(out.ids))
    assert float(stats["usage"]) == pytest.approx(used / q.codebook_size)
    assert 1 <= float(stats["perplexity"]) <= used + 1e-3


def test_identity_tensors_name_what_decides_ids():
    assert set(quantizer("vq").identity_tensors()) == {"embed"}
    assert quantizer("fsq").identity_tensors() == {} and quantizer("lfq").identity_tensors() == {}
    assert isinstance(quantizer("vq"), VectorQuantizer)
