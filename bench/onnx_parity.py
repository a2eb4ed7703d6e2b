"""How closely the onnxruntime backend follows the torch backend, for every shipped tokenizer: the share of ids
that agree, and the largest difference of decoded pixels (the same ids decoded by both), at several sizes.

    python -m bench.onnx_parity [--models tiny video_tiny image video] [--threads 2]

Inputs: procedural images (dead leaves) and clips, and uniform noise (harder: more near-ties between codes).
Prints a markdown table and writes bench/results/onnx_parity.json. The tests (tests/test_onnx_parity.py) hold the
bar: ids on at least 99.9% of positions, pixels within 1e-3.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import vqtok
from bench.common import RESULTS, table
from vqtok.backends.onnx_export import export_onnx
from vqtok.inputs import image_batch
from vqtok.synthetic import procedural_video_frames, render_dead_leaves

IMAGE_SIZES = [(256, 256), (37, 53), (8, 130), (200, 301)]
VIDEO_SIZES = [(17, 64, 64), (10, 37, 45)]


def inputs(video: bool) -> list[tuple[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    found = []
    for size in IMAGE_SIZES:
        leaves = image_batch(render_dead_leaves(rng, max(size)), 3)[..., : size[0], : size[1]]
        found += [
            (f"{size[0]}x{size[1]} image", leaves),
            (f"{size[0]}x{size[1]} noise", torch.rand(1, 3, *size) * 2 - 1),
        ]
    if video:
        for t, h, w in VIDEO_SIZES:
            frames = np.stack(list(procedural_video_frames(0, t, h, w)))  # (T, H, W, 3)
            clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
            found += [(f"{t}x{h}x{w} clip", clip), (f"{t}x{h}x{w} noise", torch.rand(1, 3, t, h, w) * 2 - 1)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "video_tiny", "image", "video"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch_tok = vqtok.load(name, chunk_frames=4)
            onnx_tok = vqtok.load(export_onnx(name, Path(tmp) / name), backend="onnx", chunk_frames=4)
            for label, x in inputs(torch_tok.is_video):
                ids, onnx_ids = torch_tok.encode(x), onnx_tok.encode(x)
                size = tuple(x.shape[2:])
                diff = (torch_tok.decode(ids, size=size) - onnx_tok.decode(ids, size=size)).abs().max().item()
                same = int((ids == onnx_ids).sum())
                rows.append({"model": name, "input": label, "positions": ids.numel(), "same": same, "max_abs": diff})
                print(rows[-1], flush=True)
    body = [
        [r["model"], r["input"], r["positions"], f"{100 * r['same'] / r['positions']:.3f}%", f"{r['max_abs']:.1e}"]
        for r in rows
    ]
    total = sum(r["positions"] for r in rows)
    same = sum(r["same"] for r in rows)
    print(table(["model", "input", "id positions", "ids equal", "decoded max abs diff"], body))
    print(f"\nall: {same} of {total} ids equal ({100 * same / total:.3f}%)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "onnx_parity.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
