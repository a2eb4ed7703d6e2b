"""Invariants of VectorQuantizer: straight-through gradients, EMA maths, restarts, fp32 lookup, DDP sync."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vqtok.model.quantizers import VectorQuantizer, nearest_codes


def fp64_argmin(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z.double(), codebook.double()).argmin(dim=1)


def test_straight_through_gradient_is_identity():
    vq = VectorQuantizer(num_codes=32, code_dim=4, dead_code_threshold=0)
    z = torch.randn(2, 4, 5, 5, requires_grad=True)
    out = vq(z)
    assert not torch.equal(out.z_q, z)  # forward is quantized...
    out.z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # ...backward is the identity


def test_gradient_reaches_encoder_through_tokenizer():
    from vqtok.config import TokenizerConfig
    from vqtok.model.vqvae import VQVAE

    model = VQVAE(TokenizerConfig.from_name("tiny"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    x_rec, q = model(x)
    (F.mse_loss(x_rec, x) + q.loss).backward()
    assert model.encoder.conv_in.weight.grad is not None
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quantizer.embed.grad is None  # EMA codebook: no gradient


def test_commitment_loss_is_beta_times_distance():
    vq = VectorQuantizer(num_codes=16, code_dim=3, commitment_weight=0.7, dead_code_threshold=0).eval()
    z = torch.randn(4, 3, 2, 2)
    out = vq(z)
    e = vq.indices_to_codes(out.ids)
    assert torch.allclose(out.loss, 0.7 * F.mse_loss(z, e))


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.99])
def test_ema_moves_used_codes_to_running_mean(decay):
    torch.manual_seed(0)
    K, D = 8, 3
    vq = VectorQuantizer(num_codes=K, code_dim=D, decay=decay, dead_code_threshold=0, eps=1e-9).train()
    old_sum, old_size = vq.embed_sum.clone(), vq.cluster_size.clone()
    z = torch.randn(64, D)
    ids = nearest_codes(z, vq.embed)
    vq(z.T.reshape(1, D, 64))  # (B=1, D, S=64): the same 64 vectors
    counts = torch.bincount(ids, minlength=K).float()
    sums = torch.zeros(K, D).index_add_(0, ids, z)
    want_size = decay * old_size + (1 - decay) * counts
    want_sum = decay * old_sum + (1 - decay) * sums
    assert torch.allclose(vq.cluster_size, want_size, atol=1e-6)
    assert torch.allclose(vq.embed_sum, want_sum, atol=1e-6)
    used = counts > 0
    assert torch.allclose(vq.embed[used], (want_sum / want_size[:, None])[used], atol=1e-5)
    if decay == 0.0:  # no history: each used code is exactly the mean of its vectors
        means = sums[used] / counts[used, None]
        assert torch.allclose(vq.embed[used], means, atol=1e-5)
    assert not vq.embed.requires_grad


def test_ema_codebook_gets_no_gradient_but_learned_codebook_does():
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    ema = VectorQuantizer(16, 4, codebook="ema")
    out = ema(z)
    (out.loss + out.z_q.sum()).backward()
    assert isinstance(ema.embed, torch.Tensor) and not isinstance(ema.embed, torch.nn.Parameter)
    assert ema.embed.grad is None
    learned = VectorQuantizer(16, 4, codebook="learned", dead_code_threshold=0)
    learned(z).loss.backward()
    assert learned.embed.grad is not None and learned.embed.grad.abs().sum() > 0


def test_dead_code_is_reseeded_from_batch():
    torch.manual_seed(0)
    K, D = 8, 2
    vq = VectorQuantizer(num_codes=K, code_dim=D, decay=0.99, dead_code_threshold=0.1).train()
    vq.embed.copy_(torch.randn(K, D) * 100)  # all codes far from the data...
    vq.embed[0] = 0.0  # ...but code 0, which takes every vector
    vq.cluster_size.fill_(2.0)
    vq.cluster_size[5] = 0.01  # code 5 has (almost) stopped being used: below 0.1 of an even share
    vq.embed_sum.copy_(vq.embed * vq.cluster_size[:, None])
    z = torch.randn(1, D, 16)
    usage = 0.99 * vq.cluster_size + 0.01 * torch.bincount(torch.zeros(16, dtype=torch.long), minlength=K)
    even_share = usage.sum() / K  # code 0 takes all 16 vectors
    out = vq(z)
    batch = z[0].T  # (16, 2)
    assert int(out.num_dead) == 1
    assert torch.cdist(vq.embed[5:6], batch).min() < 1e-5  # code 5 now equals a vector of the batch
    assert torch.isclose(vq.cluster_size[5], even_share)  # and gets an even share of usage to start from
    others = [k for k in range(1, K) if k != 5]
    assert torch.cdist(vq.embed[others], batch).min() > 10  # codes above the threshold were left alone


def test_unused_codes_stay_finite_without_restarts():
    vq = VectorQuantizer(num_codes=64, code_dim=4, dead_code_threshold=0.0).train()
    z = torch.randn(1, 4, 8)
    for _ in range(300):
        vq(z)
    assert torch.isfinite(vq.embed).all()
    assert torch.isfinite(vq.embed_sum).all()


def test_nonfinite_batch_leaves_codebook_untouched():
    vq = VectorQuantizer(num_codes=16, code_dim=4).train()
    vq(torch.randn(2, 4, 4, 4))
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    z = torch.randn(2, 4, 4, 4)
    z[0, 0, 0, 0] = float("nan")
    vq(z)
    for k, v in vq.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("l2", [False, True])
def test_lookup_under_bf16_autocast_is_fp32_and_matches_fp64(l2):
    torch.manual_seed(0)
    K, D, N = 1024, 8, 4096
    vq = VectorQuantizer(num_codes=K, code_dim=D, l2_normalize=l2).eval()
    z = torch.randn(N, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z.T.reshape(1, D, N))
    codebook = vq.codebook().double()
    zz = F.normalize(z.double(), dim=1) if l2 else z.double()
    want = fp64_argmin(zz, codebook)
    got = out.ids.reshape(-1)
    d = torch.cdist(zz, codebook)
    gap = d.gather(1, got[:, None]) - d.gather(1, want[:, None])
    assert out.z_q.dtype == torch.float32
    assert (got == want).float().mean() >= 0.999
    assert gap.max() < 1e-5  # where fp32 picks another code it is a tie to fp32 precision


def test_chunked_search_equals_one_block():
    z, codebook = torch.randn(1000, 8), torch.randn(300, 8)
    assert torch.equal(nearest_codes(z, codebook), nearest_codes(z, codebook, max_distance_bytes=4 * 300 * 7))


def test_indices_to_codes_equals_quantized_output():
    vq = VectorQuantizer(64, 8, l2_normalize=True).eval()
    out = vq(torch.randn(2, 8, 4, 4))
    assert torch.allclose(vq.indices_to_codes(out.ids), out.z_q, atol=1e-6)


def test_kmeans_init_converges_to_cluster_means():
    torch.manual_seed(0)
    centers = torch.randn(16, 2) * 10
    points = centers.repeat(32, 1) + 0.1 * torch.randn(512, 2)  # (512, 2)
    vq = VectorQuantizer(16, 2, kmeans_init=True, dead_code_threshold=0).train()
    vq.kmeans_iters = 30
    vq(points.T.reshape(1, 2, 512))
    assert bool(vq.initialized)
    # a Lloyd fixed point: every code is the mean of the vectors nearest to it
    ids = nearest_codes(points, vq.embed)
    for k in ids.unique():
        assert torch.allclose(vq.embed[k], points[ids == k].mean(dim=0), atol=1e-3)
    error = torch.cdist(points, vq.embed).min(dim=1).values.pow(2).mean()
    assert error < 0.05 * points.var(dim=0).sum()  # far below the spread of the data


def test_statistics():
    vq = VectorQuantizer(8, 2, dead_code_threshold=0).train()
    vq.embed.copy_(torch.eye(8, 2) * 10)
    z = vq.embed[:2].T.reshape(1, 2, 2).repeat(1, 1, 8)  # codes 0 and 1, 8 times each
    out = vq(z)
    assert out.usage == pytest.approx(2 / 8)
    assert out.perplexity == pytest.approx(2.0, rel=1e-4)
    stats = vq.epoch_stats()
    assert stats["usage"] == pytest.approx(2 / 8)
    vq.reset_epoch_stats()
    assert vq.epoch_stats()["usage"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1234 + rank)  # different data and different RNG on each rank
    vq = VectorQuantizer(128, 8, l2_normalize=True, kmeans_init=True, dead_code_threshold=1.0).train()
    torch.manual_seed(7)  # ...but the same initial codebook, as DDP would broadcast
    vq.embed.copy_(F.normalize(torch.randn(128, 8), dim=1))
    torch.manual_seed(1234 + rank)
    for _ in range(20):
        vq(torch.randn(4, 8, 6, 6) + rank)
    torch.save({k: v.clone() for k, v in vq.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_process_ddp_keeps_codebooks_bit_identical(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    s0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert set(s0) == set(s1)
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert bool(s0["initialized"])
