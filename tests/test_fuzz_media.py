"""Fuzzing of the image and video FILES handed to vqtok: every input either decodes to a well-formed result or is
refused with a :class:`~vqtok.errors.FileFormatError` whose message names the file; never another exception, never a
hang, never a crash.

The corpus is generated at test time and is the same on every run (seeded numpy generators; hypothesis with
``derandomize=True`` and no example database):

- images: valid 24x32 files written by Pillow (PNG RGB, 16-bit grey PNG, palette PNG with transparency, JPEG,
  progressive JPEG, GIF, lossy and lossless WebP, TIFF raw and LZW, BMP); each cut at about 30 points (0 and 1 byte
  included) and bit-flipped with 30 seeded sets of 1-4 flips; lying headers (PNG IHDR, GIF screen, BMP, JPEG SOF and
  TIFF sizes patched huge or to 0, checksums recomputed); unsupported formats (text, PDF, EPS/PostScript, SVG, zip,
  HTML, JSON, gzip, MP4, MPEG-TS); paths that are not regular files (zero bytes, directories, symlink loops,
  dangling symlinks, a FIFO, a device); hypothesis-driven splices (cut, flip, overwrite, insert, delete, duplicate).
- videos: valid 6-frame 16x24 files written with PyAV (MP4 H.264 with its index first, as vqtok's write_video
  writes it, and last; MKV lossless H.264; WebM VP9; AVI MPEG-4; MPEG-TS H.264), cut and bit-flipped the same way;
  lying headers (a Y4M header declaring 5000x5000 or 20000x20000, an MP4 whose stsd/tkhd sizes say 6000x6000, a codec
  id no decoder knows, a frame size that changes mid-stream); images, text and a zip named as videos; paths that are
  not regular files; hypothesis splices.

Entry points: images through ``read_image`` and ``Tokenizer.encode(path)`` of the shipped "tiny" export; videos
through ``probe_video``, ``read_video``, ``sample_clip`` and ``Tokenizer.encode(path)`` of "video_tiny"; a handful
of both through ``vqtok encode FILE --model ... --out OUT`` (exit code 2, a one-line message, no output file).

Run with ``-s`` to see one summary line per category: inputs tried, decoded, refused with a FileFormatError (an
image counts as decoded when ``read_image`` returns pixels, a video when ``read_video`` returns frames).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import signal
import struct
import subprocess
import traceback
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import EpsImagePlugin, Image
from video_files import random_frames, write_audio_only, write_growing_h264, write_test_video

import vqtok
from vqtok.cli.main import main
from vqtok.errors import FileFormatError
from vqtok.io.images import DEFAULT_MAX_PIXELS, read_image
from vqtok.io.video import DEFAULT_MAX_FRAME_PIXELS, VideoInfo, iter_frames, probe_video, read_video, sample_clip

CALL_SECONDS = 30  # a hang guard on one call (a shared 2-core machine can be slow), not a timing assertion
IMAGE_SIZE = (24, 32)  # (H, W) of every valid image in the corpus
VIDEO_SHAPE = (6, 16, 24)  # (T, H, W) of every valid video in the corpus
CUT_POINTS = 30  # truncation points per file, besides 0 and 1 byte
FLIP_SETS = 30  # seeded sets of 1-4 bit flips per file

# Pillow warns about the corrupt metadata of fuzzed TIFF files; the oracle is about what read_image does.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
    pytest.mark.usefixtures("one_torch_thread"),
]

TALLY: dict[str, Counter] = {}  # category -> Counter(tried=, decoded=, refused=), printed at the end of the module


# --- the oracle --------------------------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by :func:`deadline`: a BaseException, so that no ``except Exception`` in vqtok can turn it into a
    refusal."""


