"""Held-out evaluation data: real photographs that ship inside common Python packages, never used in training.

    pip install -e ".[bench]"                         # scikit-image and scikit-learn carry the photos
    python -m bench.heldout data/heldout              # writes photos/ and clips/
    vqtok eval data/heldout/photos                    # the default image tokenizer on the photos
    vqtok eval data/heldout/clips --model video       # the video tokenizer on camera moves over them

photos/: the 15 photographs of natural scenes and objects in scikit-image's and scikit-learn's data folders,
byte-for-byte (medical, microscopy, synthetic and tiny images are left out; the list below is fixed in advance).
clips/: two camera moves over each photo, a pan and a zoom, 17 frames of 256x256 at 24 fps, lossless FFV1 in
Matroska, so the figures measure the tokenizer and not a video codec. Frames are resampled from the photo with
sub-pixel offsets (Lanczos to the working scale, then bicubic), like a camera moving smoothly.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# name -> (package, file inside the package). Natural photographs only, chosen before any model was measured.
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "brick": ("skimage", "data/brick.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "coins": ("skimage", "data/coins.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "moon": ("skimage", "data/moon.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
CLIP_FRAMES, CLIP_SIDE, CLIP_FPS = 17, 256, 24
_PAN_SHORT_SIDE = 320  # pans: the photo is scaled so its shorter side is this, and a 256 window travels over it
_PAN_TRAVEL = 64  # pixels the window moves over the clip (4 per frame)
_ZOOM = (0.95, 0.6)  # zooms: the window's side, as a fraction of the shorter side, at the first and last frame


def photo_path(package: str, relative: str) -> Path:
    """Where an installed package keeps a data file (found without importing the package)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install -e '.[bench]'")
    return Path(spec.submodule_search_locations[0]) / relative


def _window(photo: Image.Image, left: float, top: float, side: float) -> np.ndarray:
    """The square window (left, top, side) of photo, in photo pixels (sub-pixel), as a 256x256 uint8 frame."""
    scale = side / CLIP_SIDE
    data = (scale, 0.0, left, 0.0, scale, top)  # output (x, y) samples the photo at (left + x s, top + y s)
    frame = photo.transform((CLIP_SIDE, CLIP_SIDE), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    return np.asarray(frame)


def _resized(photo: Image.Image, short_side: int) -> Image.Image:
    w, h = photo.size
    s = short_side / min(w, h)
    return photo.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)


def pan(photo: Image.Image, direction: int) -> list[np.ndarray]:
    """A pan: a 256x256 window moving 64 px right, down, or diagonally (direction 0, 1, 2) over the photo."""
    work = _resized(photo, _PAN_SHORT_SIDE)
    dx, dy = [(1.0, 0.0), (0.0, 1.0), (0.7071, 0.7071)][direction % 3]
    x0, y0 = (work.width - CLIP_SIDE - _PAN_TRAVEL * dx) / 2, (work.height - CLIP_SIDE - _PAN_TRAVEL * dy) / 2
    steps = np.linspace(0.0, _PAN_TRAVEL, CLIP_FRAMES)
    return [_window(work, x0 + t * dx, y0 + t * dy, CLIP_SIDE) for t in steps]


def zoom(photo: Image.Image) -> list[np.ndarray]:
    """A zoom into the centre: the window shrinks from 95% to 60% of the shorter side (geometrically)."""
    work = _resized(photo, round(CLIP_SIDE / _ZOOM[1]))
    short = min(work.size)
    sides = short * np.geomspace(*_ZOOM, CLIP_FRAMES)
    return [_window(work, (work.width - s) / 2, (work.height - s) / 2, s) for s in sides]


def write_lossless(path: Path, frames: list[np.ndarray], fps: int = CLIP_FPS) -> None:
    """RGB frames -> FFV1 (lossless) in Matroska."""
    tmp = path.with_name(f".{path.name}.tmp")
    with av.open(str(tmp), "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = CLIP_SIDE, CLIP_SIDE, "bgr0"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.replace(path)


def build(out: Path) -> None:
    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for i, (name, (package, relative)) in enumerate(PHOTOS.items()):
        source = photo_path(package, relative)
        shutil.copyfile(source, out / "photos" / f"{name}{source.suffix}")
        with Image.open(source) as img:
            photo = img.convert("RGB")
        write_lossless(out / "clips" / f"{name}_pan.mkv", pan(photo, i))
        write_lossless(out / "clips" / f"{name}_zoom.mkv", zoom(photo))
    print(f"{len(PHOTOS)} photos in {out / 'photos'}, {2 * len(PHOTOS)} clips in {out / 'clips'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write photos/ and clips/ into")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
