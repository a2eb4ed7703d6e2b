"""Section 7: what ``vqtok.allocator.keep_freed_memory`` is worth: the same encode + decode in two fresh processes,
one with glibc's allocator defaults and one with freed memory kept for reuse (alternating, median of each)."""

from __future__ import annotations

import time
from typing import Any

import torch

import vqtok
from bench.common import in_child, table


def round_trip(model: str, size: int, batch: int, repeats: int) -> dict[str, float]:
    """Child-process side: median images/s of encode + decode after one warm-up call."""
    tok = vqtok.load(model)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    tok.decode(tok.encode(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tok.decode(tok.encode(x))
        times.append(time.perf_counter() - start)
    return {"images_per_s": batch / sorted(times)[len(times) // 2]}


def run(model: str, repeats: int, size: int = 256, batch: int = 16) -> tuple[str, dict[str, Any]]:
    runs: dict[str, list[float]] = {"glibc defaults": [], "keep_freed_memory()": []}
    for _ in range(2):  # alternate the two settings, two processes each
        for name, keep in (("glibc defaults", False), ("keep_freed_memory()", True)):
            result = in_child(
                "bench.allocator:round_trip", keep_freed=keep, model=model, size=size, batch=batch, repeats=repeats
            )
            runs[name].append(result.get("images_per_s", float("nan")))
    best = {name: max(values) for name, values in runs.items()}
    base = best["glibc defaults"]
    body = [[name, " / ".join(f"{v:.2f}" for v in runs[name]), f"{best[name] / base:.2f}x"] for name in runs]
    text = (
        f"### Allocator: `{model}` fp32 encode + decode, {size}x{size} batch {batch}, each run a fresh process\n\n"
        + table(["malloc", "img/s (two processes)", "speed"], body)
    )
    return text, {"runs": runs}
