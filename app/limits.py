"""What one request may cost: upload sizes, image and video sizes, queue length (all configurable)."""

from __future__ import annotations

from dataclasses import dataclass

from vqtok import ConfigError


@dataclass(frozen=True)
class Limits:
    """Bounds on the work and memory one request can take. Larger uploads are refused, downscaled or cut, and the
    page says which."""

    max_file_mb: int = 50  # uploads above this are refused by the server (HTTP 413) before any code runs
    max_image_pixels: int = 40_000_000  # larger images are refused ("too large") from their header (8K is 33 MP);
    # reading one costs about 60 bytes per pixel at peak (float32 copies), so 40 MP is about 2.4 GB
    max_image_side: int = 1024  # longer side; larger images are downscaled to it before encoding (the page says so)
    max_video_seconds: float = 10.0  # longer clips are cut to their first max_video_seconds
    max_video_frames: int = 97  # ... and to their first max_video_frames frames (1 + 4*24)
    max_video_side: int = 256  # longer side of video frames; larger frames are downscaled
    max_decode_items: int = 16  # token grids decoded from one token file
    max_decode_pixels: int = 2048 * 2048  # an image in a token file may decode to at most this many pixels
    max_decode_video_pixels: int = 97 * 512 * 512  # a video in a token file: at most this many frames x pixels
    max_generate: int = 16  # samples drawn from a prior in one request (Generate tab)
    queue_size: int = 16  # waiting requests; further ones are refused with "Queue is full"
    cache_minutes: int = 30  # uploads and outputs are deleted this long after they were made

    def __post_init__(self) -> None:
        bad = [f"{k}={v!r}" for k, v in vars(self).items() if not isinstance(v, (int, float)) or v <= 0]
        if bad:
            raise ConfigError(f"app limits must be positive numbers, got {', '.join(bad)}")
