"""Shared by the token-store tests: small image folders, tiny exports and running ``vqtok tokenize``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqtok.config import TokenizerConfig
from vqtok.export import save_export
from vqtok.model.vqvae import VQVAE

REPO = Path(__file__).resolve().parent.parent


def export_model(folder: Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A random-weight export (the tests compare the store with the public API, so weights need no training)."""
    torch.manual_seed(seed)
    return save_export(VQVAE(TokenizerConfig.from_name(preset)).eval(), folder / f"{preset}_{seed}")


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): a few blurred blobs, so JPEGs are small and ids vary."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 20)
        img += rng.uniform(0, 255, 3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """``count`` images cycling through ``sizes`` (H, W), alternately PNG and JPEG, some in a subfolder."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        sub = folder / "sub" if i % 3 == 2 else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img{i:04d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(smooth_image(rng, h, w)).save(path, quality=90)
        paths.append(path)
    return paths


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tokenize_command(*args: str) -> list[str]:
    """``python -m vqtok.cli.main tokenize ...`` (a real process: what a user or a cluster runs)."""
    return [sys.executable, "-m", "vqtok.cli.main", "tokenize", *args]


def run_tokenize(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(tokenize_command(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
