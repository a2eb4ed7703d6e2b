"""Sampling speed of the priors: the autoregressive prior over a 32x32 grid with and without its KV cache, and
the masked (MaskGIT) prior at 8 and 16 steps. Random weights: speed does not depend on them.

    python -m bench.prior_sampling [--dim 256 --depth 6 --heads 4 --grid 32 --n 1 --repeats 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import machine, table
from vqtok.prior import PriorConfig, build_prior, sample


def seconds(fn, repeats: int) -> float:  # noqa: ANN001 - a callable
    """Median of ``repeats`` timed calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--grid", type=int, default=32, help="sample grids of grid x grid ids")
    parser.add_argument("--n", type=int, default=1, help="samples per call")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    grid = (args.grid, args.grid)
    shape = {"num_codes": 16384, "num_classes": 10, "dim": args.dim, "depth": args.depth, "heads": args.heads}
    torch.manual_seed(0)
    ar = build_prior(PriorConfig(**shape)).eval()
    masked = build_prior(PriorConfig(**shape, objective="maskgit")).eval()
    params = sum(p.numel() for p in ar.parameters()) / 1e6
    labels = list(range(args.n))
    for model in (ar, masked):  # warm-up on a small grid
        sample(model, (4, 4), args.n, labels, cfg_scale=2.0)
    rows = []
    cached = seconds(lambda: sample(ar, grid, args.n, labels, cfg_scale=2.0), args.repeats)
    uncached = seconds(lambda: sample(ar, grid, args.n, labels, cfg_scale=2.0, use_cache=False), args.repeats)
    rows.append(["AR, KV cache", f"{cached:.2f} s", f"{uncached / cached:.1f}x faster than without"])
    rows.append(["AR, no cache (whole prefix every position)", f"{uncached:.2f} s", "-"])
    for steps in (8, 16):
        t = seconds(lambda steps=steps: sample(masked, grid, args.n, labels, cfg_scale=2.0, steps=steps), args.repeats)
        rows.append([f"MaskGIT, {steps} steps", f"{t:.2f} s", f"{cached / t:.1f}x faster than AR with cache"])
    print(f"machine: {machine()}")
    print(f"\n{args.n} sample(s) of {grid[0]}x{grid[1]} ids, CFG 2 (two passes), {params:.1f} M parameters "
          f"(dim {args.dim}, depth {args.depth}), 16384 codes\n")  # fmt: skip
    print(table(["sampler", "time", "note"], rows))


if __name__ == "__main__":
    main()
