"""The autoregressive prior on packed token stores: per-item attention, training on a real store, sampling."""

from __future__ import annotations

import pytest
import torch
from store_files import write_images
from torch import Tensor

import vqtok
from vqtok.cli.main import main
from vqtok.errors import ConfigError, InputError
from vqtok.prior import ARPrior, MaskedPrior, PriorConfig, block_causal_mask, build_prior, sample
from vqtok.store import PackedItems, TokenStore
from vqtok.store.packing import grid_coords


def small_prior(num_codes: int = 50, num_classes: int = 3, seed: int = 0, **kw) -> ARPrior | MaskedPrior:
    torch.manual_seed(seed)
    return build_prior(PriorConfig(num_codes=num_codes, num_classes=num_classes, dim=48, depth=2, heads=4, **kw))


def packed_batch(items: list[tuple[Tensor, int]], seq_len: int, pad_id: int) -> dict[str, Tensor]:
    """One packed sequence (batch of 1) holding the given (grid ids, label) items back to back, then padding."""
    ids = torch.full((1, seq_len), pad_id)
    doc = torch.full((1, seq_len), -1)
    coords = torch.zeros(1, seq_len, 3, dtype=torch.int64)
    label = torch.full((1, seq_len), -1)
    start = 0
    for d, (grid, cls) in enumerate(items):
        n = grid.numel()
        ids[0, start : start + n] = grid.flatten()
        doc[0, start : start + n] = d
        coords[0, start : start + n] = grid_coords(tuple(grid.shape))
        label[0, start : start + n] = cls
        start += n
    return {"ids": ids, "doc": doc, "coords": coords, "label": label}


def test_block_causal_mask_keeps_attention_inside_each_item():
    doc = torch.tensor([[0, 0, 1, 1, 1, -1]])
    mask = block_causal_mask(doc)[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],  # item 1 starts afresh: nothing of item 0
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],  # padding sees itself only, so no row is empty
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_packed_items_compute_exactly_what_the_items_alone_do():
    prior = small_prior().eval()
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 50, (3, 4), generator=g)
    b = torch.randint(0, 50, (2, 2, 3), generator=g)  # a video grid beside an image grid
    c = torch.randint(0, 50, (2, 5), generator=g)
    batch = packed_batch([(a, 0), (b, 2), (c, -1)], seq_len=40, pad_id=50)
    logits = prior(batch["ids"], batch["doc"], batch["coords"], batch["label"])  # (1, 40, 50)

    # every item's logits equal those of the item run alone, so the packed loss is the mean of the items' losses
    start, token_losses = 0, []
    for grid, cls in [(a, 0), (b, 2), (c, -1)]:
        n = grid.numel()
        alone = packed_batch([(grid, cls)], seq_len=n, pad_id=50)
        alone_logits = prior(alone["ids"], alone["doc"], alone["coords"], alone["label"])[0]  # (n, 50)
        torch.testing.assert_close(logits[0, start : start + n], alone_logits, atol=1e-5, rtol=1e-5)
        token_losses.append(torch.nn.functional.cross_entropy(alone_logits, grid.flatten(), reduction="none"))
        start += n
    torch.testing.assert_close(prior.loss(batch), torch.cat(token_losses).mean(), atol=1e-5, rtol=1e-5)

    # changing item a's ids (and its class) leaves every other item's logits unchanged
    changed = packed_batch([((a + 7) % 50, 1), (b, 2), (c, -1)], seq_len=40, pad_id=50)
    new = prior(changed["ids"], changed["doc"], changed["coords"], changed["label"])
    assert not torch.allclose(new[0, :12], logits[0, :12])
    torch.testing.assert_close(new[0, 12:34], logits[0, 12:34], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> TokenStore:
    """A labelled store of real images tokenized by the shipped ``tiny`` tokenizer: 2 classes, 2 grid sizes."""
    root = tmp_path_factory.mktemp("prior")
    write_images(root / "data" / "blobs", 12, [(32, 32), (24, 40)], seed=1)
    write_images(root / "data" / "more", 12, [(32, 32), (40, 24)], seed=2)
    out = root / "store"
    args = ["tokenize", str(root / "data"), "--model", "tiny", "--out", str(out), "--labels", "folder"]
    assert main([*args, "--no-progress", "--workers", "0"]) == 0
    return TokenStore(out)


def test_training_on_a_store_lowers_the_loss_and_samples_decode(tiny_store):
    data = PackedItems(tiny_store, seq_len=64, seed=0)
    assert tiny_store.classes == ["blobs", "more"] and data.fill_fraction > 0.9
    prior = small_prior(num_codes=tiny_store.meta.num_codes, num_classes=2, label_dropout=0.1)
    batch = torch.utils.data.default_collate([data[j] for j in range(len(data))])  # the whole store: 6 sequences
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    prior.train()
    losses = []
    for _ in range(40):
        loss = prior.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 5.5  # about ln(512) = 6.24 at the start
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses  # measured: 6.3 -> about 2

    g = torch.Generator().manual_seed(0)
    ids = sample(prior, (4, 4), n=4, labels=[0, 0, 1, 1], cfg_scale=2.0, top_k=50, generator=g)
    assert ids.shape == (4, 4, 4) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < tiny_store.meta.num_codes
    tok = vqtok.load("tiny")
    assert tok.fingerprint in (tiny_store.meta.model_fingerprint, *tok.fingerprints)
    images = tok.decode(ids)  # the store's tokenizer decodes the prior's samples
    assert images.shape == (4, 3, 32, 32) and torch.isfinite(images).all()
    assert float(images.min()) >= -1 and float(images.max()) <= 1


def test_masked_prior_attends_within_items_trains_and_decodes(tiny_store):
    prior = small_prior(objective="maskgit").eval()
    assert isinstance(prior, MaskedPrior) and isinstance(small_prior(), ARPrior)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, 50, (3, 4), generator=g), torch.randint(0, 50, (2, 2, 3), generator=g)
    batch = packed_batch([(a, 0), (b, 2)], seq_len=30, pad_id=50)
    batch["ids"][0, [1, 5, 14]] = 50  # some masked positions in both items
    logits = prior(batch["ids"], batch["doc"], batch["coords"], batch["label"])
    changed = dict(batch, ids=batch["ids"].clone())
    changed["ids"][0, [0, 11]] = 50 - 1 - changed["ids"][0, [0, 11]]  # item a only; bidirectional: a sees it all
    new = prior(changed["ids"], changed["doc"], changed["coords"], changed["label"])
    assert not torch.allclose(new[0, :12], logits[0, :12])
    torch.testing.assert_close(new[0, 12:24], logits[0, 12:24], atol=1e-6, rtol=0)

    data = PackedItems(tiny_store, seq_len=64, seed=0)
    prior = small_prior(num_codes=tiny_store.meta.num_codes, num_classes=2, objective="maskgit").train()
    batch = torch.utils.data.default_collate([data[j] for j in range(len(data))])
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = prior.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5, losses  # measured: 6.2 -> about 3.6 (noisy: masking)

    for steps in (1, 4):
        g = torch.Generator().manual_seed(0)
        ids = sample(prior, (4, 4), n=4, labels=[0, 0, 1, 1], cfg_scale=2.0, steps=steps, generator=g)
        assert ids.shape == (4, 4, 4) and int(ids.min()) >= 0 and int(ids.max()) < tiny_store.meta.num_codes
    assert torch.isfinite(vqtok.load("tiny").decode(ids)).all()


