"""Section 4: peak memory of a 4096x4096 image round trip (tiled) and of a 720p clip streamed through the video
tokenizer; and what tiling changes, measured on a 1024x1024 image against one untiled pass."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import vqtok
from bench.common import RESULTS, in_child, measure_peak, table
from vqtok.inputs import image_batch
from vqtok.metrics import psnr
from vqtok.synthetic import render_dead_leaves


def procedural_image(size: int, seed: int = 0) -> np.ndarray:
    """A (size, size, 3) uint8 dead-leaves image (a 1024 render repeated beyond that: rendering is slow)."""
    tile = render_dead_leaves(np.random.default_rng(seed), min(size, 1024))
    reps = -(-size // tile.shape[0])
    return np.tile(tile, (reps, reps, 1))[:size, :size]


def image_round_trip(model: str, size: int, tile_size: int) -> dict[str, Any]:
    """Child-process side: the whole process's peak RSS to load ``model``, encode and decode one image."""
    image = procedural_image(size)
    seconds = {}

    def setup():
        tok = vqtok.load(model, tile_size=tile_size)

        def call():
            start = time.perf_counter()
            tok.decode(tok.encode(image))
            seconds["round_trip"] = time.perf_counter() - start

        return call

    return {**measure_peak(setup), **seconds}


def tiling_effect(model: str, tile_size: int, size: int = 1024) -> dict[str, float]:
    image = procedural_image(size, seed=1)
    x = image_batch(image, 3)
    tiled, untiled = vqtok.load(model, tile_size=tile_size), vqtok.load(model)
    ids_t, ids_u = tiled.encode(image), untiled.encode(image)
    rec_t, rec_u = tiled.decode(ids_t), untiled.decode(ids_u)
    return {
        "tiled_vs_untiled_psnr_db": float(psnr(rec_t, rec_u)),
        "decode_only_tiled_vs_untiled_psnr_db": float(psnr(tiled.decode(ids_u), rec_u)),
        "quality_tiled_psnr_db": float(psnr(rec_t, x)),
        "quality_untiled_psnr_db": float(psnr(rec_u, x)),
        "same_ids": float((ids_t == ids_u).float().mean()),
        "tile_size": tiled.tile_size,
    }


def video_round_trip(model: str | None, seconds: float, chunk_frames: int, tile_size: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.video_memory", "--seconds", str(seconds), "--chunk-frames", str(chunk_frames)]
    cmd += ["--tile-size", str(tile_size)]
    cmd += ["--model", model] if model else []
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads((RESULTS / "video_memory.json").read_text())["rows"][0]


def run(
    model: str, video_model: str | None, video_seconds: float, chunk_frames: int, tile_size: int = 512
) -> tuple[str, dict[str, Any]]:
    big = in_child("bench.memory:image_round_trip", keep_freed=False, model=model, size=4096, tile_size=tile_size)
    tiling = tiling_effect(model, tile_size)
    video = video_round_trip(video_model, video_seconds, chunk_frames, tile_size)
    gb = 2**20 / 1e9  # MiB -> GB
    rows = [
        [
            f"4096x4096 image, encode + decode ({tile_size} px tiles)",
            f"`{model}`",
            big.get("error") or f"{big['process_peak_mib'] * gb:.2f} GB",
            "3 GB",
            f"{big.get('round_trip', 0):.1f} s",
        ],
        [
            f"{video_seconds:g} s 720p clip @ 24 fps to MP4 ({tile_size} px tiles, {chunk_frames}-frame chunks)",
            f"`{video_model or 'video_tiny'}`",
            video.get("error") or f"{video['peak_rss_mb'] * gb:.2f} GB",
            "4 GB (60 s clip)",
            f"{video.get('encode_fps', 0):.2f} / {video.get('decode_fps', 0):.2f} frames/s",
        ],
    ]
    text = (
        "### Memory: peak resident memory of the whole process (Python, torch and the model included)\n\n"
        + table(["job", "model", "peak RSS", "target", "time"], rows)
        + f"\n\nTiling ({tiling['tile_size']} px tiles) on a 1024x1024 image: the tiled round trip is "
        f"{tiling['tiled_vs_untiled_psnr_db']:.1f} dB PSNR from the untiled one ({100 * tiling['same_ids']:.0f}% "
        f"identical ids; decoding the same ids tiled: {tiling['decode_only_tiled_vs_untiled_psnr_db']:.1f} dB); "
        f"quality against the original {tiling['quality_tiled_psnr_db']:.2f} dB tiled vs "
        f"{tiling['quality_untiled_psnr_db']:.2f} dB untiled."
    )
    return text, {"image_4096": big, "tiling_1024": tiling, "video": video}
