"""A contact sheet of camera-move training clips, and how fast they are made.

    python -m tools.camera_moves_sheet data/training/pool --out docs/figures/camera_moves.jpg

Writes one JPEG: a row per clip (training draws of :class:`~vqtok.training.data.camera_moves.CameraMoves`, seeds
0, 1, 2, ...), columns first | middle | last frame, and the clip's camera path in words. Prints the clips per
second of the data set on one thread for the sizes the video recipes use (the median of a few rounds: the machine
is shared).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vqtok.io.atomic import atomic_file
from vqtok.training.data.camera_moves import CameraMoves, draw_path
from vqtok.training.data.sampling import SampleKey


def contact_sheet(dataset: CameraMoves, rows: int, gap: int = 4, caption: int = 190) -> Image.Image:
    """Rows of (first, middle, last) frames of training clips ``SampleKey(i * 7 % n, i)``, white gaps between,
    and each clip's camera path in words on the right."""
    S, T = dataset.image_size, dataset.num_frames
    sheet = np.full((rows * (S + gap) - gap, 3 * (S + gap) + caption, 3), 255, dtype=np.uint8)
    captions = []
    for r in range(rows):
        key = SampleKey(r * 7 % len(dataset), r)
        clip = dataset[key]
        assert clip is not None, "a photo of the pool could not be read"
        frames = ((clip + 1.0) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 3, 0).numpy()  # (T, S, S, 3)
        for c, t in enumerate((0, T // 2, T - 1)):
            sheet[r * (S + gap) : r * (S + gap) + S, c * (S + gap) : c * (S + gap) + S] = frames[t]
        path = draw_path(dataset.motion, T, key.generator())  # the clip's path: the key's first draw
        captions.append(path.describe(S).replace(", ", "\n"))
    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    for r, text in enumerate(captions):
        draw.multiline_text((3 * (S + gap) + 4, r * (S + gap) + 4), text, fill=(0, 0, 0), spacing=3)
    draw.text((3 * (S + gap) + 4, r * (S + gap) + S - 14), f"frames 0, {T // 2}, {T - 1}", fill=(90, 90, 90))
    return image


def clips_per_second(root: Path, num_frames: int, image_size: int, clips: int = 24, rounds: int = 3) -> float:
    """Median over ``rounds`` of training clips made per second on the current thread count."""
    dataset = CameraMoves.from_folder(root, num_frames, image_size)
    rates = []
    for r in range(rounds):
        start = time.perf_counter()
        for i in range(clips):
            dataset[SampleKey(i % len(dataset), 1000 * r + i)]
        rates.append(clips / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder of photos (data/training/pool)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/camera_moves.jpg"))
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)  # what one DataLoader worker has
    sheet = contact_sheet(CameraMoves.from_folder(args.photos, args.frames, args.size), args.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as tmp:
        sheet.save(tmp, format="JPEG", quality=85)
    print(f"{args.out}: {args.rows} clips, first | middle | last frame, {args.out.stat().st_size // 1024} KB")
    for T, S in ((9, 64), (9, 128), (17, 128), (17, 256)):
        print(f"T={T:2d} S={S:3d}: {clips_per_second(args.photos, T, S):6.1f} clips/s (one thread)")


if __name__ == "__main__":
    main()