@contextmanager
def deadline(seconds: float = CALL_SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (SIGALRM also interrupts a blocking ``open``)."""

    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Sweep:
    """Runs entry points over the inputs of one category, checks the oracle, counts outcomes and collects every
    violation, so that one run reports all the inputs that break it."""

    def __init__(self, category: str) -> None:
        self.tally = TALLY.setdefault(category, Counter(tried=0, decoded=0, refused=0))
        self.problems: list[str] = []

    def call(self, path: Path, name: str, fn: Callable[[Path], object]) -> object:
        """``fn(path)`` under the hang guard -> its result, or the FileFormatError it raised, or None after a
        violation (any other exception, a hang, a message that does not name the file)."""
        try:
            with deadline():
                return fn(path)
        except FileFormatError as e:
            message = str(e)
            self.expect(str(path) in message, path, f"{name}: the message does not name the file: {message}")
            self.expect("\n" not in message, path, f"{name}: the message is not one line: {message!r}")
            return e
        except Hang:
            self.problems.append(f"{path.name}: {name} did not return within {CALL_SECONDS} s")
        except Exception as e:
            where = traceback.extract_tb(e.__traceback__)[-1]
            self.problems.append(
                f"{path.name}: {name} raised {type(e).__name__}, not FileFormatError, at "
                f"{Path(where.filename).name}:{where.lineno}: {e}"
            )
        return None

    def expect(self, condition: bool, path: Path, what: str) -> None:
        if not condition:
            self.problems.append(f"{path.name}: {what}")

    def count(self, outcome: object) -> None:
        self.tally["tried"] += 1
        self.tally["decoded"] += not isinstance(outcome, FileFormatError | type(None))
        self.tally["refused"] += isinstance(outcome, FileFormatError)

    def finish(self, minimum: int) -> None:
        """Fail with every violation seen; and unless the category saw at least ``minimum`` inputs."""
        assert not self.problems, f"{len(self.problems)} violations:\n" + "\n".join(self.problems[:40])
        assert self.tally["tried"] >= minimum, f"the corpus shrank to {self.tally['tried']} inputs"


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    print()
    for category, c in TALLY.items():
        print(f"fuzz {category}: {c['tried']} tried, {c['decoded']} decoded, {c['refused']} refused (FileFormatError)")


def check_image(sweep: Sweep, path: Path, tok: vqtok.Tokenizer) -> object:
    """read_image and Tokenizer.encode on one file: well-formed pixels and ids, or the same refusal from both."""
    x = sweep.call(path, "read_image", read_image)
    ids = sweep.call(path, "Tokenizer.encode", tok.encode)
    if isinstance(x, np.ndarray):
        ok = x.dtype == np.float32 and x.ndim == 3 and x.shape[2] == 3 and min(x.shape[:2]) >= 1
        sweep.expect(ok and bool(np.isfinite(x).all()) and x.min() >= 0.0 and x.max() <= 1.0, path,
                     f"read_image gave {x.dtype} {x.shape}")  # fmt: skip
        grid = (1, math.ceil(x.shape[0] / tok.downsample), math.ceil(x.shape[1] / tok.downsample))
        sweep.expect(valid_ids(ids, tok) and tuple(ids.shape) == grid, path, f"encode gave {describe(ids)}")
    elif isinstance(x, FileFormatError):
        same = isinstance(ids, FileFormatError) and str(ids) == str(x)
        sweep.expect(same, path, f"read_image refused it ({x}) but encode gave {describe(ids)}")
    sweep.count(x)
    return x


def check_video(sweep: Sweep, path: Path, tok: vqtok.Tokenizer) -> object:
    """probe_video, read_video, sample_clip and Tokenizer.encode on one file: uint8 frames of one shape and ids
    in [0, K), or FileFormatError; what probe refuses, encode refuses, in the same words unless it was the pixel
    limit (the tokenizer may apply its own)."""
    info = sweep.call(path, "probe_video", probe_video)
    video = sweep.call(path, "read_video", read_video)
    clip = sweep.call(path, "sample_clip", lambda p: sample_clip(p, 0.15, 3, fps=10.0))
    ids = sweep.call(path, "Tokenizer.encode", tok.encode)
    if isinstance(info, VideoInfo):
        ok = info.width >= 1 and info.height >= 1 and math.isfinite(info.fps) and info.fps > 0
        sweep.expect(ok and math.isfinite(info.duration) and info.num_frames >= 1, path, f"probe gave {info}")
    elif isinstance(info, FileFormatError):
        same = isinstance(ids, FileFormatError) and (str(ids) == str(info) or "max_frame_pixels" in str(info))
        sweep.expect(same, path, f"probe_video refused it ({info}) but encode gave {describe(ids)}")
    if isinstance(video, tuple):
        frames, fps = video
        ok = frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] >= 1 and frames.shape[3] == 3
        sweep.expect(ok and fps > 0, path, f"read_video gave {frames.dtype} {frames.shape} at {fps} fps")
        if isinstance(info, VideoInfo):
            same = frames.shape[1:3] == (info.height, info.width)
            sweep.expect(same, path, f"read_video gave {frames.shape}, probe_video {info.height}x{info.width}")
    if isinstance(clip, np.ndarray):
        ok = clip.dtype == np.uint8 and clip.ndim == 4 and clip.shape[0] == 3 and clip.shape[3] == 3
        sweep.expect(ok, path, f"sample_clip gave {clip.dtype} {clip.shape}")
    if isinstance(ids, torch.Tensor):
        grid = None if not isinstance(info, VideoInfo) else (-(-info.height // 8), -(-info.width // 8))
        ok = valid_ids(ids, tok) and ids.ndim == 4 and ids.shape[0] == 1 and grid in (None, tuple(ids.shape[2:]))
        sweep.expect(ok, path, f"encode gave {describe(ids)} for frames of {info}")
    sweep.count(video)
    return video


def valid_ids(ids: object, tok: vqtok.Tokenizer) -> bool:
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.numel() == 0:
        return False
    return int(ids.min()) >= 0 and int(ids.max()) < tok.codebook_size


def describe(x: object) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor | np.ndarray) else repr(x)


# --- corpus builders ---------------------------------------------------------------------------------------------


def truncations(data: bytes) -> list[tuple[str, bytes]]:
    """``data`` cut at 0, 1, 2 and 8 bytes, at CUT_POINTS points spread over its length, and one byte short."""
    points = {0, 1, 2, 8, len(data) - 1, *np.linspace(16, len(data) - 2, CUT_POINTS).astype(int).tolist()}
    return [(f"cut{p}", data[:p]) for p in sorted(points)]


def bit_flips(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    """FLIP_SETS copies of ``data``, each with 1-4 bits flipped at seeded random positions."""
    variants = []
    for i in range(FLIP_SETS):
        rng = np.random.default_rng([seed, i])
        flipped = bytearray(data)
        for bit in rng.integers(0, len(data) * 8, rng.integers(1, 5)):
            flipped[bit // 8] ^= 1 << (bit % 8)
        variants.append((f"flip{i}", bytes(flipped)))
    return variants


def write_corpus(root: Path, stem: str, suffix: str, variants: list[tuple[str, bytes]]) -> list[Path]:
    paths = []
    for tag, data in variants:
        path = root / f"{stem}-{tag}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def encoded_image(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def valid_images() -> dict[str, tuple[str, bytes]]:
    """name -> (suffix, bytes) of one small valid file per format and mode, all IMAGE_SIZE."""
    rng = np.random.default_rng(0)
    h, w = IMAGE_SIZE
    rgb = Image.fromarray(rng.integers(0, 256, (h // 4, w // 4, 3), np.uint8).repeat(4, 0).repeat(4, 1))
    grey16 = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))  # mode I;16
    palette = rgb.quantize(16)
    return {
        "png": (".png", encoded_image(rgb, "PNG")),
        "png16": (".png", encoded_image(grey16, "PNG")),
        "png_palette_alpha": (".png", encoded_image(palette, "PNG", transparency=0)),
        "jpeg": (".jpg", encoded_image(rgb, "JPEG", quality=90)),
        "jpeg_progressive": (".jpg", encoded_image(rgb, "JPEG", quality=90, progressive=True)),
        "gif": (".gif", encoded_image(rgb, "GIF")),
        "webp": (".webp", encoded_image(rgb, "WEBP", quality=80)),
        "webp_lossless": (".webp", encoded_image(rgb, "WEBP", lossless=True)),
        "tiff": (".tif", encoded_image(rgb, "TIFF")),
        "tiff_lzw": (".tif", encoded_image(rgb, "TIFF", compression="tiff_lzw")),
        "bmp": (".bmp", encoded_image(rgb, "BMP")),
    }


@pytest.fixture(scope="module")
def images() -> dict[str, tuple[str, bytes]]:
    return valid_images()


def png_with_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR width and height replaced and the chunk's CRC recomputed (so only the size lies)."""
    ihdr = bytearray(png[:33])  # signature (8), length (4), b"IHDR", width, height, 5 more bytes, CRC
    ihdr[16:24] = struct.pack(">II", width, height)
    ihdr[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr[12:29])))
    return bytes(ihdr) + png[33:]


def patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def tiff_with_size(tiff: bytes, width: int, height: int) -> bytes:
    """A little-endian TIFF with its ImageWidth (256) and ImageLength (257) tags rewritten."""
    assert tiff[:4] == b"II*\0"
    out = bytearray(tiff)
    ifd = struct.unpack_from("<I", out, 4)[0]
    for i in range(struct.unpack_from("<H", out, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", out, entry)
        if tag in (256, 257):
            struct.pack_into("<H" if kind == 3 else "<I", out, entry + 8, width if tag == 256 else height)
    return bytes(out)


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    sof = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    return patched(jpeg, sof + 5, ">HH", height, width)


def webp_lossless_with_size(webp: bytes, width: int, height: int) -> bytes:
    """VP8L keeps width-1 and height-1 in 14 bits each after its signature byte (so at most 16384x16384)."""
    assert webp[12:16] == b"VP8L" and webp[20] == 0x2F
    bits = struct.unpack_from("<I", webp, 21)[0]
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    return patched(webp, 21, "<I", bits)


# --- images: truncated, bit-flipped, spliced ---------------------------------------------------------------------


def test_the_valid_images_decode_as_written(images, tmp_path, image_tok):
    """The controls: every file the corpus is cut from decodes to its size (so a refusal below means something)."""
    sweep = Sweep("images: valid controls")
    for name, (suffix, data) in images.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        x = check_image(sweep, path, image_tok)
        sweep.expect(isinstance(x, np.ndarray) and x.shape == (*IMAGE_SIZE, 3), path, f"gave {describe(x)}")
    sweep.finish(minimum=11)


def test_truncated_images(images, tmp_path, image_tok):
    sweep = Sweep("images: truncated")
    for name, (suffix, data) in images.items():
        for path in write_corpus(tmp_path, name, suffix, truncations(data)):
            outcome = check_image(sweep, path, image_tok)
            size = path.stat().st_size
            if size == 0:
                sweep.expect("empty (0 bytes)" in str(outcome), path, f"0 bytes gave {outcome}")
            if size >= 16:  # the whole signature is there: the message must not deny that it is an image format
                generic = "not an image format" in str(outcome)
                sweep.expect(not generic, path, f"a cut {name} file is called no image: {outcome}")
    sweep.finish(minimum=11 * (CUT_POINTS + 3))


def test_bit_flipped_images(images, tmp_path, image_tok):
    sweep = Sweep("images: bit-flipped")
    for seed, (name, (suffix, data)) in enumerate(images.items()):
        for path in write_corpus(tmp_path, name, suffix, bit_flips(data, seed)):
            check_image(sweep, path, image_tok)
    sweep.finish(minimum=11 * FLIP_SETS)


@st.composite
def splices(draw, names: list[str]) -> tuple[str, list[tuple]]:
    """A source file name and 1-4 edits: cut, flip, overwrite, insert, delete or duplicate a run of bytes."""
    edit = st.tuples(
        st.sampled_from(["cut", "flip", "overwrite", "insert", "delete", "duplicate"]),
        st.floats(0, 1),  # where, as a fraction of the length
        st.integers(1, 64),  # how many bytes (or which bit, for a flip)
        st.binary(min_size=1, max_size=16),
    )
    return draw(st.sampled_from(names)), draw(st.lists(edit, min_size=1, max_size=4))


def splice(data: bytes, edits: list[tuple]) -> bytes:
    for kind, where, n, payload in edits:
        i = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "cut":
            data = data[:i]
        elif kind == "flip" and data:
            data = data[:i] + bytes([data[i] ^ (1 << n % 8)]) + data[i + 1 :]
        elif kind == "overwrite":
            data = data[:i] + payload + data[i + len(payload) :]
        elif kind == "insert":
            data = data[:i] + payload + data[i:]
        elif kind == "delete":
            data = data[:i] + data[i + n :]
        elif kind == "duplicate":
            data = data[: i + n] + data[i : i + n] + data[i + n :]
    return data


SPLICE_SETTINGS = settings(  # the same examples on every run, nothing stored between runs
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def splice_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("splices")


def run_splices(
    sweep: Sweep, corpus: dict[str, tuple[str, bytes]], folder: Path, check_file: Callable[[Path], None], examples: int
) -> None:
    """Hypothesis splices of the files in ``corpus`` (name -> (suffix, bytes)), each written to ``folder`` and
    handed to ``check_file``; a problem makes hypothesis shrink to the smallest edit."""
    counter = iter(range(10**9))

    @settings(SPLICE_SETTINGS, max_examples=examples)
    @given(splices(sorted(corpus)))
    def check(case):
        name, edits = case
        suffix, data = corpus[name]
        path = folder / f"{name}-{next(counter)}{suffix}"
        path.write_bytes(splice(data, edits))
        before = len(sweep.problems)
        check_file(path)
        assert len(sweep.problems) == before, sweep.problems[-1]

    check()


def test_spliced_images(images, splice_dir, image_tok):
    sweep = Sweep("images: hypothesis splices")
    run_splices(sweep, images, splice_dir, lambda path: check_image(sweep, path, image_tok), examples=150)
    sweep.finish(minimum=150)


# --- images: lying headers and decompression bombs ---------------------------------------------------------------


def lying_images(images: dict[str, tuple[str, bytes]]) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, expected outcome) of valid files whose header states another size. Outcomes: "bomb"
    (refused from the header by the default limit), "refused" (any other FileFormatError), "any" (also decoded)."""
    png, gif, bmp = images["png"][1], images["gif"][1], images["bmp"][1]
    jpeg, tiff, webp = images["jpeg"][1], images["tiff"][1], images["webp_lossless"][1]
    return [
        ("png-20000x20000.png", png_with_size(png, 20000, 20000), "bomb"),
        ("png-max.png", png_with_size(png, 2**31 - 1, 2**31 - 1), "bomb"),
        ("png-wide.png", png_with_size(png, 2**31 - 1, 1), "bomb"),
        ("png-4000x4000.png", png_with_size(png, 4000, 4000), "refused"),  # within the limit: fails decoding
        ("png-width0.png", png_with_size(png, 0, 24), "refused"),
        ("png-height0.png", png_with_size(png, 32, 0), "refused"),
        ("png-size-bad-crc.png", patched(png, 16, ">II", 20000, 20000), "refused"),  # IHDR's CRC fails first
        ("gif-screen-65535.gif", patched(gif, 6, "<HH", 65535, 65535), "bomb"),
        ("gif-screen-0.gif", patched(gif, 6, "<HH", 0, 0), "any"),  # Pillow takes the frame's size instead
        ("bmp-100000.bmp", patched(bmp, 18, "<ii", 100000, 100000), "bomb"),
        ("bmp-top-down-100000.bmp", patched(bmp, 18, "<ii", 100000, -100000), "bomb"),
        ("bmp-4000x4000.bmp", patched(bmp, 18, "<ii", 4000, 4000), "refused"),  # within the limit: fails decoding
        ("bmp-width0.bmp", patched(bmp, 18, "<ii", 0, 24), "refused"),
        ("bmp-negative-width.bmp", patched(bmp, 18, "<ii", -32, 24), "refused"),
        ("jpeg-65535.jpg", jpeg_with_size(jpeg, 65535, 65535), "bomb"),
        ("jpeg-height0.jpg", jpeg_with_size(jpeg, 32, 0), "refused"),
        ("tiff-65535.tif", tiff_with_size(tiff, 65535, 65535), "bomb"),
        ("tiff-width0.tif", tiff_with_size(tiff, 0, 24), "refused"),
        ("webp-4000x4000.webp", webp_lossless_with_size(webp, 4000, 4000), "refused"),  # within the limit
    ]


def test_lying_image_headers_are_refused_and_bombs_before_decoding(images, tmp_path, image_tok):
    """A header that declares more than DEFAULT_MAX_PIXELS is refused as a bomb (the message names the size and
    the limit); the others are refused while decoding the pixels that are not there, or (a GIF whose screen is
    0x0) decoded at the size of their frame."""
    sweep = Sweep("images: lying headers")
    bomb = f"pixels is more than the limit of {DEFAULT_MAX_PIXELS} (possible decompression bomb)"
    for name, data, expected in lying_images(images):
        path = tmp_path / name
        path.write_bytes(data)
        outcome = check_image(sweep, path, image_tok)
        if expected != "any":
            sweep.expect(isinstance(outcome, FileFormatError), path, f"a lying header was read: {describe(outcome)}")
        if expected == "bomb":
            sweep.expect(bomb in str(outcome), path, f"not refused as a bomb: {outcome}")
    sweep.finish(minimum=19)


def test_a_header_declared_20000x20000_png_is_refused_by_default(images, tmp_path, image_tok, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(images["png"][1], 20000, 20000))
    assert path.stat().st_size < 2000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own limit would refuse to show the size
    with Image.open(path) as img:  # the size comes from the header alone
        assert img.size == (20000, 20000)
    monkeypatch.undo()
    assert DEFAULT_MAX_PIXELS is not None and DEFAULT_MAX_PIXELS < 20000 * 20000  # the limit is on by default
    words = f"20000x20000 = 400000000 pixels is more than the limit of {DEFAULT_MAX_PIXELS}"
    for read in (read_image, image_tok.encode):
        with deadline(), pytest.raises(FileFormatError, match=words) as e:
            read(path)
        assert str(path) in str(e.value) and "decompression bomb" in str(e.value) and "max_pixels" in str(e.value)


def test_the_pixel_limit_is_configurable_and_checked_before_decoding(images, tmp_path):
    """A 6-megapixel header on a file of a few hundred bytes: refused below the limit, and at the limit it gets as
    far as decoding and fails for want of pixel data, so the refusal came from the header alone."""
    path = tmp_path / "claims-3000x2000.png"
    path.write_bytes(png_with_size(images["png"][1], 3000, 2000))
    with deadline(), pytest.raises(FileFormatError, match="limit of 5999999 .possible decompression bomb"):
        read_image(path, max_pixels=3000 * 2000 - 1)
    for limit in (3000 * 2000, None):
        with deadline(), pytest.raises(FileFormatError, match="truncated or corrupt") as e:
            read_image(path, max_pixels=limit)
        assert "decompression bomb" not in str(e.value)


# --- images: unsupported formats and paths that are not files ----------------------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"


def unsupported_files(images: dict[str, tuple[str, bytes]]) -> dict[str, bytes]:
    """File name -> bytes of files that are not images vqtok decodes (whatever their suffix says)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("inside.png", images["png"][1])
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    return {
        "notes.txt": b"just some text, not a picture\n" * 4,
        "text.png": b"just some text, not a picture\n" * 4,
        "document.pdf": pdf,
        "document.png": pdf,
        "figure.eps": EPS,
        "figure-eps.png": EPS,
        "page.ps": b"%!PS-Adobe-3.0\n/Times-Roman findfont 12 scalefont setfont 72 72 moveto (hi) show showpage\n",
        "drawing.svg": svg,
        "drawing.png": svg,
        "archive.zip": archive.getvalue(),
        "archive.png": archive.getvalue(),
        "page.html": b"<!DOCTYPE html><html><body><img src='x.png'></body></html>\n",
        "data.json": b'{"width": 32, "height": 24, "pixels": []}\n',
        "one-byte.png": b"\x89",
        "png-signature-only.png": images["png"][1][:8],
        "gzipped-png.png": gzip.compress(images["png"][1]),
    }


def test_unsupported_formats_are_refused(images, videos, tmp_path, image_tok):
    sweep = Sweep("images: unsupported formats")
    files = {**unsupported_files(images), "clip-renamed.png": videos["mp4"][1], "stream-renamed.png": videos["ts"][1]}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        outcome = check_image(sweep, path, image_tok)
        sweep.expect(isinstance(outcome, FileFormatError), path, f"was decoded: {describe(outcome)}")
        if data.startswith(b"%!PS"):
            sweep.expect("EPS, a format vqtok does not read" in str(outcome), path, f"{outcome}")
    sweep.finish(minimum=18)


def test_an_eps_file_never_runs_ghostscript(tmp_path, monkeypatch, image_tok):
    """A fake ``gs`` first on PATH records every call: Pillow alone runs it to load an EPS file; vqtok must not."""
    calls = tmp_path / "gs-calls.txt"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ "$1" = "--version" ] && exit 0\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # forget any earlier search for Ghostscript
    eps = tmp_path / "figure.eps"
    eps.write_bytes(EPS)
    with pytest.raises(subprocess.CalledProcessError), Image.open(eps) as img:
        img.load()  # the canary works: plain Pillow runs "gs" (which fails here)
    assert str(eps) in calls.read_text()
    calls.unlink()
    for read in (read_image, image_tok.encode):
        with deadline(), pytest.raises(FileFormatError, match="EPS, a format vqtok does not read"):
            read(eps)
    assert not calls.exists()


def not_regular_files(root: Path, valid: Path, suffix: str, device: bool) -> list[tuple[Path, str]]:
    """(path, words its refusal must hold) for paths that are not non-empty regular files."""
    root.mkdir()
    (root / f"zero{suffix}").write_bytes(b"")
    (root / f"directory{suffix}").mkdir()
    os.symlink(root / f"loop-b{suffix}", root / f"loop-a{suffix}")
    os.symlink(root / f"loop-a{suffix}", root / f"loop-b{suffix}")
    os.symlink(f"self{suffix}", root / f"self{suffix}")
    os.symlink(root / f"nowhere{suffix}", root / f"dangling{suffix}")
    os.symlink(root / "loop-dir", root / "loop-dir")
    os.mkfifo(root / f"fifo{suffix}")
    (root / "a-file").write_bytes(b"x")
    cases = [
        (root / f"zero{suffix}", "empty (0 bytes)"),
        (root / f"directory{suffix}", "directory, not a file"),
        (root / f"loop-a{suffix}", "symbolic link loop"),
        (root / f"self{suffix}", "symbolic link loop"),
        (root / "loop-dir" / f"inside{suffix}", "too many levels of symbolic links"),
        (root / f"dangling{suffix}", "broken symbolic link"),
        (root / f"missing{suffix}", "does not exist"),
        (root / f"fifo{suffix}", "not a regular file"),
        (root / "a-file" / f"inside{suffix}", "Not a directory"),
    ]
    if device and Path("/dev/null").exists():  # no suffix: only the image readers take it
        cases.append((Path("/dev/null"), "not a regular file"))
    os.symlink(valid, root / f"link-to-valid{suffix}")  # a control: symlinks to files are followed
    return cases


def test_paths_that_are_not_image_files_fail_fast_with_their_reason(images, tmp_path, image_tok):
    """Zero bytes, directories, symlink loops, dangling symlinks, a FIFO (opening it would block forever), a device:
    each is refused, under the hang guard, with words that say which it is."""
    valid = tmp_path / "valid.png"
    valid.write_bytes(images["png"][1])
    sweep = Sweep("images: not regular files")
    for path, words in not_regular_files(tmp_path / "paths", valid, ".png", device=True):
        outcome = check_image(sweep, path, image_tok)
        sweep.expect(words.lower() in str(outcome).lower(), path, f"expected {words!r} in: {outcome}")
    sweep.finish(minimum=10)
    assert read_image(tmp_path / "paths" / "link-to-valid.png").shape == (*IMAGE_SIZE, 3)


# --- videos --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    """name -> (suffix, bytes) of one small valid video per container and codec, all VIDEO_SHAPE at 10 fps."""
    root = tmp_path_factory.mktemp("valid_videos")
    frames = random_frames(*VIDEO_SHAPE)
    faststart = {"movflags": "+faststart"}  # the index first, as vqtok's write_video writes it
    files = {
        "mp4_faststart": write_test_video(root / "fast.mp4", frames, codec="libx264", container_options=faststart),
        "mp4": write_test_video(root / "plain.mp4", frames, codec="libx264"),
        "mkv": write_test_video(root / "lossless.mkv", frames, codec="libx264rgb"),
        "webm": write_test_video(root / "vp9.webm", frames, codec="libvpx-vp9"),
        "avi": write_test_video(root / "mpeg4.avi", frames, codec="mpeg4", options={}),
        "ts": write_test_video(root / "h264.ts", frames, codec="libx264"),
    }
    return {name: (path.suffix, path.read_bytes()) for name, path in files.items()}


def test_the_valid_videos_decode_as_written(videos, tmp_path, video_tok):
    sweep = Sweep("videos: valid controls")
    for name, (suffix, data) in videos.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        video = check_video(sweep, path, video_tok)
        sweep.expect(isinstance(video, tuple) and video[0].shape == (*VIDEO_SHAPE, 3), path, describe(video))
    sweep.finish(minimum=6)


def test_truncated_videos(videos, tmp_path, video_tok):
    sweep = Sweep("videos: truncated")
    for name, (suffix, data) in videos.items():
        for path in write_corpus(tmp_path, name, suffix, truncations(data)):
            check_video(sweep, path, video_tok)
    sweep.finish(minimum=6 * (CUT_POINTS + 3))


def test_bit_flipped_videos(videos, tmp_path, video_tok):
    sweep = Sweep("videos: bit-flipped")
    for seed, (name, (suffix, data)) in enumerate(videos.items()):
        for path in write_corpus(tmp_path, name, suffix, bit_flips(data, 100 + seed)):
            check_video(sweep, path, video_tok)
    sweep.finish(minimum=6 * FLIP_SETS)


def test_spliced_videos(videos, splice_dir, video_tok):
    sweep = Sweep("videos: hypothesis splices")
    run_splices(sweep, videos, splice_dir, lambda path: check_video(sweep, path, video_tok), examples=60)
    sweep.finish(minimum=60)


def y4m(width: int, height: int) -> bytes:
    """A YUV4MPEG2 header declaring ``width`` x ``height`` frames, followed by one frame of only 5000 bytes."""
    return f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n" + bytes(5000)


def box_offset(data: bytes, kind: bytes, after: bytes = b"moov") -> int:
    return data.index(kind, data.index(after))


def lying_videos(videos: dict[str, tuple[str, bytes]], images: dict[str, tuple[str, bytes]]) -> dict[str, bytes]:
    mp4 = videos["mp4"][1]
    avc1 = box_offset(mp4, b"avc1", b"stsd")  # sample entry: 24 bytes after its type come width and height
    tkhd = box_offset(mp4, b"tkhd")  # version 0: width and height are 16.16 fixed point at its end
    huge = patched(patched(mp4, avc1 + 28, ">HH", 6000, 6000), tkhd + 80, ">II", 6000 << 16, 6000 << 16)
    return {
        "y4m-5000x5000.y4m": y4m(5000, 5000),
        "y4m-20000x20000.y4m": y4m(20000, 20000),
        "y4m-0x0.y4m": y4m(0, 0),
        "stsd-tkhd-6000x6000.mp4": huge,
        "codec-unknown.mp4": mp4[:avc1] + b"xyz1" + mp4[avc1 + 4 :],
        "codec-unknown.webm": videos["webm"][1].replace(b"V_VP9", b"V_XYZ"),
        "png-renamed.mp4": images["png"][1],
        "jpeg-renamed.mkv": images["jpeg"][1],
        "text-renamed.mp4": b"just some text, not a video\n" * 20,
        "zip-renamed.webm": unsupported_files(images)["archive.zip"],
    }


def test_lying_and_mislabelled_videos(videos, images, tmp_path, video_tok):
    """Headers that state another size or a codec no decoder knows, and other files named as videos: decoded as
    what they are, or refused; a Y4M header declaring more than DEFAULT_MAX_FRAME_PIXELS is refused as a bomb."""
    sweep = Sweep("videos: lying headers and mislabelled files")
    for name, data in lying_videos(videos, images).items():
        path = tmp_path / name
        path.write_bytes(data)
        video = check_video(sweep, path, video_tok)
        if name == "stsd-tkhd-6000x6000.mp4":  # H.264 states its size again in the stream: that one is used
            sweep.expect(isinstance(video, tuple) and video[0].shape == (*VIDEO_SHAPE, 3), path, describe(video))
        if name.startswith("codec-unknown"):
            sweep.expect("no decoder for its video codec" in str(video), path, str(video))
    grow = write_growing_h264(tmp_path / "size-changes.h264", small=2, large=10)  # 32x32, then 64x64 frames
    video = check_video(sweep, grow, video_tok)
    sweep.expect("frame size changes" in str(video), grow, str(video))
    sweep.finish(minimum=11)


def test_a_header_declared_5000x5000_y4m_is_refused_before_decoding(tmp_path, video_tok):
    """Refused by the readers' default frame limit from the header; without a limit it gets as far as decoding and
    fails for want of pixel data, so the refusal came first."""
    path = tmp_path / "bomb.y4m"
    path.write_bytes(y4m(5000, 5000))
    words = f"5000x5000 = 25000000 pixels exceed the limit of {DEFAULT_MAX_FRAME_PIXELS} pixels per frame"
    for read in (probe_video, read_video, lambda p: next(iter_frames(p))):
        with deadline(), pytest.raises(FileFormatError, match=words):
            read(path)
    with deadline(), pytest.raises(FileFormatError, match="no decodable frames"):
        probe_video(path, max_frame_pixels=None)
    with deadline(), pytest.raises(FileFormatError, match="bomb.y4m"):  # by its limit, or for want of pixels
        video_tok.encode(path)


def test_paths_that_are_not_video_files_fail_fast_with_their_reason(videos, tmp_path, video_tok):
    valid = tmp_path / "valid.mp4"
    valid.write_bytes(videos["mp4"][1])
    sweep = Sweep("videos: not regular files")
    for path, words in not_regular_files(tmp_path / "paths", valid, ".mp4", device=False):
        video = check_video(sweep, path, video_tok)
        sweep.expect(words.lower() in str(video).lower(), path, f"expected {words!r} in: {video}")
    sweep.finish(minimum=9)
    assert read_video(tmp_path / "paths" / "link-to-valid.mp4")[0].shape == (*VIDEO_SHAPE, 3)


# --- the command line ----------------------------------------------------------------------------------------------


def test_vqtok_encode_refuses_bad_files_with_one_line_naming_them(images, videos, tmp_path, monkeypatch, capsys):
    """``vqtok encode FILE --model tiny|video_tiny --out OUT`` on broken files: exit code 2, one line on stderr that
    names the file, and no token file (also when a good file comes first)."""
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.png"
    good.write_bytes(images["png"][1])
    files = {
        "bomb.png": png_with_size(images["png"][1], 20000, 20000),
        "cut.jpg": images["jpeg"][1][:300],
        "flipped.png": patched(images["png"][1], 16, ">I", 0x7FFF_FFFF),  # IHDR width: its CRC no longer matches
        "text.png": b"not an image\n" * 10,
        "figure.eps": EPS,
        "cut.mp4": videos["mp4_faststart"][1][: len(videos["mp4_faststart"][1]) // 2],
        "codec-unknown.webm": lying_videos(videos, images)["codec-unknown.webm"],
        "bomb.y4m": y4m(5000, 5000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    write_audio_only(tmp_path / "audio-only.mp4")
    write_growing_h264(tmp_path / "size-changes.h264", small=2, large=10)
    os.symlink(tmp_path / "loop-b.png", tmp_path / "loop-a.png")
    os.symlink(tmp_path / "loop-a.png", tmp_path / "loop-b.png")
    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "folder.png").mkdir()
    cases = [*files, "audio-only.mp4", "size-changes.h264", "loop-a.png", "fifo.mp4", "folder.png"]
    sweep = Sweep("cli: vqtok encode")
    for name in cases:
        model = "video_tiny" if Path(name).suffix in (".mp4", ".webm", ".y4m", ".h264") else "tiny"
        for inputs in ([name], [str(good), name]):
            out = tmp_path / "tokens.safetensors"
            with deadline():
                code = main(["encode", *inputs, "--model", model, "--out", str(out)])
            err = capsys.readouterr().err.strip()
            path = Path(name)
            sweep.expect(code == 2, path, f"exit code {code}")
            sweep.expect(len(err.splitlines()) == 1 and f"'{name}'" in err, path, f"stderr: {err!r}")
            sweep.expect(err.startswith("vqtok encode: error: cannot read"), path, f"stderr: {err!r}")
            sweep.expect(not out.exists(), path, "a token file was written")
            sweep.tally["tried"] += 1
            sweep.tally["refused"] += code == 2
    sweep.finish(minimum=2 * 13)
    assert main(["encode", str(good), "--model", "tiny", "--out", "ok.safetensors"]) == 0  # the control
    assert (tmp_path / "ok.safetensors").is_file()
