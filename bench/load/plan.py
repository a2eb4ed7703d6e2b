"""What clients send: the seeded files and requests of the mix (valid ones by weight, invalid ones the app must
refuse), and the checks that an answer is right."""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

UNKNOWN_MODEL = "no_such_model"
VALID_MIX = {"image_png": 0.25, "image_jpeg": 0.20, "video": 0.25, "decode_image": 0.15, "decode_video": 0.15}
# What the app's refusal of each invalid kind says (tests/test_load.py checks the messages against these).
EXPECTED_REFUSAL = {
    "corrupt_png": "truncated or corrupt",
    "text_as_png": "not an image format",
    "truncated_mp4": "truncated",
    "foreign_tokens": "which this app does not have",
    "garbage_tokens": "not a readable vqtok token file",
    "unknown_image_model": f"unknown model '{UNKNOWN_MODEL}'",
    "unknown_video_model": f"{UNKNOWN_MODEL} is not in the list of choices",
}


@dataclass(frozen=True)
class Request:
    """One kind of request: an endpoint, the files to send (one picked per request) and how to judge an answer."""

    kind: str
    valid: bool
    endpoint: str  # /tokenize_image, /tokenize_video or /decode_tokens
    files: tuple[Path, ...]
    model: str | None  # the model argument; None for /decode_tokens, which takes the file only
    check: Callable[[Path, Any], str | None] | None = None  # (file sent, answer) -> what is wrong, None if right

    def args(self, path: Path) -> tuple:
        from gradio_client import handle_file

        return (handle_file(str(path)),) if self.model is None else (handle_file(str(path)), self.model)


@dataclass(frozen=True)
class Plan:
    """Every kind of request, and the seeded choice among them."""

    valid: list[Request]
    invalid: list[Request]
    invalid_fraction: float

    def pick(self, rng: random.Random) -> tuple[Request, Path]:
        if self.invalid and rng.random() < self.invalid_fraction:
            request = rng.choice(self.invalid)
        else:
            request = rng.choices(self.valid, weights=[VALID_MIX[r.kind] for r in self.valid])[0]
        return request, rng.choice(request.files)


def served_names(args: argparse.Namespace) -> tuple[str, str]:
    """The names ``vqtok demo`` gives the two models (their directory names, made unique)."""
    from vqtok.export import resolve_export

    image, video = (resolve_export(m).resolve() for m in (args.model, args.video_model))
    if image == video:
        return image.name, image.name
    return image.name, video.name if video.name != image.name else f"{video.name} (2)"


