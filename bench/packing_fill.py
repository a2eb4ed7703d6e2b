"""The real-token fraction of ``PackedItems`` on a mixed store: images of many sizes and short clips, tokenized
with ``video_tiny`` (so images and videos share the store), then the same grid mix ten times over.

    python -m bench.packing_fill [--work DIR]      # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqtok.cli.main import main as vqtok_main
from vqtok.io.video import write_video
from vqtok.pretokenize.plan import merge, open_store, plan_run
from vqtok.pretokenize.unit_writer import UnitWriter
from vqtok.store import PackedItems, TokenStore

IMAGE_SIZES = [(24, 24), (32, 32), (32, 48), (40, 56), (48, 48), (56, 72), (64, 64), (64, 96), (72, 40), (80, 80)]
CLIP_SIZES = [(5, 32, 32), (9, 32, 48), (5, 48, 48), (9, 24, 40)]
SEQ_LENS = (128, 256, 512, 1024)


def smooth(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """uint8 (..., H, W, 3): blurred blobs."""
    *lead, h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((*lead, h, w, 3), np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 20)
        out += rng.uniform(0, 255, 3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def real_store(work: Path) -> TokenStore:
    data, store = work / "data", work / "store"
    if not (store / "manifest.jsonl").exists():
        rng = np.random.default_rng(0)
        for i in range(240):
            (data / "abc"[i % 3]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(smooth(rng, *IMAGE_SIZES[i % len(IMAGE_SIZES)])).save(data / "abc"[i % 3] / f"{i}.png")
        for i in range(24):
            t, h, w = CLIP_SIZES[i % len(CLIP_SIZES)]
            pan = smooth(rng, h, w + 2 * t)  # a camera panning over a wider scene
            frames = np.stack([pan[:, 2 * k : 2 * k + w] for k in range(t)])  # (T, H, W, 3)
            write_video(data / "abc"[i % 3] / f"clip{i}.mp4", frames, fps=10)
        args = ["tokenize", str(data), "--model", "video_tiny", "--out", str(store), "--labels", "folder"]
        assert vqtok_main([*args, "--no-progress"]) == 0
    return TokenStore(store)


def replicated_store(work: Path, grids: list[tuple[int, ...]], num_codes: int) -> TokenStore:
    """A store of the given grids (ids made up: packing reads only their lengths)."""
    from vqtok.store import StoreMeta

    meta = StoreMeta("m", "f" * 16, "c" * 16, num_codes, "uint16", True)
    store = work / "replicated"
    if not (store / "manifest.jsonl").exists():
        open_store(store, meta)
        sources = [f"/x/{k:06d}.png" for k in range(len(grids))]
        for unit in plan_run(store, sources, 1024, retry_failed=False).units:
            writer = UnitWriter(store, unit.name, len(unit.sources), meta, 1 << 24)
            for source in unit.sources:
                grid = grids[int(Path(source).stem)]
                ids = torch.zeros(math.prod(grid), dtype=torch.int64).view(grid)
                writer.add({"source": source, "sha256": "0", "size": [1] * len(grid), "input_size": [1] * len(grid),
                            "fps": None, "ids": ids})  # fmt: skip
            writer.commit()
        merge(store)
    return TokenStore(store)


def report(name: str, store: TokenStore) -> None:
    lengths = [r.length for r in store.records]
    shapes = len({tuple(r.grid) for r in store.records})
    print(
        f"\n{name}: {len(store)} items, {shapes} grid shapes of {min(lengths)}-{max(lengths)} ids, {sum(lengths)} ids"
    )
    print("| seq_len | sequences | lower bound | real-token fraction |\n|---|---|---|---|")
    for seq_len in SEQ_LENS:
        packed = PackedItems(store, seq_len, seed=0)
        bound = -(-packed.real_tokens // seq_len)
        print(f"| {seq_len} | {len(packed)} | {bound} | {packed.fill_fraction:.2%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="folder for the data and stores (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="packing_fill_"))
    store = real_store(work)
    report("tokenized store (video_tiny)", store)
    grids = [tuple(r.grid) for r in store.records] * 10
    random.Random(0).shuffle(grids)
    report("the same grid mix, ten times over", replicated_store(work, grids, store.meta.num_codes))


if __name__ == "__main__":
    main()
