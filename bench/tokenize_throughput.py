"""Data-set tokenization throughput: the whole ``vqtok tokenize`` pipeline against the model alone.

    python -m bench.tokenize_throughput [--model tiny] [--images 1000] [--size 256] [--batch-size 16] [--workers 2]

Writes ``--images`` procedural dead-leaves JPEGs (cached under bench/results/jpegs/), then measures, in this one
process and on the same device:

- model only: ``Tokenizer.encode`` over batches of the images already decoded to tensors (no file reading);
- pipeline: ``tokenize_to_store`` over the folder: listing, JPEG decoding and hashing in DataLoader workers,
  the model, shard and manifest writes (a fresh store each repeat).

Items/s of the pipeline are over its predict loop (from the first batch to the last commit) and, separately, over
the whole call (Lightning start-up, planning and the final merge included). Each figure is the median of
``--repeats`` runs, alternating model-only and pipeline so both see the same machine load. Prints a markdown table
and writes bench/results/tokenize_throughput.json. Not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"


def make_jpegs(count: int, size: int, seed: int = 0) -> Path:
    """Write (once) ``count`` procedural JPEGs of ``size`` x ``size`` and return their folder."""
    from vqtok.synthetic import render_dead_leaves

    folder = RESULTS / "jpegs" / f"dead_leaves_{size}_{count}_seed{seed}"
    if len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for i in range(count):
        img = render_dead_leaves(np.random.default_rng([seed, i]), size)  # float (S, S, 3) in [0, 1]
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    print(f"wrote {count} JPEGs in {time.perf_counter() - t:.0f} s to {folder}", file=sys.stderr)
    return folder


def model_only(tok, images: torch.Tensor, batch_size: int) -> float:  # noqa: ANN001 - vqtok.Tokenizer
    """Items/s of the model on pre-decoded images (N, 3, H, W) in [-1, 1]."""
    t = time.perf_counter()
    for b in range(0, len(images), batch_size):
        tok.encode(images[b : b + batch_size]).cpu()
    return len(images) / (time.perf_counter() - t)


def pipeline(folder: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(items/s over the predict loop, items/s over the whole call) of tokenize_to_store into a fresh store."""
    from vqtok.pretokenize import TokenizeOptions, tokenize_to_store

    with tempfile.TemporaryDirectory(prefix="vqtok-bench-") as tmp:
        options = TokenizeOptions(
            sources=[str(folder)],
            model=args.model,
            out=os.path.join(tmp, "store"),
            batch_size=args.batch_size,
            num_workers=args.workers,
            accelerator=args.accelerator,
            devices=1,
            progress=False,
        )
        t = time.perf_counter()
        summary = tokenize_to_store(options)
        wall = time.perf_counter() - t
    assert summary is not None and summary.done == args.images and summary.failed == 0, summary
    return summary.items_per_second, summary.done / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="export directory or short name (default: tiny)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="auto")
    args = parser.parse_args()

    import vqtok
    from vqtok.inputs import image_batch

    folder = make_jpegs(args.images, args.size)
    device = "cuda" if args.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
    tok = vqtok.load(args.model, device=device)
    images = torch.cat([image_batch(p) for p in sorted(folder.glob("*.jpg"))])  # (N, 3, S, S) decoded once
    load_before = os.getloadavg()[0]
    model_runs, loop_runs, wall_runs = [], [], []
    model_only(tok, images[: args.batch_size * 2], args.batch_size)  # warm-up
    for _ in range(args.repeats):
        model_runs.append(model_only(tok, images, args.batch_size))
        loop, wall = pipeline(folder, args)
        loop_runs.append(loop)
        wall_runs.append(wall)
    result = {
        "model": args.model,
        "device": device,
        "images": args.images,
        "size": args.size,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "model_only_items_per_s": statistics.median(model_runs),
        "pipeline_loop_items_per_s": statistics.median(loop_runs),
        "pipeline_wall_items_per_s": statistics.median(wall_runs),
        "runs": {"model_only": model_runs, "pipeline_loop": loop_runs, "pipeline_wall": wall_runs},
    }
    result["loop_ratio"] = result["pipeline_loop_items_per_s"] / result["model_only_items_per_s"]
    result["wall_ratio"] = result["pipeline_wall_items_per_s"] / result["model_only_items_per_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tokenize_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    r = result
    print(
        f"{args.images} JPEGs {args.size}x{args.size}, model {args.model} on {device}, batch {args.batch_size}, "
        f"{args.workers} decode workers, {r['threads']} torch threads, {r['cpus']} CPUs, "
        f"load {r['load_before']} -> {r['load_after']}, median of {args.repeats}"
    )
    print()
    print("| what | items/s | vs model only |")
    print("|---|---|---|")
    print(f"| model only (pre-decoded tensors) | {r['model_only_items_per_s']:.1f} | 1.00 |")
    print(f"| pipeline, predict loop | {r['pipeline_loop_items_per_s']:.1f} | {r['loop_ratio']:.2f} |")
    print(f"| pipeline, whole call (start-up, merge) | {r['pipeline_wall_items_per_s']:.1f} | {r['wall_ratio']:.2f} |")


if __name__ == "__main__":
    main()
