"""Token store parts outside a Trainer run: sources, resolution policy, planning, unit writes, readers, packing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vqtok.errors import ConfigError, FileFormatError, InputError
from vqtok.pretokenize.plan import Unit, lock_store, merge, open_store, plan_run, run_units
from vqtok.pretokenize.resolution import Resolution
from vqtok.pretokenize.sources import expand_sources
from vqtok.pretokenize.unit_writer import UnitWriter
from vqtok.store import PackedTokens, StoreMeta, TokenDataset, TokenStore

META = StoreMeta(
    model="m", model_fingerprint="f" * 16, config_hash="c" * 16, num_codes=300, ids_dtype="uint16", video=False
)


def test_sources_from_folders_globs_and_lists(tmp_path, monkeypatch):
    for name in ["a/1.png", "a/b/2.jpg", "a/.hidden/3.png", "a/.4.png", "c/5.mp4", "c/6.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# inputs\nc/5.mp4\n\n  a/1.png  \nmissing.png\n")
    monkeypatch.chdir(tmp_path)
    assert expand_sources(["a"]) == [str(tmp_path / "a/1.png"), str(tmp_path / "a/b/2.jpg")]
    assert expand_sources(["c/*.mp4", "a/**/*.jpg"]) == [str(tmp_path / "a/b/2.jpg"), str(tmp_path / "c/5.mp4")]
    listed = expand_sources([tmp_path / "list.txt", "a/1.png"])  # duplicates collapse; missing files are kept
    assert listed == [str(tmp_path / p) for p in ["a/1.png", "c/5.mp4", "missing.png"]]
    assert expand_sources(["a", "c"], exclude="a/b") == [str(tmp_path / p) for p in ["a/1.png", "c/5.mp4", "c/6.txt"]]
    with pytest.raises(InputError, match="does not exist"):
        expand_sources(["nowhere"])
    with pytest.raises(InputError, match="matches no files"):
        expand_sources(["a/*.webp"])


def test_resolution_policy_sizes():
    assert Resolution().output_size(37, 91) == (37, 91)
    assert Resolution(resize=64).output_size(100, 200) == (64, 128)
    assert Resolution(resize=64, crop=(64, 64)).output_size(300, 100) == (64, 64)
    x = torch.rand(1, 3, 100, 200) * 2 - 1
    y = Resolution(resize=50, crop=(40, 60)).apply(x)
    assert y.shape == (1, 3, 40, 60) and y.min() >= -1 and y.max() <= 1
    assert torch.equal(Resolution(crop=(2, 4)).apply(x), x[..., 49:51, 98:102])  # a crop alone is exact
    with pytest.raises(InputError, match="smaller than the crop 64x64"):
        Resolution(crop=(64, 64)).output_size(63, 200)
    frames = torch.randint(0, 256, (5, 3, 30, 40), dtype=torch.uint8)
    assert Resolution(resize=15).apply_uint8(frames).dtype == torch.uint8
    with pytest.raises(InputError):
        Resolution(resize=0)


def _write_unit(store: Path, unit: Unit, grids: list[tuple[int, ...]], shard_bytes: int = 1 << 20) -> None:
    writer = UnitWriter(store, unit.name, len(unit.sources), META, shard_bytes)
    for k, (source, grid) in enumerate(zip(unit.sources, grids)):
        n = int(torch.tensor(grid).prod())
        ids = (torch.arange(n) * 7 + k).remainder(META.num_codes).view(grid)
        size = [g * 8 for g in grid]
        writer.add({"source": source, "sha256": "0" * 64, "size": size, "input_size": size, "fps": None, "ids": ids})
    writer.commit()


def _make_store(tmp_path: Path, grids: list[tuple[int, ...]], unit_items: int = 2) -> Path:
    store = tmp_path / "store"
    open_store(store, META)
    sources = [str(tmp_path / f"in{i}.png") for i in range(len(grids))]
    plan = plan_run(store, sources, unit_items, retry_failed=False)
    for unit in plan.units:
        _write_unit(store, unit, [grids[sources.index(s)] for s in unit.sources])
    merge(store)
    return store


def test_store_reads_what_units_wrote(tmp_path):
    grids = [(2, 3), (4, 4), (1, 5), (3, 3), (2, 2)]
    store = TokenStore(_make_store(tmp_path, grids))
    assert len(store) == 5 and [tuple(r.grid) for r in store.records] == grids
    assert store.meta.dtype == torch.uint16
    for i, grid in enumerate(grids):
        n = int(torch.tensor(grid).prod())
        expected = (torch.arange(n) * 7 + i % 2).remainder(300).view(grid)  # k: position within its unit
        assert torch.equal(store[i].ids, expected) and store[i].ids.dtype == torch.int64
    assert torch.equal(store[-1].ids, store[4].ids)
    assert str(tmp_path / "in3.png") in store and store.index_of(tmp_path / "in3.png") == 3
    with pytest.raises(KeyError, match="not in the store"):
        store.index_of("elsewhere.png")
    with pytest.raises(IndexError):
        store[5]
    assert len(TokenDataset(store)) == 5


def test_units_split_into_shards_by_bytes(tmp_path):
    store = tmp_path / "store"
    open_store(store, META)
    unit = Unit("u0000000", [str(tmp_path / f"{i}.png") for i in range(5)])
    _write_unit(store, unit, [(4, 4)] * 5, shard_bytes=64)  # 32 bytes per grid: a new shard every 2 grids
    merge(store)
    assert sorted(p.name for p in (store / "shards").iterdir()) == [f"u0000000-00{k}.safetensors" for k in range(3)]
    assert load_file(str(store / "shards/u0000000-002.safetensors"))["ids"].shape == (16,)
    reader = TokenStore(store)
    assert [(r.shard[-15:], r.offset) for r in reader.records][:3] == [
        ("000.safetensors", 0),
        ("000.safetensors", 16),
        ("001.safetensors", 0),
    ]
    assert torch.equal(reader[4].ids, (torch.arange(16) * 7 + 4).remainder(300).view(4, 4))


def test_packed_sequences_follow_the_documented_layout(tmp_path):
    grids = [(2, 3), (1, 4), (3, 3)]
    store = TokenStore(_make_store(tmp_path, grids))
    stream = torch.cat([torch.cat([store[i].ids.flatten(), torch.tensor([300])]) for i in range(3)])  # 7+5+10 ids
    packed = PackedTokens(store, seq_len=5)
    assert (packed.sep_id, packed.pad_id, packed.vocab_size) == (300, 301, 302)
    assert len(packed) == 4  # 22 ids -> 4 full sequences, the last 2 ids dropped
    assert torch.equal(torch.cat([packed[j] for j in range(4)]), stream[:20])
    padded = PackedTokens(store, seq_len=5, drop_last=False)
    assert len(padded) == 5 and torch.equal(padded[4], torch.tensor([*stream[20:].tolist(), 301, 301, 301]))
    assert torch.equal(PackedTokens(store, seq_len=100, drop_last=False)[0][:22], stream)
    with pytest.raises(InputError):
        PackedTokens(store, seq_len=0)


def test_planning_keeps_unfinished_units_and_skips_stored_inputs(tmp_path):
    store = tmp_path / "store"
    open_store(store, META)
    sources = [f"/data/{i}.png" for i in range(5)]
    first = plan_run(store, sources, 2, retry_failed=False)
    assert [u.sources for u in first.units] == [sources[0:2], sources[2:4], sources[4:]]
    _write_unit(store, first.units[1], [(1, 1), (1, 1)])  # only the middle unit finished before a "crash"

    more = [*sources, "/data/5.png"]
    second = plan_run(store, more, 2, retry_failed=False)  # the rerun, with one input added meanwhile
    assert [u.name for u in second.units] == ["u0000000", "u0000002", "u0000003"]  # same units, then the new one
    assert second.units[2].sources == ["/data/5.png"]
    assert (second.already_stored, second.resumed_units) == (2, 2)
    assert [u.name for u in run_units(store)] == ["u0000000", "u0000002", "u0000003"]
    with pytest.raises(FileFormatError, match="unfinished"):
        merge(store)  # never merges (or deletes shards) while planned units are missing

    (store / "plan.jsonl").unlink()  # lost: new units must not reuse the name of a finished one
    assert [u.name for u in plan_run(store, ["/data/9.png"], 2, retry_failed=False).units] == ["u0000002"]


def test_a_store_is_locked_while_a_job_writes_it(tmp_path):
    open_store(tmp_path / "s", META)
    fd = lock_store(tmp_path / "s")
    try:
        with pytest.raises(ConfigError, match="being written by another vqtok tokenize job"):
            lock_store(tmp_path / "s")
    finally:
        os.close(fd)
    os.close(lock_store(tmp_path / "s"))  # free again


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(FileFormatError, match="not a vqtok token store"):
        TokenStore(tmp_path)
    open_store(tmp_path / "s", META)
    with pytest.raises(FileFormatError, match="rerun the same command"):
        TokenStore(tmp_path / "s")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a token store"):
        open_store(tmp_path / "other", META)


def test_file_names_that_are_not_utf8_round_trip(tmp_path):
    store = tmp_path / "store"
    open_store(store, META)
    name = os.fsdecode(b"/data/caf\xe9.png")  # a Latin-1 name as os.walk returns it (surrogate escape)
    (unit,) = plan_run(store, [name], 2, retry_failed=False).units
    _write_unit(store, unit, [(2, 2)])
    merge(store)
    assert TokenStore(store).records[0].source == name and os.fsencode(name) == b"/data/caf\xe9.png"
