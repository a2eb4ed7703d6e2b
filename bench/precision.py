"""Section 5: the tokenizer in fp32 and in bf16 (convolutions; the code lookup stays fp32): speed, how many ids
change, and what happens to reconstruction PSNR, on procedural images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import vqtok
from bench.common import interleaved, table
from vqtok.inputs import image_batch
from vqtok.metrics import psnr
from vqtok.synthetic import render_dead_leaves


def run(model: str, device: torch.device, repeats: int, size: int = 256, batch: int = 16) -> tuple[str, list[dict]]:
    rng = np.random.default_rng(0)
    x = torch.cat([image_batch(render_dead_leaves(rng, size), 3) for _ in range(batch)]).to(device)  # (B, 3, S, S)
    toks = {
        name: vqtok.load(model, device=device, dtype=dtype)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    seconds = interleaved({name: (lambda t=t: t.decode(t.encode(x))) for name, t in toks.items()}, device, repeats)
    ids = {name: t.encode(x) for name, t in toks.items()}
    rows: list[dict[str, Any]] = []
    for name, t in toks.items():
        rows.append(
            {
                "dtype": name,
                "images_per_s": batch / seconds[name],
                "psnr_db": float(psnr(t.decode(ids[name]), x).mean()),
                "same_ids_as_fp32": float((ids[name] == ids["fp32"]).float().mean()),
            }
        )
    body = [
        [
            r["dtype"],
            f"{r['images_per_s']:.2f}",
            f"{r['images_per_s'] / rows[0]['images_per_s']:.2f}x",
            f"{100 * r['same_ids_as_fp32']:.1f}%",
            f"{r['psnr_db']:.2f}",
            f"{r['psnr_db'] - rows[0]['psnr_db']:+.3f}",
        ]
        for r in rows
    ]
    text = (
        f"### Precision: `{model}`, {size}x{size} batch {batch} encode + decode on {device.type}, "
        f"{batch} procedural images\n\n"
        + table(["dtype", "img/s", "speed", "ids as fp32", "PSNR dB", "PSNR change"], body)
    )
    return text, rows
