"""A labelled procedural image set for trying priors in minutes: one large shape per image, classes that look
nothing alike (disc, square, triangle, stripes), random colours, sizes, positions and angles, reproducible by seed.

    vqtok prior shapes data/shapes --n 1500 --size 64         # data/shapes/{disc,square,triangle,stripes}/*.png
    vqtok tokenize data/shapes --model tiny --out tokens/shapes --labels folder
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("disc", "square", "triangle", "stripes")
_SUPERSAMPLE = 4  # drawn at 4x and downscaled: anti-aliased edges


def render_shape(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB ``size`` x ``size`` image of class ``kind`` (see :data:`CLASSES`)."""
    if kind not in CLASSES:
        raise ValueError(f"unknown shape class {kind!r}; the classes are {list(CLASSES)}")
    big = size * _SUPERSAMPLE
    background, colour = _colour_pair(rng)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    if kind == "stripes":
        period = rng.uniform(0.15, 0.3) * big
        angle = rng.uniform(0, math.pi)
        direction = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        for k in range(-8, 9):  # bands of half a period, across the whole image
            centre = np.array([big / 2, big / 2]) + normal * (k * period + rng.uniform(-0.02, 0.02) * big)
            corners = [
                centre + direction * s * big + normal * t * period / 4 for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))
            ]
            draw.polygon([tuple(c) for c in corners], fill=colour)
    else:
        radius = rng.uniform(0.25, 0.4) * big
        cx, cy = rng.uniform(radius, big - radius, 2)
        if kind == "disc":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        else:
            sides = 4 if kind == "square" else 3
            turn = rng.uniform(0, 2 * math.pi)
            points = [
                (
                    cx + radius * math.cos(turn + 2 * math.pi * j / sides),
                    cy + radius * math.sin(turn + 2 * math.pi * j / sides),
                )
                for j in range(sides)
            ]
            draw.polygon(points, fill=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _colour_pair(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A background and a shape colour 60 apart in mean brightness and 120 in one channel: the shape stands out."""
    while True:
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if abs(float(a.mean()) - float(b.mean())) >= 60 and np.abs(a - b).max() >= 120:
            return tuple(int(v) for v in a), tuple(int(v) for v in b)  # type: ignore[return-value]


def write_shapes(out: str | os.PathLike[str], n: int, size: int = 64, seed: int = 0) -> list[Path]:
    """Write ``n`` PNGs per class to ``out/CLASS/NNNNN.png`` (the ImageFolder layout ``--labels folder`` reads).

    Every image is a function of (seed, class, index) only. Returns the paths written.
    """
    if n < 1 or size < 8:
        raise ValueError(f"n must be at least 1 and size at least 8, got {n} and {size}")
    paths = []
    for c, kind in enumerate(CLASSES):
        folder = Path(out) / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, c, i])
            path = folder / f"{i:05d}.png"
            render_shape(kind, size, rng).save(path)
            paths.append(path)
    return paths
