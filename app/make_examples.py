"""Write the app's example files (app/examples/): procedural images and a procedural clip, made by vqtok's own
synthetic data source (:mod:`vqtok.synthetic`), so the app ships examples without any outside data. Run from the
checkout (needs the ``app`` and ``video`` extras, not Lightning): ``python -m app.make_examples``. The files are
committed; the app only reads them.
"""

from __future__ import annotations

import numpy as np

from vqtok.io.images import save_image
from vqtok.io.video import write_video
from vqtok.synthetic import procedural_video_frames, render_dead_leaves

from .app import EXAMPLES_DIR


def main() -> None:
    EXAMPLES_DIR.mkdir(exist_ok=True)
    for seed, size in ((7, 256), (11, 384)):
        save_image(EXAMPLES_DIR / f"dead_leaves_{seed}.png", render_dead_leaves(np.random.default_rng(seed), size))
    frames = procedural_video_frames(seed=3, num_frames=49, height=144, width=256, fps=24.0)
    write_video(EXAMPLES_DIR / "sprites_3.mp4", frames, fps=24.0, crf=20, preset="veryslow")


if __name__ == "__main__":
    main()
