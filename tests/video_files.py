"""Write small real video files with PyAV for tests (a helper module, not a test module)."""

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Codec -> (pixel format, encoder options) used when the caller gives none. libx264rgb at crf 0 is lossless.
_DEFAULTS: dict[str, tuple[str, dict[str, str]]] = {
    "libx264rgb": ("rgb24", {"crf": "0", "preset": "ultrafast"}),
    "libx264": ("yuv420p", {"threads": "1"}),  # B-frames; one thread (the bytes can still differ a little)
    "libvpx-vp9": ("yuv420p", {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0"}),
    "ffv1": ("bgr0", {}),
}


def flat_frames(colours: list[tuple[int, int, int]], height: int = 16, width: int = 24) -> np.ndarray:
    """Frames of one flat colour each, uint8 (T, H, W, 3): which source frame was picked is easy to tell."""
    return np.stack([np.full((height, width, 3), c, np.uint8) for c in colours])


def grey_frames(num_frames: int, height: int = 16, width: int = 24, step: int = 4) -> np.ndarray:
    """Flat grey frames, frame i at level i * step (i < 64 for step 4): a frame's index survives lossy coding."""
    return flat_frames([(step * i,) * 3 for i in range(num_frames)], height, width)


def frame_index(frame: np.ndarray, step: int = 4) -> int:
    """Which of :func:`grey_frames` a decoded uint8 frame (H, W, 3) is."""
    return round(float(frame.mean()) / step)


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
    container_format: str | None = None,
    rotation: int | None = None,
    pts: list[int] | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write uint8 (T, H, W, 3) RGB frames to ``path`` and return it.

    Args:
        codec: FFmpeg encoder; libx264rgb (default, lossless with its default options), libx264, libvpx-vp9, ffv1.
        pix_fmt: the encoder's pixel format; a default per codec (yuv420p needs even sizes).
        container_format: muxer name, else chosen from the suffix.
        rotation: display-matrix rotation, counter-clockwise degrees (what phones record).
        pts: presentation times in milliseconds, one per frame: a variable frame rate.
        options: encoder options (replace the codec's defaults; ``{}`` for the encoder's own defaults).
        container_options: muxer options, e.g. ``{"movflags": "+faststart"}``.
        metadata: stream metadata tags, e.g. ``{"rotate": "90"}``.
    """
    default_fmt, default_options = _DEFAULTS.get(codec, ("yuv420p", {}))
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt or default_fmt
        stream.options = options if options is not None else default_options
        stream.metadata.update(metadata or {})
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts is not None:
                picture.pts, picture.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(picture):
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
    """A raw H.264 stream with its parameter sets and no picture: it opens, and no frame decodes."""
    raw = write_test_video(path.with_suffix(".tmp.h264"), random_frames(2), codec="libx264").read_bytes()
    path.with_suffix(".tmp.h264").unlink()
    first_slice = next(m.start() for m in re.finditer(b"\x00\x00\x01", raw) if raw[m.start() + 3] & 0x1F in (1, 5))
    path.write_bytes(raw[: first_slice - (raw[first_slice - 1] == 0)])
    return path


def write_no_packets_mkv(path: Path) -> Path:
    """A Matroska file with a video stream header and not a single packet."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    return path


def write_truncated_mp4(path: Path, faststart: bool, num_frames: int = 20) -> Path:
    """An H.264 MP4 cut at half its length. With faststart (index first) it opens and its first frames decode,
    then decoding fails; without, the index at the end is lost and it does not open."""
    options = {"movflags": "+faststart"} if faststart else None
    full = write_test_video(path.with_name(f"full-{path.name}"), random_frames(num_frames, 32, 32), codec="libx264",
                            container_options=options)  # fmt: skip
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_truncated_avi(path: Path, num_frames: int = 20) -> Path:
    """An H.264 AVI cut inside the payload of its frame at 3/4 (losing the idx1 index at the end).

    Cut by the packet's position, not at a fixed fraction of the size: x264's bytes vary a little between runs,
    and a cut that lands in the 8-byte header between two packets leaves a shorter AVI with only whole frames.
    """
    full = write_test_video(path.with_name(f"full-{path.name}"), random_frames(num_frames, 32, 32), codec="libx264")
    with av.open(str(full)) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    pos, size = packets[len(packets) * 3 // 4]
    path.write_bytes(full.read_bytes()[: pos + size // 2])
    full.unlink()
    return path


def write_growing_h264(path: Path, small: int = 2, large: int = 10) -> Path:
    """A raw H.264 stream whose frames grow from 32x32 to 64x64 after ``small`` frames (two streams back to back):
    it probes fine, and fails part-way when the frame size matters (a clip spanning the change, a pixel limit)."""
    parts = []
    for i, (count, size) in enumerate(((small, 32), (large, 64))):
        part = write_test_video(
            path.with_name(f"part{i}-{path.name}"), random_frames(count, size, size), codec="libx264"
        )
        parts.append(part.read_bytes())
        part.unlink()
    path.write_bytes(b"".join(parts))
    return path


def broken_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of video file that cannot even be probed, with words its error message must hold.

    (:func:`write_growing_h264` makes one that probes fine and fails later.)"""
    tmp_path.mkdir(exist_ok=True)
    cases: dict[str, tuple[Path, str]] = {}
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    cases["corrupt"] = (tmp_path / "corrupt.mp4", "not a video file")
    cases["truncated"] = (write_truncated_mp4(tmp_path / "truncated.mp4", faststart=False), "truncated")
    cases["truncated_faststart"] = (write_truncated_mp4(tmp_path / "cut_fast.mp4", faststart=True), "truncated")
    cases["truncated_avi"] = (write_truncated_avi(tmp_path / "truncated.avi"), "truncated")
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.mp4", "empty")
    cases["audio_only"] = (write_audio_only(tmp_path / "audio_only.mp4"), "no video stream")
    cases["zero_frames"] = (write_headers_only_h264(tmp_path / "zero_frames.h264"), "no frame could be decoded")
    cases["no_packets"] = (write_no_packets_mkv(tmp_path / "no_packets.mkv"), "ends before any video data")
    cases["missing"] = (tmp_path / "missing.mp4", "does not exist")
    cases["directory"] = (tmp_path, "not a file")
    return cases
