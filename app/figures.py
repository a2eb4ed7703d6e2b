"""The numbers the app reports: token statistics, compression, quality (PSNR, SSIM) and timings, as a dict (what
the API returns) and as a Markdown table (what the page shows)."""

from __future__ import annotations

import math

import numpy as np
import torch

from vqtok import metrics


def quality(original: np.ndarray, reconstruction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR (dB) and SSIM of each frame, both uint8 (H, W, 3) or (T, H, W, 3) -> two float arrays (T,) (T = 1 for an
    image). Computed on the uint8 pixels the user downloads, with vqtok.metrics (range [-1, 1])."""
    a, b = (torch.tensor(x).reshape(-1, *x.shape[-3:]) for x in (original, reconstruction))  # (T, H, W, 3) copies
    a, b = (x.permute(0, 3, 1, 2).float() / 127.5 - 1 for x in (a, b))  # (T, 3, H, W) in [-1, 1]
    return metrics.psnr(b, a).numpy(), metrics.ssim(b, a).numpy()


def token_figures(ids: np.ndarray, codebook_size: int, size: tuple[int, ...], file_bytes: int | None) -> dict:
    """What the tokens cost.

    Args:
        ids: the token grid, (h, w) or (t, h, w).
        codebook_size: K; a token carries log2(K) bits.
        size: the pixels encoded, (H, W) or (T, H, W) (before padding).
        file_bytes: size of the uploaded file when all of it was encoded unscaled, else None (no fair comparison).
    """
    bits_per_token = math.log2(codebook_size)
    token_bits = ids.size * bits_per_token
    pixels = math.prod(size)
    return {
        "input_size": list(size),
        "token_grid": list(ids.shape),
        "num_tokens": int(ids.size),
        "distinct_codes": int(np.unique(ids).size),
        "codebook_size": codebook_size,
        "bits_per_token": bits_per_token,
        "bits_per_pixel": token_bits / pixels,
        "compression_vs_raw_rgb": pixels * 24 / token_bits,
        "file_bytes": file_bytes,
        "compression_vs_file": None if file_bytes is None else file_bytes * 8 / token_bits,
    }


_ROWS = [  # (key, label, format)
    ("model", "Model", "{}"),
    ("input_size", "Input size", "dims"),
    ("token_grid", "Token grid", "dims"),
    ("num_tokens", "Tokens", "{:,}"),
    ("distinct_codes", "Distinct codes used", "{:,}"),
    ("codebook_size", "Codebook size", "{:,}"),
    ("bits_per_pixel", "Bits per pixel", "{:.4f}"),
    ("compression_vs_raw_rgb", "Compression vs raw RGB (24 bpp)", "{:.1f}x"),
    ("compression_vs_file", "Compression vs uploaded file", "{:.1f}x"),
    ("psnr_db", "PSNR", "{:.2f} dB"),
    ("ssim", "SSIM", "{:.4f}"),
    ("encode_seconds", "Encode time", "{:.3f} s"),
    ("decode_seconds", "Decode time", "{:.3f} s"),
]


def figures_markdown(figures: dict) -> str:
    """The figures as a two-column Markdown table, followed by the notes (what was cut, downscaled, ...)."""
    lines = ["| Figure | Value |", "|---|---|"]
    for key, label, fmt in _ROWS:
        if key not in figures:
            continue
        value = figures[key]
        if value is None:
            text = "n/a (only part of the file, or a scaled copy, was encoded)"
        elif fmt == "dims":
            text = " x ".join(str(v) for v in value) + (" (frames x height x width)" if len(value) == 3 else "")
        else:
            text = fmt.format(value)
        lines.append(f"| {label} | {text} |")
    notes = [f"- {note}" for note in figures.get("notes", [])]
    return "\n".join(lines + (["", *notes] if notes else []))
