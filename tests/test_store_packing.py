"""PackedItems: whole items best-fit packed into fixed-length sequences, with per-item positions and document ids."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from vqtok.errors import InputError
from vqtok.pretokenize.plan import merge, open_store, plan_run
from vqtok.pretokenize.unit_writer import UnitWriter
from vqtok.store import PackedItems, StoreMeta, TokenStore, pack_best_fit

# images (h, w) and videos (t, h, w) of the sizes a mixed data set gives: 9 to 108 ids each
MIXED_GRIDS = [(4, 4), (4, 6), (6, 8), (8, 8), (5, 7), (3, 3), (2, 4, 4), (3, 6, 6), (1, 8, 8), (2, 5, 5), (7, 9)]
CLASSES = ["disc", "square", "stripes"]


def make_store(
    folder: Path, grids: list[tuple[int, ...]], labels: list[str] | None = None, num_codes: int = 300
) -> TokenStore:
    """A store whose item k has ``grids[k]`` and ids (arange * 7 + k) % num_codes, as vqtok tokenize writes it."""
    meta = StoreMeta(
        model="m",
        model_fingerprint="f" * 16,
        config_hash="c" * 16,
        num_codes=num_codes,
        ids_dtype="uint16",
        video=True,
        preprocess={"labels": "folder"} if labels else {},
    )
    store = folder / "store"
    open_store(store, meta)
    sources = [str(folder / f"in{k:04d}.png") for k in range(len(grids))]
    for unit in plan_run(store, sources, 64, retry_failed=False).units:
        writer = UnitWriter(store, unit.name, len(unit.sources), meta, 1 << 20)
        for source in unit.sources:
            k = sources.index(source)
            ids = (torch.arange(math.prod(grids[k])) * 7 + k).remainder(num_codes).view(grids[k])
            size = [g * 8 for g in grids[k]]
            result = {"source": source, "sha256": "0" * 64, "size": size, "input_size": size, "fps": None, "ids": ids}
            writer.add({**result, "label": labels[k]} if labels else result)
        writer.commit()
    merge(store)
    return TokenStore(store)


def test_best_fit_places_every_item_once_within_capacity():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = pack_best_fit(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert len(bins) <= math.ceil(sum(lengths) / 128) * 1.1  # close to the lower bound
    assert pack_best_fit([5, 3, 5], 8) == [[0, 1], [2]]  # longest first, ties in index order
    assert pack_best_fit([5, 3, 5], 8, order=[2, 1, 0]) == [[2, 1], [0]]


def test_mixed_store_packs_whole_items_at_98_percent_fill(tmp_path):
    rng = random.Random(0)
    grids = [rng.choice(MIXED_GRIDS) for _ in range(400)]
    labels = [rng.choice(CLASSES) for _ in grids]
    store = make_store(tmp_path, grids, labels)
    packed = PackedItems(store, seq_len=256)
    # measured: 0.984 (400 items of 9-108 ids in 72 sequences, where 71 is the lower bound)
    assert packed.fill_fraction >= 0.98, packed.fill_fraction
    assert packed.real_tokens == sum(math.prod(g) for g in grids)

    seen = []
    for j in range(len(packed)):
        seq = packed[j]
        assert {k: v.shape for k, v in seq.items()} == {
            "ids": (256,),
            "doc": (256,),
            "pos": (256,),
            "coords": (256, 3),
            "label": (256,),
        }
        start = 0
        for d, i in enumerate(packed.sequences[j]):  # each item whole, in place, positions restarting at 0
            item = store[i]
            n, grid = item.ids.numel(), tuple(item.ids.shape)
            span = slice(start, start + n)
            assert torch.equal(seq["ids"][span], item.ids.flatten())
            assert (seq["doc"][span] == d).all() and torch.equal(seq["pos"][span], torch.arange(n))
            assert (seq["label"][span] == CLASSES.index(labels[i])).all() and item.label == seq["label"][start]
            t, y, x = seq["coords"][start + n - 1].tolist()  # the last id sits at the grid's far corner
            assert (t, y, x) == ((0,) if len(grid) == 2 else (grid[0] - 1,)) + (grid[-2] - 1, grid[-1] - 1)
            start += n
            seen.append(i)
        pad = slice(start, 256)  # the rest is padding, in no item
        assert (seq["doc"][pad] == -1).all() and (seq["ids"][pad] == 300).all() and (seq["label"][pad] == -1).all()
    assert sorted(seen) == list(range(400))  # every item exactly once

    batch = next(iter(torch.utils.data.DataLoader(packed, batch_size=4)))  # the default collate stacks them
    assert batch["ids"].shape == (4, 256) and batch["coords"].shape == (4, 256, 3)
    reshuffled = PackedItems(store, seq_len=256, seed=1)
    assert reshuffled.sequences != packed.sequences and reshuffled.fill_fraction >= 0.98


def test_unlabelled_items_get_label_minus_one_and_bad_lengths_are_refused(tmp_path):
    store = make_store(tmp_path, [(4, 4), (2, 3, 3)])
    seq = PackedItems(store, seq_len=40)[0]
    assert (seq["label"] == -1).all() and seq["doc"].tolist() == [0] * 18 + [1] * 16 + [-1] * 6  # longest first
    with pytest.raises(InputError, match="at least the longest item's 18"):
        PackedItems(store, seq_len=17)
    with pytest.raises(InputError, match="positive int"):
        PackedItems(store, seq_len=0)
