"""Side-by-side crops of held-out photos through several tokenizers, and how much fine detail each keeps.

    python -m tools.compare_crops runs/study/v1_image image --labels v1 v2 --out checkpoints/figures/v1_v2.png
    python -m tools.compare_crops runs/study/v1_image image runs/study/loss_ssim/export --labels v1 v2 ssim

Writes one PNG: a row per photo crop (:data:`CROPS`, 96x96 pixels of textured regions, shown at 2x with nearest
neighbour so single pixels stay visible), columns original | each model's reconstruction. Each model reconstructs
the photo's centre 512x512 crop (as ``vqtok eval`` scores it) and the window is cut from that.

Prints, per model, the mean PSNR over the crops and the **detail ratio**: the variance of the Laplacian of the
reconstruction over that of the original, averaged over the 15 held-out photos (1.0 keeps all fine detail; a
blurry reconstruction scores well below 1; GAN-like invented texture can exceed 1). PSNR rewards blur, so the two
are read together.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import vqtok
from vqtok.evaluation import DEFAULT_CROP
from vqtok.inputs import image_batch, to_uint8
from vqtok.transforms import center_crop

HELDOUT = Path("data/heldout/photos")
CROPS: dict[str, tuple[int, int]] = {  # photo stem -> (top, left) of a 96x96 window in its centre 512x512 crop
    "chelsea": (120, 150),  # fur and whiskers
    "brick": (200, 200),  # mortar lines
    "grass": (200, 200),  # blades
    "coffee": (150, 250),  # cup rim and saucer
    "astronaut": (150, 200),  # face and badge
}
WINDOW = 96


def reconstruct(tok: vqtok.Tokenizer, photo: Path) -> tuple[np.ndarray, np.ndarray]:
    """The photo's centre crop (as vqtok eval scores it) and its reconstruction, both uint8 (H, W, 3)."""
    x = center_crop(image_batch(photo), DEFAULT_CROP)  # (1, 3, H, W) in [-1, 1]
    y = tok.decode(tok.encode(x), size=tuple(x.shape[-2:]))
    return to_uint8(x[0]), to_uint8(y[0])


def detail(pixels: np.ndarray) -> float:
    """Variance of the Laplacian of the luma of uint8 (H, W, 3) pixels: how much fine detail there is."""
    luma = torch.from_numpy(pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[None, None]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    return float(F.conv2d(luma, kernel).var())


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="export directories or short names")
    parser.add_argument("--labels", nargs="+", help="column titles (default: the model names)")
    parser.add_argument("--heldout", type=Path, default=HELDOUT)
    parser.add_argument("--out", type=Path, default=None, help="write the picture here (PNG)")
    args = parser.parse_args(argv)
    labels = args.labels or args.models
    if len(labels) != len(args.models):
        parser.error("give one label per model")
    photos = sorted(p for p in args.heldout.iterdir() if p.is_file())
    rows: dict[str, list[np.ndarray]] = {stem: [] for stem in CROPS}
    for label, model in zip(labels, args.models, strict=True):
        tok = vqtok.load(model)
        ratios, crop_psnrs = [], []
        for photo in photos:
            original, rec = reconstruct(tok, photo)
            ratios.append(detail(rec) / detail(original))
            if photo.stem in CROPS:
                top, left = CROPS[photo.stem]
                window = (slice(top, top + WINDOW), slice(left, left + WINDOW))
                if not rows[photo.stem]:
                    rows[photo.stem].append(original[window])
                rows[photo.stem].append(rec[window])
                crop_psnrs.append(psnr_u8(original[window], rec[window]))
        print(
            f"{label:12} detail ratio {np.mean(ratios):.3f} (15 photos; 1 = all fine detail kept)   "
            f"PSNR over the {len(crop_psnrs)} crops {np.mean(crop_psnrs):.2f} dB"
        )
    if args.out:
        write_grid(rows, ["original", *labels], args.out)
        print(f"wrote {args.out}")
    return 0


def write_grid(rows: dict[str, list[np.ndarray]], titles: list[str], out: Path, scale: int = 2) -> None:
    """Rows of equal-size uint8 windows -> one PNG with a title bar, each window enlarged ``scale`` x."""
    cell, gap, bar = WINDOW * scale, 4, 18
    grid = [row for row in rows.values() if row]
    width = len(titles) * (cell + gap) - gap
    canvas = Image.new("RGB", (width, bar + len(grid) * (cell + gap) - gap), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles):
        draw.text((j * (cell + gap) + 4, 3), title, fill="black")
    for i, row in enumerate(grid):
        for j, window in enumerate(row):
            tile = Image.fromarray(window).resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (j * (cell + gap), bar + i * (cell + gap)))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