def test_sampling_with_and_without_the_cache_draws_the_same_grids():
    prior = small_prior()
    draws = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(3)
        draws.append(sample(prior, (2, 3, 3), n=2, labels=[0, 2], cfg_scale=1.5, generator=g, use_cache=use_cache))
    assert torch.equal(*draws) and draws[0].shape == (2, 2, 3, 3)
    g = torch.Generator().manual_seed(3)
    top1 = sample(prior, (3, 3), n=2, top_k=1, generator=g)  # greedy: top-k 1 and a tiny top-p agree
    assert torch.equal(top1, sample(prior, (3, 3), n=2, top_p=1e-6, generator=g))
    assert prior.training  # sampling leaves the mode as it found it


def test_bad_configs_and_sampling_arguments_are_refused():
    with pytest.raises(ConfigError, match="heads"):
        PriorConfig(num_codes=10, dim=30, heads=4)
    with pytest.raises(ConfigError, match="objective"):
        PriorConfig(num_codes=10, objective="diffusion")
    with pytest.raises(ConfigError, match="unknown prior config fields"):
        PriorConfig.from_dict({"num_codes": 10, "width": 3})
    assert PriorConfig.from_dict(PriorConfig(num_codes=10).to_dict()) == PriorConfig(num_codes=10)
    prior = small_prior()
    with pytest.raises(InputError, match="class indices"):
        sample(prior, (2, 2), n=1, labels=[3])
    with pytest.raises(InputError, match="grid"):
        sample(prior, (2,), n=1)
    with pytest.raises(InputError, match="temperature"):
        sample(prior, (2, 2), temperature=0)


def test_gradient_checkpointing_gives_the_same_gradients_and_bf16_autocast_trains():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randint(0, 50, (3, 4), generator=g), torch.randint(0, 50, (2, 5), generator=g)
    batch = packed_batch([(a, 1), (b, 0)], seq_len=24, pad_id=50)
    grads = []
    for checkpointing in (False, True):
        prior = small_prior(label_dropout=0.0, gradient_checkpointing=checkpointing).train()
        prior.loss(batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in prior.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = small_prior().train().loss(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
