"""`vqtok tokenize` / `vqtok detokenize` end to end: real files, real Lightning runs, kill -9, 2-process DDP."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from store_files import REPO, export_model, read_jsonl, run_tokenize, tokenize_command, write_images
from torch.utils.data import DataLoader
from video_files import random_frames, write_test_video

import vqtok
from vqtok.cli.main import main
from vqtok.export import resolve_export
from vqtok.pretokenize import Resolution
from vqtok.store import TokenDataset, TokenStore


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "image": export_model(folder, "tiny", seed=0),
        "other": export_model(folder, "tiny", seed=1),
        "video": export_model(folder, "video_tiny", seed=0),
    }


def tokenize(*args: str) -> int:
    return main(["tokenize", *map(str, args), "--no-progress"])


def test_store_round_trip_equals_the_public_api(models, tmp_path, capsys, monkeypatch):
    paths = write_images(tmp_path / "data", 11, [(40, 56), (32, 32), (27, 45)])
    store_dir = tmp_path / "store"
    assert tokenize(tmp_path / "data", "--model", models["image"], "--out", store_dir, "--shard-items", "4") == 0
    assert "11 done, 0 skipped as already done, 0 failed" in capsys.readouterr().out

    tok = vqtok.load(models["image"])
    store = TokenStore(store_dir)
    assert len(store) == 11 and store.meta.num_codes == 512 and store.meta.ids_dtype == "uint16"
    assert [item.source for item in store] == sorted(str(p) for p in paths)  # manifest order: sorted by source
    for path in paths:
        item = store[str(path)]
        assert torch.equal(item.ids, tok.encode(path)[0]), path
        assert item.size == item.input_size == Image.open(path).size[::-1]
    records = read_jsonl(store_dir / "manifest.jsonl")
    assert records[0]["sha256"] == hashlib.sha256(Path(records[0]["source"]).read_bytes()).hexdigest()
    assert len({(r["shard"], r["offset"]) for r in records}) == 11  # every item has its own place

    # by relative path, and through a DataLoader with worker processes
    monkeypatch.chdir(tmp_path)
    assert store.index_of(os.path.relpath(paths[3])) == store.index_of(paths[3])
    loader = DataLoader(TokenDataset(store_dir), batch_size=None, num_workers=2)
    assert all(torch.equal(ids, store[i].ids) for i, ids in enumerate(loader))

    out = tmp_path / "decoded"
    assert main(["detokenize", str(store_dir), "--model", str(models["image"]), "--out", str(out)]) == 0
    assert len(list(out.iterdir())) == 11
    for path in paths[:3]:
        expected = vqtok.inputs.to_uint8(tok.decode(tok.encode(path), size=store[str(path)].size)[0])
        assert np.array_equal(np.asarray(Image.open(out / f"{path.stem}.png")), expected)


def test_bad_inputs_are_recorded_and_everything_else_is_stored(models, tmp_path, capsys):
    data = tmp_path / "data"
    good = write_images(data, 5, [(32, 32)])
    jpeg = good[0].read_bytes()
    bad = {
        data / "truncated.jpg": jpeg[: len(jpeg) // 2],
        data / "corrupt.png": b"\x89PNG\r\n\x1a\n" + os.urandom(300),
        data / "zero.jpg": b"",
        data / "text.jpg": b"not an image at all\n",
        data / "notes.txt": b"a file that is not an image\n",
    }
    for path, content in bad.items():
        path.write_bytes(content)
    write_test_video(data / "clip.mp4", random_frames(3))  # a video, for an image tokenizer
    listing = tmp_path / "list.txt"
    listing.write_text(f"{data / 'missing.png'}\n# a comment\n{good[1]}\n")

    store_dir = tmp_path / "store"
    assert tokenize(data, listing, "--model", models["image"], "--out", store_dir) == 0
    out = capsys.readouterr().out
    assert "5 done, 0 skipped as already done, 7 failed" in out and "errors.jsonl" in out

    errors = {Path(e["source"]).name: e["error"] for e in read_jsonl(store_dir / "errors.jsonl")}
    assert set(errors) == {p.name for p in bad} | {"clip.mp4", "missing.png"}
    assert "truncated or corrupt" in errors["truncated.jpg"]
    assert "empty" in errors["zero.jpg"]
    assert "not an image format" in errors["text.jpg"] and "not an image format" in errors["notes.txt"]
    assert "is a video, and the model is an image tokenizer" in errors["clip.mp4"]
    assert "does not exist" in errors["missing.png"]
    assert sorted(TokenStore(store_dir).records, key=lambda r: r.source) == TokenStore(store_dir).records
    assert {Path(r.source).name for r in TokenStore(store_dir).records} == {p.name for p in good}

    # a rerun does not retry them unless asked to; --retry-failed does, and they fail again
    assert tokenize(data, listing, "--model", models["image"], "--out", store_dir) == 0
    assert "0 done, 5 skipped as already done, 0 failed" in capsys.readouterr().out
    (data / "zero.jpg").write_bytes(jpeg)  # fixed meanwhile
    assert tokenize(data, listing, "--model", models["image"], "--out", store_dir, "--retry-failed") == 0
    assert "1 done, 5 skipped as already done, 6 failed" in capsys.readouterr().out
    assert "zero.jpg" not in {Path(e["source"]).name for e in read_jsonl(store_dir / "errors.jsonl")}
    assert len(TokenStore(store_dir)) == 6


def test_a_store_is_refused_to_another_model_or_preprocessing(models, tmp_path, capsys):
    write_images(tmp_path / "data", 3, [(32, 32)])
    store_dir = tmp_path / "store"
    assert tokenize(tmp_path / "data", "--model", models["image"], "--out", store_dir) == 0
    before = (store_dir / "manifest.jsonl").read_bytes()
    write_images(tmp_path / "more", 2, [(32, 32)], seed=5)
    capsys.readouterr()

    assert tokenize(tmp_path / "more", "--model", models["other"], "--out", store_dir) == 2
    err = capsys.readouterr().err
    assert "holds ids from model 'tiny'" in err and "cannot share a store" in err
    assert tokenize(tmp_path / "more", "--model", models["image"], "--out", store_dir, "--resize", "64") == 2
    assert "was made with preprocessing" in capsys.readouterr().err
    assert (store_dir / "manifest.jsonl").read_bytes() == before and len(list((store_dir / "parts").iterdir())) == 1

    assert main(["detokenize", str(store_dir), "--model", str(models["other"]), "--out", str(tmp_path / "o")]) == 2
    assert "was made by model" in capsys.readouterr().err

    # the same model may add to it: only the new files are tokenized
    assert tokenize(tmp_path / "more", tmp_path / "data", "--model", models["image"], "--out", store_dir) == 0
    assert "2 done, 3 skipped as already done, 0 failed" in capsys.readouterr().out
    assert len(TokenStore(store_dir)) == 5


def test_detokenize_without_model_uses_the_model_the_store_records(models, tmp_path, capsys):
    paths = write_images(tmp_path / "data", 2, [(32, 40)])
    store_dir = tmp_path / "store"
    assert tokenize(tmp_path / "data", "--model", "tiny", "--out", store_dir) == 0
    capsys.readouterr()
    assert main(["detokenize", str(store_dir), "--out", str(tmp_path / "recorded")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vqtok detokenize: using model 'tiny' ({resolve_export('tiny')}) recorded in {store_dir}"]
    assert main(["detokenize", str(store_dir), "--model", "tiny", "--out", str(tmp_path / "given")]) == 0
    for path in paths:
        name = f"{path.stem}.png"
        assert (tmp_path / "recorded" / name).read_bytes() == (tmp_path / "given" / name).read_bytes()

    # a store of a random-weight model named 'tiny': the shipped 'tiny' is another model
    other = tmp_path / "other"
    assert tokenize(tmp_path / "data", "--model", models["image"], "--out", other) == 0
    capsys.readouterr()
    assert main(["detokenize", str(other), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vqtok detokenize: error: {other} was made by model 'tiny' (")
    assert "is another model" in err[0] and err[0].endswith("pass --model with the export that made it")
    assert not (tmp_path / "o").exists()


def test_tokenize_max_pixels_fails_larger_inputs_and_a_retry_with_a_larger_limit_stores_them(models, tmp_path, capsys):
    small, large = write_images(tmp_path / "data", 2, [(32, 32), (40, 56)])  # 1024 and 2240 pixels
    store_dir = tmp_path / "store"
    assert tokenize(tmp_path / "data", "--model", models["image"], "--out", store_dir, "--max-pixels", "2000") == 0
    assert "1 done, 0 skipped as already done, 1 failed" in capsys.readouterr().out
    (error,) = read_jsonl(store_dir / "errors.jsonl")
    assert error["source"] == str(large) and "2240 pixels is more than the limit of 2000" in error["error"]
    assert [item.source for item in TokenStore(store_dir)] == [str(small)]

    args = ["--model", models["image"], "--out", store_dir, "--retry-failed", "--max-pixels", "0"]
    assert tokenize(tmp_path / "data", *args) == 0
    assert "1 done, 1 skipped as already done, 0 failed" in capsys.readouterr().out
    assert torch.equal(TokenStore(store_dir)[str(large)].ids, vqtok.load(models["image"]).encode(large)[0])


def test_resize_and_center_crop(models, tmp_path):
    paths = write_images(tmp_path / "data", 3, [(40, 72), (64, 48), (33, 33)])
    store_dir = tmp_path / "store"
    assert (
        tokenize(tmp_path / "data", "--model", models["image"], "--out", store_dir, "--resize", "32", "--crop", "32")
        == 0
    )
    tok, store = vqtok.load(models["image"]), TokenStore(store_dir)
    policy = Resolution(resize=32, crop=(32, 32))
    for path in paths:
        item = store[str(path)]
        assert item.input_size == (32, 32) and item.ids.shape == (4, 4)
        assert item.size == Image.open(path).size[::-1]
        x = policy.apply(vqtok.inputs.image_batch(path))  # (1, 3, 32, 32)
        assert torch.equal(item.ids, tok.encode(x)[0])


def test_video_store_round_trip(models, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    clips = [
        write_test_video(data / "a.mp4", random_frames(7, 24, 32, seed=1), fps=12),
        write_test_video(data / "b.mkv", random_frames(10, 16, 24, seed=2), fps=25),
    ]
    image = write_images(data, 1, [(24, 40)])[0]
    store_dir = tmp_path / "store"
    assert tokenize(data, "--model", models["video"], "--out", store_dir) == 0

    tok, store = vqtok.load(models["video"]), TokenStore(store_dir)
    assert len(store) == 3 and store.meta.video
    for clip, (frames, h, w, fps) in zip(clips, [(7, 24, 32, 12), (10, 16, 24, 25)]):
        item = store[str(clip)]
        assert item.size == item.input_size == (frames, h, w) and item.fps == pytest.approx(fps)
        assert torch.equal(item.ids, tok.encode(clip)[0])  # the API streams the file; the job decoded it whole
    assert torch.equal(store[str(image)].ids, tok.encode(image)[0])

    out = tmp_path / "decoded"
    assert main(["detokenize", str(store_dir), "--model", str(models["video"]), "--out", str(out)]) == 0
    from vqtok.io.video import probe_video

    info = probe_video(out / "a.mp4")
    assert (info.num_frames, info.height, info.width) == (7, 24, 32)
    assert Image.open(out / f"{image.stem}.png").size == (40, 24)


def _store_contents(store_dir: Path) -> dict[str, list]:
    return {item.source: item.ids.tolist() for item in TokenStore(store_dir)}


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(models, tmp_path):
    write_images(tmp_path / "data", 120, [(96, 96), (80, 112)])
    args = [
        str(tmp_path / "data"),
        "--model",
        str(models["image"]),
        "--shard-items",
        "5",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_tokenize(*args, "--out", str(whole)).returncode == 0

    proc = subprocess.Popen(
        tokenize_command(*args, "--out", str(resumed)),
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list((resumed / "parts").glob("*.jsonl"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its decoding workers, as when a node dies
    proc.wait()
    finished = len(list((resumed / "parts").glob("*.jsonl")))
    assert 3 <= finished < 24 and not (resumed / "manifest.jsonl").exists(), f"not killed mid-run ({finished})"

    rerun = run_tokenize(*args, "--out", str(resumed))
    assert rerun.returncode == 0, rerun.stderr
    assert f"done, {finished * 5} skipped as already done, 0 failed" in rerun.stdout
    assert (resumed / "manifest.jsonl").read_text() == (whole / "manifest.jsonl").read_text()  # shards, offsets too
    assert _store_contents(resumed) == _store_contents(whole)
    assert len(TokenStore(resumed)) == 120
    leftovers = [p.name for p in resumed.rglob(".*") if p.name != ".lock"]
    assert not leftovers and len(list((resumed / "shards").iterdir())) == 24


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(models, tmp_path):
    write_images(tmp_path / "data", 30, [(32, 32), (24, 40)])
    args = [
        str(tmp_path / "data"),
        "--model",
        str(models["image"]),
        "--shard-items",
        "4",
        "--accelerator",
        "cpu",
        "--no-progress",
    ]
    one = run_tokenize(*args, "--out", str(tmp_path / "one"))
    two = run_tokenize(*args, "--out", str(tmp_path / "two"), "--devices", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert "MEMBER: 2/2" in two.stderr  # two ranks ran
    assert two.stdout.count("30 done") == 1  # only rank 0 reports
    assert _store_contents(tmp_path / "two") == _store_contents(tmp_path / "one")
    # a store inside the data folder is not read as input; 2 new files make 1 unit, so rank 1 has nothing to do
    write_images(tmp_path / "data", 32, [(32, 32), (24, 40)])  # the first 30 again (same bytes), 2 new
    inside = tmp_path / "data" / "tokens"
    more = run_tokenize(*args, "--out", str(tmp_path / "two"), "--devices", "2")
    assert more.returncode == 0 and "2 done, 30 skipped as already done, 0 failed" in more.stdout, more.stderr
    for expected in ("32 done, 0 skipped", "0 done, 32 skipped"):  # the rerun does not read the store's own files
        inside_run = run_tokenize(*args, "--out", str(inside), "--shard-items", "64", "--devices", "2")
        assert inside_run.returncode == 0 and f"{expected} as already done, 0 failed" in inside_run.stdout
    ranks = set()
    for shard in (tmp_path / "two" / "shards").iterdir():
        with safe_open(str(shard), framework="pt") as f:
            ranks.add(f.metadata()["rank"])
    assert ranks == {"0", "1"}  # each rank wrote its own shards


def test_readme_store_example_runs(models, tmp_path, monkeypatch):
    import re

    write_images(tmp_path / "data", 3, [(64, 64)])  # 8x8 grids: 65 ids each with the separator
    assert tokenize(tmp_path / "data", "--model", models["image"], "--out", tmp_path / "tokens") == 0
    block = next(
        b
        for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
        if "TokenStore(" in b
    )
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md store example", "exec"), scope)
    assert torch.equal(scope["ids"], scope["item"].ids) and len(scope["dataset"]) == 3
    packed, store = scope["packed"], scope["store"]
    assert len(packed) == 3 * 65 // 64 and torch.equal(packed[0], store[0].ids.flatten())
    assert packed[1][0] == 512 and torch.equal(packed[1][1:], store[1].ids.flatten()[:63])  # SEP, then item 1
