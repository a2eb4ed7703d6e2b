"""The FlashAttention variable-length path of the priors, checked on a CPU: the segments derived from packed layouts,
and a plain-torch statement of flash_attn_varlen_func's semantics against the dense masked SDPA the priors use.

flash-attn itself needs CUDA; the one test that calls it is marked ``gpu`` and skips without it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from store_files import write_images

import vqtok.prior.model as prior_model
from vqtok.cli.main import main
from vqtok.prior import PriorConfig, block_causal_mask, build_prior
from vqtok.prior.masked import same_item_mask
from vqtok.prior.varlen import (
    flash_varlen_kernel,
    packed_cu_seqlens,
    packed_segments,
    reference_varlen_attention,
)
from vqtok.store import PackedItems


@pytest.mark.parametrize(
    ("doc", "expected", "longest"),
    [
        ([[0, 0, 0, 1, 1, -1]], [0, 3, 5, 6], 3),  # two items, then padding (a segment of its own)
        ([[4, 4, 4, 4]], [0, 4], 4),  # one item filling the row
        ([[0, 0, 1, 1], [0, 0, 0, -1]], [0, 2, 4, 7, 8], 3),  # every row starts a segment, even with equal doc
        ([[0, 1, 2], [0, 0, 0]], [0, 1, 2, 3, 6], 3),  # items of one position
        ([[7, 7], [7, 7]], [0, 2, 4], 2),  # the same doc value in two rows: two segments
    ],
)
def test_cu_seqlens_of_known_packings(doc, expected, longest):
    cu, max_seqlen = packed_cu_seqlens(torch.tensor(doc))
    assert cu.dtype == torch.int32
    assert cu.tolist() == expected
    assert max_seqlen == longest


@pytest.fixture(scope="module")
def packed_batch(tmp_path_factory) -> dict[str, torch.Tensor]:
    """A real packed batch: a store of mixed grid sizes (4x4 to 8x8 ids) packed by PackedItems into rows of 80."""
    root = tmp_path_factory.mktemp("varlen")
    write_images(root / "images", 6, [(32, 32), (48, 48), (64, 64), (48, 32)])
    args = ["tokenize", str(root / "images"), "--model", "tiny", "--out", str(root / "store")]
    assert main([*args, "--no-progress", "--workers", "0"]) == 0
    packed = PackedItems(str(root / "store"), seq_len=80)
    batch = torch.utils.data.default_collate([packed[i] for i in range(len(packed))])
    assert (batch["doc"] < 0).any() and len(packed) >= 2, "the batch should hold several rows and some padding"
    return batch


@pytest.mark.parametrize("causal", [True, False])
def test_reference_varlen_attention_equals_the_dense_masked_sdpa(packed_batch, causal):
    doc = packed_batch["doc"]  # (B, L)
    B, L = doc.shape
    H, hd = 3, 16
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, hd, generator=g) for _ in range(3))  # (B, H, L, hd)
    mask = block_causal_mask(doc) if causal else same_item_mask(doc)  # (B, 1, L, L)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    cu, n = packed_cu_seqlens(doc)
    flat = [t.transpose(1, 2).reshape(B * L, H, hd) for t in (q, k, v)]  # (B * L, H, hd), flash-attn's layout
    varlen = reference_varlen_attention(*flat, cu, cu, n, n, causal=causal).view(B, L, H, hd).transpose(1, 2)
    torch.testing.assert_close(varlen, dense, rtol=0, atol=1e-5)


def test_reference_causal_alignment_is_bottom_right_for_unequal_lengths():
    """flash-attn aligns the causal mask to the bottom right: 2 queries over 5 keys see keys 0-3 and 0-4."""
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 1, 8, generator=g), torch.randn(5, 1, 8, generator=g), torch.randn(5, 1, 8, generator=g)
    cu_q, cu_k = torch.tensor([0, 2], dtype=torch.int32), torch.tensor([0, 5], dtype=torch.int32)
    out = reference_varlen_attention(q, k, v, cu_q, cu_k, 2, 5, causal=True)
    qh, kh, vh = (t.transpose(0, 1) for t in (q, k, v))  # (heads, len, head_dim)
    rows = [F.scaled_dot_product_attention(qh[:, i : i + 1], kh[:, : 4 + i], vh[:, : 4 + i]) for i in range(2)]
    expected = torch.cat(rows, dim=1).transpose(0, 1)  # (2, 1, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("objective", ["ar", "maskgit"])
def test_priors_through_the_varlen_route_give_the_logits_of_the_dense_route(packed_batch, monkeypatch, objective):
    """The whole prior with the varlen plumbing (segments, the (B * L, H, hd) layout and back) and the reference
    kernel in place of flash-attn's computes what the dense-mask path computes, in fp32 to 1e-5."""
    batch = packed_batch
    torch.manual_seed(0)
    config = PriorConfig(num_codes=512, num_classes=0, dim=48, depth=2, heads=4, objective=objective)
    prior = build_prior(config).eval()
    inputs = (batch["ids"], batch["doc"], batch["coords"], batch["label"])
    with torch.no_grad():
        dense = prior(*inputs)
        calls = []

        def counting_reference(*args, **kwargs):
            calls.append(kwargs["causal"])
            return reference_varlen_attention(*args, **kwargs)

        monkeypatch.setattr(prior_model, "flash_varlen_kernel", lambda x, head_dim: counting_reference)
        varlen = prior(*inputs)
    assert calls == [objective == "ar"] * config.depth, "every block should attend through the segments"
    real = batch["doc"] >= 0
    torch.testing.assert_close(varlen[real], dense[real], rtol=0, atol=1e-5)


def test_flash_is_not_chosen_off_cuda_or_in_fp32():
    assert flash_varlen_kernel(torch.zeros(1, 1, 8), head_dim=32) is None  # CPU
    assert flash_varlen_kernel(torch.zeros(1, 1, 8, dtype=torch.bfloat16), head_dim=32) is None  # CPU, bf16


@pytest.mark.gpu
def test_flash_attn_varlen_matches_the_dense_path_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("flash_attn")
    doc = torch.tensor([[0] * 64 + [1] * 100 + [-1] * 92, [0] * 200 + [-1] * 56], device="cuda")
    B, L = doc.shape
    q, k, v = (torch.randn(B, 4, L, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    kernel = flash_varlen_kernel(q, head_dim=64)
    assert kernel is not None
    for causal, mask in ((True, block_causal_mask(doc)), (False, same_item_mask(doc))):
        dense = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        flash = packed_segments(doc, causal, kernel).attend(q, k, v, 0.0)
        torch.testing.assert_close(flash.float(), dense.float(), rtol=0, atol=2e-2)
