"""Pictures of tokens and errors, as uint8 RGB arrays: the token grid (one stable colour per id), a histogram of
code usage, and a heatmap of the reconstruction error."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Error heatmap: |error| (mean over RGB, in 0..255 levels) from 0 to HEATMAP_MAX maps onto this colour ramp
# (black, purple, red, orange, pale yellow); larger errors saturate. A fixed scale keeps heatmaps comparable.
HEATMAP_MAX = 64.0
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)
_GRID_SIDE = 512  # the token grid is drawn with square cells, about this many pixels high
_GAP = 4  # pixels between the latent frames of a video's token grid


def code_colours(ids: np.ndarray) -> np.ndarray:
    """Token ids (any shape) -> uint8 colours (..., 3). The colour depends on the id only (a multiplicative hash),
    so a code looks the same in every image, model and session; channels stay in 48..255 so no code is black."""
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)  # Knuth's hash, 32 bits
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)], axis=-1)  # (..., 3) in 0..255
    return (48 + rgb.astype(np.float32) * (207 / 255)).astype(np.uint8)


def token_grid_image(ids: np.ndarray, max_frames: int = 8, columns: int = 4) -> np.ndarray:
    """Ids (h, w) of an image, or (t, h, w) of a video, -> uint8 (H, W, 3): each token a square cell of its colour.
    A video's first ``max_frames`` latent frames are tiled in rows of ``columns``, in reading order, with white
    gaps between them."""
    frames = ids[None] if ids.ndim == 2 else ids[:max_frames]  # (t, h, w)
    t, h, w = frames.shape
    cols = min(t, columns)
    rows = -(-t // cols)
    cell = max(1, min(32, _GRID_SIDE // (h * rows), 2 * _GRID_SIDE // (w * cols)))  # <= 512 high, 1024 wide
    gap = _GAP if t > 1 else 0
    canvas = np.full((rows * (h * cell + gap) - gap, cols * (w * cell + gap) - gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        y, x = (i // cols) * (h * cell + gap), (i % cols) * (w * cell + gap)
        canvas[y : y + h * cell, x : x + w * cell] = np.kron(code_colours(frame), np.ones((cell, cell, 1), np.uint8))
    return canvas


def usage_histogram(ids: np.ndarray, codebook_size: int, width: int = 640, height: int = 240) -> np.ndarray:
    """A bar chart of how often each code is used: x is the code id (0 .. K-1, codes binned into at most ``width``
    columns), y the count. Returns uint8 (height, width, 3)."""
    counts = np.bincount(ids.ravel(), minlength=codebook_size)  # (K,)
    left, bottom, top = 8, 22, 18
    columns = min(codebook_size, width - 2 * left)
    edges = np.linspace(0, codebook_size, columns + 1).astype(np.int64)
    binned = np.add.reduceat(counts, edges[:-1])  # (columns,) tokens per column of codes
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    plot_h = height - bottom - top
    scale = plot_h / max(1, int(binned.max()))
    bar_w = (width - 2 * left) / columns
    for i, n in enumerate(binned):
        if n:
            x0 = left + i * bar_w
            draw.rectangle(
                [x0, height - bottom - n * scale, x0 + max(bar_w - 1, 1), height - bottom], fill=(49, 99, 170)
            )
    draw.line([left, height - bottom, width - left, height - bottom], fill="black")
    what = "code" if columns == codebook_size else f"bar of ~{codebook_size / columns:.0f} codes"
    used = int((counts > 0).sum())
    title = f"tokens per {what} (max {int(binned.max())}); {used} of {codebook_size} codes used"
    draw.text(((width - draw.textlength(title)) / 2, 3), title, fill="black")  # centred: clear of Gradio's label
    draw.text((left, height - bottom + 5), "code 0", fill="black")
    draw.text((width - left - 70, height - bottom + 5), f"code {codebook_size - 1}", fill="black")
    return np.asarray(img)


def error_heatmap(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) images -> uint8 (H, W, 3) heatmap of the mean absolute error per pixel, on a fixed scale:
    0 is black, ``HEATMAP_MAX`` levels (a quarter of the range) or more is pale yellow."""
    error = np.abs(original.astype(np.float32) - reconstruction.astype(np.float32)).mean(axis=-1)  # (H, W)
    position = np.clip(error / HEATMAP_MAX, 0, 1) * (len(_RAMP) - 1)  # (H, W) in [0, stops - 1]
    low = np.minimum(position.astype(np.int64), len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac + 0.5).astype(np.uint8)
