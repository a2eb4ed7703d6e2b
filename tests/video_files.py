"""Write small real video files with PyAV for tests (not a test module)."""

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def flat_frames(colours: list[tuple[int, int, int]], height: int = 16, width: int = 24) -> np.ndarray:
    """Frames of one flat colour each, uint8 (T, H, W, 3): which source frame was picked is easy to tell."""
    return np.stack([np.full((height, width, 3), c, np.uint8) for c in colours])


def random_frames(num_frames: int, height: int = 16, width: int = 24, seed: int = 0) -> np.ndarray:
    """Smooth random frames (noise at 1/4 resolution, upscaled), uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (num_frames, -(-height // 4), -(-width // 4), 3), dtype=np.uint8)
    return np.ascontiguousarray(small.repeat(4, 1).repeat(4, 2)[:, :height, :width])


def write_test_video(
    path: Path,
    frames: np.ndarray,
    fps: float = 10.0,
    codec: str = "libx264rgb",
    pix_fmt: str | None = None,
    rotation: int | None = None,
    pts: list[int] | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write uint8 (T, H, W, 3) frames. ``pts`` in milliseconds gives a variable frame rate; ``rotation`` sets the
    display matrix (counter-clockwise degrees). libx264rgb with crf 0 (the default options) is lossless."""
    defaults = {"libx264rgb": ("rgb24", {"crf": "0", "preset": "ultrafast"}), "libx264": ("yuv420p", {})}
    default_fmt, default_options = defaults.get(codec, ("yuv420p", {}))
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt or default_fmt
        stream.options = options if options is not None else default_options
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    """An AAC-only .mp4 file: a container with no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "mono"
        samples = int(44100 * seconds)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_headers_only_h264(path: Path) -> Path:
    """An H.264 stream with its parameter sets and no picture: it opens, and has zero frames."""
    raw = write_test_video(path.with_suffix(".tmp.h264"), random_frames(2), codec="libx264").read_bytes()
    first_slice = next(m.start() for m in re.finditer(b"\x00\x00\x01", raw) if raw[m.start() + 3] & 0x1F in (1, 5))
    path.write_bytes(raw[: first_slice - (raw[first_slice - 1] == 0)])
    return path


def broken_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of unreadable video, with words its error message must hold."""
    tmp_path.mkdir(exist_ok=True)
    good = write_test_video(tmp_path / "good.mp4", random_frames(20, 32, 32), codec="libx264").read_bytes()
    files = {
        "corrupt": (b"\x00\x01garbage" * 300, "not a readable video"),
        "truncated": (good[: len(good) // 2], "not a readable video"),  # moov at the end: the index is lost
        "empty": (b"", "empty"),
    }
    out = {}
    for kind, (data, words) in files.items():
        (tmp_path / f"{kind}.mp4").write_bytes(data)
        out[kind] = (tmp_path / f"{kind}.mp4", words)
    out["audio_only"] = (write_audio_only(tmp_path / "audio_only.mp4"), "no video stream")
    out["zero_frames"] = (write_headers_only_h264(tmp_path / "zero_frames.h264"), "decoding failed")
    out["missing"] = (tmp_path / "missing.mp4", "does not exist")
    out["directory"] = (tmp_path, "not a file")
    return out