def smooth_image(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (h, w, 3): low-frequency noise plus a gradient, like a photo more than like noise."""
    small = rng.integers(0, 256, (max(2, h // 12), max(2, w // 12), 3), dtype=np.uint8)
    noise = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    ramp = np.linspace(0, 60, w, dtype=np.float32)[None, :, None]
    return np.clip(noise * 0.8 + ramp, 0, 255).astype(np.uint8)


def make_plan(args: argparse.Namespace, folder: Path) -> Plan:
    """Write the files clients send (seeded), and the requests that send them."""
    import vqtok
    from vqtok.io.video import read_video, write_video
    from vqtok.token_file import TokenItem, save_tokens

    folder.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    image_name, video_name = served_names(args)
    image_tok, video_tok = vqtok.load(args.model), vqtok.load(args.video_model)
    sizes: dict[Path, tuple[int, ...]] = {}
    for suffix, shapes in ((".png", [(48, 64), (96, 96), (120, 160)]), (".jpg", [(96, 128), (192, 256)])):
        for h, w in shapes:
            path = folder / f"photo_{h}x{w}{suffix}"
            Image.fromarray(smooth_image(h, w, rng)).save(path, quality=90)
            sizes[path] = (h, w)
    clip = folder / "clip.mp4"
    base = smooth_image(48, 96, rng)
    write_video(clip, np.stack([base[:, 3 * t : 3 * t + 64] for t in range(9)]), fps=12.0)  # a pan, (9, 48, 64, 3)
    frames = read_video(clip)[0]  # what the server will encode, (9, 48, 64, 3)
    sizes[clip] = frames.shape[:3]
    first = folder / "photo_48x64.png"
    image_tokens, video_tokens = folder / "image.tokens.safetensors", folder / "video.tokens.safetensors"
    with Image.open(first) as img:
        ids = image_tok.encode(np.asarray(img.convert("RGB")))[0].cpu()  # (h, w)
    item = TokenItem(ids, (48, 64), first.name)
    save_tokens(image_tokens, [item], image_name, image_tok.fingerprint, image_tok.codebook_size)
    ids = video_tok.encode(frames)[0].cpu()  # (t, h, w)
    item = TokenItem(ids, tuple(frames.shape[:3]), clip.name, fps=12.0)
    save_tokens(video_tokens, [item], video_name, video_tok.fingerprint, video_tok.codebook_size)
    images = [p for p in sizes if p.suffix == ".png"], [p for p in sizes if p.suffix == ".jpg"]
    f, r = video_tok.downsample, video_tok.temporal_downsample
    valid = [
        Request("image_png", True, "/tokenize_image", tuple(images[0]), image_name, image_check(image_tok, sizes)),
        Request("image_jpeg", True, "/tokenize_image", tuple(images[1]), image_name, image_check(image_tok, sizes)),
        Request("video", True, "/tokenize_video", (clip,), video_name, video_check(f, r, sizes)),
        Request("decode_image", True, "/decode_tokens", (image_tokens,), None, decode_check("image")),
        Request("decode_video", True, "/decode_tokens", (video_tokens,), None, decode_check("video")),
    ]
    return Plan(valid, invalid_requests(folder, first, clip, image_name, video_name, rng), args.invalid_fraction)


def invalid_requests(
    folder: Path, image: Path, clip: Path, image_name: str, video_name: str, rng: np.random.Generator
) -> list[Request]:
    """Files and arguments the app must refuse with a message."""
    import torch

    from vqtok.io.video import write_video
    from vqtok.token_file import TokenItem, save_tokens

    png = image.read_bytes()
    (corrupt := folder / "cut.png").write_bytes(png[: len(png) // 2])
    (text := folder / "notes.png").write_text("a text file with a picture's name\n")
    full = folder / "full.mp4"
    write_video(full, rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8), fps=12.0)
    (truncated := folder / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    foreign = folder / "foreign.tokens.safetensors"  # what a model the server lacks writes: its own fingerprint
    item = TokenItem(ids=torch.zeros(6, 8, dtype=torch.long), size=(48, 64), source="elsewhere.png")
    save_tokens(foreign, [item], "elsewhere", "0123456789abcdef", 512)
    (garbage := folder / "garbage.safetensors").write_bytes(rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
    return [
        Request("corrupt_png", False, "/tokenize_image", (corrupt,), image_name),
        Request("text_as_png", False, "/tokenize_image", (text,), image_name),
        Request("truncated_mp4", False, "/tokenize_video", (truncated,), video_name),
        Request("foreign_tokens", False, "/decode_tokens", (foreign,), None),
        Request("garbage_tokens", False, "/decode_tokens", (garbage,), None),
        Request("unknown_image_model", False, "/tokenize_image", (image,), UNKNOWN_MODEL),
        Request("unknown_video_model", False, "/tokenize_video", (clip,), UNKNOWN_MODEL),
    ]


def image_check(tok: Any, sizes: dict[Path, tuple[int, ...]]) -> Callable[[Path, Any], str | None]:  # noqa: ANN401
    """An answer of /tokenize_image is right when its figures state the input's size and token grid, and its token
    file and a reconstruction of the input's size arrived."""
    f = tok.downsample

    def check(path: Path, answer: Any) -> str | None:  # noqa: ANN401
        h, w = sizes[path]
        figures = answer[6]
        want = {"input_size": [h, w], "token_grid": [math.ceil(h / f), math.ceil(w / f)]}
        got = {k: figures.get(k) for k in want}
        if got != want:
            return f"figures {got}, expected {want}"
        if not Path(answer[7]).is_file():
            return "no token file"
        with Image.open(answer[8]) as reconstruction:
            return None if reconstruction.size == (w, h) else f"reconstruction of size {reconstruction.size}"

    return check


def video_check(f: int, r: int, sizes: dict[Path, tuple[int, ...]]) -> Callable[[Path, Any], str | None]:
    """An answer of /tokenize_video is right when its figures state the clip's size and token grid, and its token
    file and reconstruction arrived."""

    def check(path: Path, answer: Any) -> str | None:  # noqa: ANN401
        t, h, w = sizes[path]
        figures = answer[6]
        grid = [1 + math.ceil((t - 1) / r), math.ceil(h / f), math.ceil(w / f)]
        got = {k: figures.get(k) for k in ("input_size", "token_grid")}
        if got != {"input_size": [t, h, w], "token_grid": grid}:
            return f"figures {got}, expected size {[t, h, w]}, grid {grid}"
        video = answer[1]["video"] if isinstance(answer[1], dict) else answer[1]
        return None if Path(answer[7]).is_file() and Path(video).is_file() else "no token file or reconstruction"

    return check


def decode_check(what: str) -> Callable[[Path, Any], str | None]:
    """An answer of /decode_tokens is right when it decoded the one image (or video) the file holds."""

    def check(path: Path, answer: Any) -> str | None:  # noqa: ANN401
        gallery, video, files, summary = answer
        ok = len(files) == 1 and (len(gallery or []) == 1 if what == "image" else video is not None)
        return None if ok and f"1 {what}(s)" in summary else f"decoded {len(files)} file(s): {summary[:200]!r}"

    return check
