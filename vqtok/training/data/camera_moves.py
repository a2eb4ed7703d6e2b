"""Video training clips synthesised from still photos: a random camera moving over each photo.

Each clip follows its own smooth camera path over one photo: a pan (straight or slightly curved), a zoom in or
out, a small tilt and turn, handheld shake; optionally a foreground patch (from elsewhere in the photo or from
another photo) nearer the camera, so it moves at a different speed than the background (parallax); a brightness
and colour drift over the clip; motion blur proportional to the motion (the average of a few sub-frame positions
while the shutter is open); and sensor noise. Every frame is one affine warp (``torch.nn.functional.grid_sample``,
bilinear) of the photo region the path covers, first downscaled (antialiased) so that the tightest window is S
pixels: the motion is smooth and sub-pixel, and a clip costs a few milliseconds per frame on one CPU core.

All randomness comes from the :class:`~vqtok.training.data.sampling.SampleKey` of the draw (a training key) or
from the item's index (evaluation), so the clips are the same in every DataLoader worker and after a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from vqtok.errors import ConfigError
from vqtok.io.images import list_images
from vqtok.training.data.folder import read_chw
from vqtok.training.data.sampling import SampleKey, as_key
from vqtok.transforms import resize, resize_shorter_side

__all__ = ["CameraMotion", "CameraMoves", "CameraPath", "draw_path", "render_clip"]

# How often each part of the motion is present in a clip (the magnitudes come from CameraMotion).
_P_PAN, _P_ZOOM, _P_TURN, _P_NOISE = 0.8, 0.4, 0.3, 0.5
_PARALLAX_DEPTH = (1.3, 2.5)  # foreground image speed / background image speed
_SPRITE_SIDE = (0.25, 0.6)  # foreground patch side, in window sides
_SPRITE_ZOOM = (0.8, 2.0)  # foreground patch: source pixels per output pixel, relative to the background's
_MAX_SUBFRAMES = 6  # motion blur: at most this many sub-frame positions averaged per frame
_MIN_PHOTO_SIDE = 16  # smaller photos are upscaled to this first
_MARGIN = 2  # photo pixels kept around the region the path covers (the interpolation's support)


@dataclass(frozen=True)
class CameraMotion:
    """The ranges each clip draws its camera path from; every magnitude 0 (and ``parallax=0``) gives a still clip.

    Units: a "window side" is the side of the square the camera sees at the first frame; speeds are per frame.
    """

    max_pan: float = 0.05  # pan speed, window sides per frame (0.05 at S=128: up to 6.4 px per frame)
    max_zoom: float = 0.03  # zoom speed, change of log(window side) per frame (0.03: up to x1.6 over 16 frames)
    max_rotation: float = 4.0  # degrees: the tilt at the first frame, and the turn over the clip, each at most this
    shake: float = 0.004  # handheld jitter amplitude, window sides
    parallax: float = 0.4  # probability of a foreground patch at a different depth
    brightness_drift: float = 0.15  # |change of log gain| over the clip, at most (plus a third as much colour drift)
    noise: float = 0.02  # sensor noise std at mid-grey, at most (pixels in [0, 1]); present in half the clips
    shutter: float = 1.0  # the shutter is open a fraction in [0, shutter] of each frame interval (motion blur)

    def __post_init__(self) -> None:
        for name in ("max_pan", "max_zoom", "max_rotation", "shake", "brightness_drift", "noise", "shutter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"CameraMotion.{name} must be a finite number >= 0, got {value}")
        if not 0.0 <= self.parallax <= 1.0:
            raise ConfigError(f"CameraMotion.parallax is a probability in [0, 1], got {self.parallax}")
        if self.shutter > 1.0:
            raise ConfigError(
                f"CameraMotion.shutter is a fraction of the frame interval, at most 1, got {self.shutter}"
            )


@dataclass(frozen=True)
class CameraPath:
    """One clip's camera, as functions of time tau in frames (0 .. T-1; sub-frame times for motion blur).

    The window's centre is ``velocity * tau + 0.5 * accel * tau**2 / (T-1) + shake(tau)`` window sides from its
    first position; its side is ``exp(zoom * tau)`` window sides; its angle ``tilt + turn * tau / (T-1)`` radians.
    """

    num_frames: int
    velocity: tuple[float, float]  # window sides per frame (x, y)
    accel: tuple[float, float]  # bends the pan: extra offset 0.5 * accel * (T-1) window sides by the last frame
    zoom: float  # d log(side) / d tau
    tilt: float  # radians at tau = 0
    turn: float  # radians over the clip
    shake: tuple[float, float, float, float, float, float]  # amplitude, frequency (cycles/frame), phase x, phase y,
    # frequency 2, phase 2
    shutter: float  # fraction of a frame interval the shutter is open
    gain: tuple[float, float, float]  # per-channel change of log gain over the clip
    noise: float  # sensor noise std at mid-grey
    flip: bool  # mirror the frames horizontally

    def describe(self, image_size: int) -> str:
        """A one-line summary for people: pan speed in output pixels per frame, zoom and turn over the clip, etc."""
        span = max(self.num_frames - 1, 1)
        parts = [
            f"pan {math.hypot(*self.velocity) * image_size:.1f} px/frame",
            f"zoom x{math.exp(self.zoom * span):.2f}",
            f"tilt {math.degrees(self.tilt):+.1f} turn {math.degrees(self.turn):+.1f} deg",
            f"shutter {self.shutter:.2f}",
            f"gain {math.exp(sum(self.gain) / 3):.2f}",
            f"noise {self.noise:.3f}",
        ]
        return ", ".join(parts)

    def pose(self, tau: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tau (N,) float64 -> centre (N, 2) in window sides from the first centre, log side (N,), angle (N,)."""
        span = max(self.num_frames - 1, 1)
        amp, freq, phx, phy, freq2, ph2 = self.shake
        v, a = torch.tensor(self.velocity, dtype=tau.dtype), torch.tensor(self.accel, dtype=tau.dtype)
        centre = tau[:, None] * v + 0.5 * tau[:, None] ** 2 / span * a  # (N, 2)
        wobble_x = torch.sin(2 * math.pi * freq * tau + phx) + 0.5 * torch.sin(2 * math.pi * freq2 * tau + ph2)
        wobble_y = torch.sin(2 * math.pi * freq * tau + phy) + 0.5 * torch.cos(2 * math.pi * freq2 * tau + ph2)
        centre = centre + amp * torch.stack([wobble_x, wobble_y], dim=1)
        return centre, self.zoom * tau, self.tilt + self.turn * tau / span


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def draw_path(motion: CameraMotion, num_frames: int, g: torch.Generator) -> CameraPath:
    """A random :class:`CameraPath` for a clip of ``num_frames`` frames, every number drawn from ``g``."""
    draws = torch.rand(24, generator=g, dtype=torch.float64).tolist()  # a fixed count: later draws never shift
    pan = draws[0] < _P_PAN
    speed = motion.max_pan * draws[1] ** 0.7 if pan else 0.0  # slow pans a little less likely than fast
    direction = 2 * math.pi * draws[2]
    velocity = (speed * math.cos(direction), speed * math.sin(direction))
    bend = speed * (draws[3] - 0.5)  # perpendicular to the pan
    accel = (-bend * math.sin(direction), bend * math.cos(direction))
    zoom = motion.max_zoom * (2 * draws[4] - 1) if draws[5] < _P_ZOOM else 0.0
    max_rot = math.radians(motion.max_rotation)
    tilt = 0.5 * max_rot * (2 * draws[6] - 1)
    turn = max_rot * (2 * draws[7] - 1) if draws[8] < _P_TURN else 0.0
    shake = (
        motion.shake * draws[9],
        0.05 + 0.2 * draws[10],
        2 * math.pi * draws[11],
        2 * math.pi * draws[12],
        0.1 + 0.3 * draws[13],
        2 * math.pi * draws[14],
    )
    drift = motion.brightness_drift * (2 * draws[15] - 1)
    tint = motion.brightness_drift / 3
    gain = tuple(drift + tint * (2 * d - 1) for d in draws[16:19])
    noise = motion.noise * draws[19] if draws[20] < _P_NOISE else 0.0
    return CameraPath(
        num_frames=num_frames,
        velocity=velocity,
        accel=accel,
        zoom=zoom,
        tilt=tilt,
        turn=turn,
        shake=shake,
        shutter=motion.shutter * draws[21],
        gain=(gain[0], gain[1], gain[2]),
        noise=noise,
        flip=draws[22] < 0.5,
    )


def _corners(centre: Tensor, log_side: Tensor, angle: Tensor) -> Tensor:
    """Window corners (N, 4, 2) in window sides, from centres (N, 2), log sides (N,) and angles (N,)."""
    unit = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=centre.dtype)  # (4, 2) (u, v)
    return centre[:, None] + (0.5 * log_side.exp())[:, None, None] * _rotate(unit[None], angle)


def _rotate(uv: Tensor, angle: Tensor) -> Tensor:
    """Rotate points (N, P, 2) by angles (N,) -> (N, P, 2)."""
    c, s = angle.cos()[:, None], angle.sin()[:, None]
    return torch.stack([c * uv[..., 0] - s * uv[..., 1], s * uv[..., 0] + c * uv[..., 1]], dim=-1)


def _sample_times(path: CameraPath, image_size: int) -> tuple[Tensor, int]:
    """Sub-frame times (T*K,) float64, frame-major, and K: enough positions that the blur streak (the motion
    while the shutter is open, in output pixels) is sampled about once per pixel, at most _MAX_SUBFRAMES."""
    T = path.num_frames
    tau = torch.arange(T, dtype=torch.float64)
    corners = _corners(*path.pose(tau))  # (T, 4, 2) window sides
    step = (corners[1:] - corners[:-1]).norm(dim=-1).max().item() if T > 1 else 0.0
    streak = path.shutter * step * image_size  # output pixels
    K = min(_MAX_SUBFRAMES, max(1, math.ceil(streak)))
    if K == 1:
        return tau, 1
    offsets = path.shutter * (torch.linspace(0.0, 1.0, K, dtype=torch.float64) - 0.5)  # (K,)
    return (tau[:, None] + offsets[None]).flatten(), K


def _theta(a: Tensor, b: Tensor, height: int, width: int) -> Tensor:
    """Affine maps output (u, v) in [-1, 1] -> source pixels ``a @ (u, v) + b`` (a (N, 2, 2), b (N, 2); pixel i
    covers [i, i+1)) as ``affine_grid`` thetas (N, 2, 3) for a source of (height, width), align_corners=False."""
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=a.dtype)
    return torch.cat([a * scale[None, :, None], (b * scale - 1.0)[..., None]], dim=2).float()


def _warp(source: Tensor, theta: Tensor, size: int, padding: str) -> Tensor:
    """source (C, h, w), theta (N, 2, 3) -> (N, C, size, size), bilinear."""
    grid = F.affine_grid(theta, [theta.shape[0], source.shape[0], size, size], align_corners=False)
    batch = source[None].expand(theta.shape[0], *source.shape)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _cut_sprite(source: Tensor, side_px: tuple[int, int], shrink: float, g: torch.Generator) -> Tensor:
    """A foreground patch (4, h, w): a random region of source (3, H, W) in [0, 1], about ``shrink`` times
    ``side_px`` (the background's downscaling, so the patch is about as sharp), resized to ``side_px``, with an
    alpha channel shaped as a soft-edged superellipse (from an ellipse to a rounded rectangle)."""
    h, w = side_px
    H, W = source.shape[1:]
    scale = shrink * _uniform(g, *_SPRITE_ZOOM)
    ch, cw = max(1, min(H, round(h * scale))), max(1, min(W, round(w * scale)))
    top, left = int(_uniform(g) * (H - ch)), int(_uniform(g) * (W - cw))
    rgb = resize(source[:, top : top + ch, left : left + cw], (h, w))
    power = _uniform(g, 2.0, 6.0)
    y = torch.linspace(-1.0, 1.0, h)[:, None].abs()
    x = torch.linspace(-1.0, 1.0, w)[None, :].abs()
    radius = (x**power + y**power) ** (1.0 / power)  # (h, w): 1 on the patch's outline
    feather = 2.0 / max(2, min(h, w))  # about one pixel of soft edge
    alpha = torch.sigmoid((0.95 - radius) / feather)
    return torch.cat([rgb, alpha[None]], dim=0)


def render_clip(
    photo: Tensor, image_size: int, path: CameraPath, g: torch.Generator, foreground: Tensor | None = None
) -> Tensor:
    """The clip a camera following ``path`` films over ``photo``.

    Args:
        photo: float32 (3, H, W) in [0, 1], any size.
        image_size: side S of the frames.
        path: the camera (its ``num_frames`` is T).
        g: the generator of the remaining draws (where the window starts, its scale, the parallax layer, noise).
        foreground: float32 (3, H', W') in [0, 1] to cut a parallax patch from (``None``: no foreground layer).

    Returns:
        float32 (3, T, S, S) in [0, 1].
    """
    S, T = image_size, path.num_frames
    small = max(S, _MIN_PHOTO_SIDE)
    photo = resize_shorter_side(photo, max(small, min(photo.shape[1:])), small)  # upscale only tiny photos
    tau, K = _sample_times(path, S)
    centre, log_side, angle = path.pose(tau)  # (N, 2), (N,), (N,) with N = T*K
    corners = _corners(centre, log_side, angle)  # (N, 4, 2) window sides, relative to the first centre
    low, high = corners.amin(dim=(0, 1)), corners.amax(dim=(0, 1))  # (2,) the box every window lies in
    H, W = photo.shape[1:]
    room = torch.tensor([W - 2.0 * _MARGIN, H - 2.0 * _MARGIN], dtype=torch.float64)
    largest = (room / (high - low)).min().item()  # the largest first-window side (photo px) that fits
    smallest = S * math.exp(-log_side.min().item())  # first-window side at which the tightest window is S px
    side = largest if smallest >= largest else math.exp(_uniform(g, math.log(smallest), math.log(largest)))
    free = room - side * (high - low)  # (2,) slack for the box's position
    origin = _MARGIN + free * torch.rand(2, generator=g, dtype=torch.float64) - side * low  # first centre, photo px
    # Crop the covered region and downscale it so the tightest window is S px (never upscale here: grid_sample does).
    x0, y0 = (origin + side * low - _MARGIN).floor().clamp(min=0).long().tolist()
    x1, y1 = (origin + side * high + _MARGIN).ceil().long().tolist()
    x1, y1 = min(x1, W), min(y1, H)
    region = photo[:, y0:y1, x0:x1]
    shrink = max(1.0, side * math.exp(log_side.min().item()) / S)
    work = resize(region, (max(1, round(region.shape[1] / shrink)), max(1, round(region.shape[2] / shrink))))
    px = torch.tensor([work.shape[2] / region.shape[2], work.shape[1] / region.shape[1]], dtype=torch.float64)
    # Output (u, v) in [-1, 1] -> working pixels: centre + (side/2) exp(log_side) R(angle) (u, v), per axis scale.
    half = 0.5 * side * log_side.exp()  # (N,) photo px
    c, s = angle.cos(), angle.sin()
    a = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], dim=1) * half[:, None, None]  # (N, 2, 2)
    a = a * px[None, :, None]
    b = (origin + side * centre - torch.tensor([x0, y0], dtype=torch.float64)) * px  # (N, 2) working px
    frames = _warp(work, _theta(a, b, work.shape[1], work.shape[2]), S, "border")  # (N, 3, S, S)
    if foreground is not None:
        frames = _composite(frames, foreground, a, b, side * px, shrink, tau, g)
    frames = frames.view(T, K, 3, S, S).mean(dim=1)  # motion blur: average the sub-frame positions
    return _finish(frames, path, g).transpose(0, 1).contiguous()  # (3, T, S, S)


def _composite(
    frames: Tensor,
    source: Tensor,
    a: Tensor,
    b: Tensor,
    window: Tensor,
    shrink: float,
    tau: Tensor,
    g: torch.Generator,
) -> Tensor:
    """Lay a foreground patch over frames (N, 3, S, S): nearer the camera, its image moves ``depth`` times as far
    as the background's (parallax), plus a slow motion of its own. a, b: the background's warps (working px);
    window: the first window's side in working px (2,) (x, y); shrink: photo px per working px."""
    depth = _uniform(g, *_PARALLAX_DEPTH)
    side = _uniform(g, *_SPRITE_SIDE)
    aspect = math.exp(_uniform(g, -0.4, 0.4))
    w_px, h_px = side * aspect * window[0].item(), side / aspect * window[1].item()
    sprite = _cut_sprite(source, (max(2, round(h_px)), max(2, round(w_px))), shrink, g)  # (4, h, w)
    own = (torch.rand(2, generator=g, dtype=torch.float64) - 0.5) * 0.02 * window  # working px per frame
    mid = tau.numel() // 2
    start = b[mid] + (torch.rand(2, generator=g, dtype=torch.float64) - 0.5) * 0.7 * window  # in view mid-clip
    # The sprite's centre, in background working px: moves against the camera by (depth - 1) times its motion.
    where = start - (depth - 1.0) * (b - b[mid]) + own * (tau - tau[mid])[:, None]  # (N, 2)
    # Output (u, v) -> sprite pixels: background position minus the sprite's corner.
    corner = where - 0.5 * torch.tensor([w_px, h_px], dtype=torch.float64)
    scale = torch.tensor([sprite.shape[2] / w_px, sprite.shape[1] / h_px], dtype=torch.float64)
    layer = _warp(
        sprite, _theta(a * scale[None, :, None], (b - corner) * scale, *sprite.shape[1:]), frames.shape[-1], "zeros"
    )  # (N, 4, S, S)
    alpha = layer[:, 3:]
    return layer[:, :3] * alpha + frames * (1.0 - alpha)


def _finish(frames: Tensor, path: CameraPath, g: torch.Generator) -> Tensor:
    """(T, 3, S, S) in [0, 1] -> brightness/colour drift, flip, sensor noise, clamped to [0, 1]."""
    T = frames.shape[0]
    ramp = torch.linspace(0.0, 1.0, T)[:, None] if T > 1 else torch.zeros(1, 1)
    gain = (ramp * torch.tensor(path.gain, dtype=torch.float32)[None]).exp()  # (T, 3)
    frames = frames * gain[:, :, None, None]
    if path.flip:
        frames = frames.flip(-1)
    if path.noise > 0:  # shot + read noise: the std grows with the signal
        std = path.noise * (0.5 + frames.clamp(0.0, 1.0)).sqrt()
        frames = frames + std * torch.randn(frames.shape, generator=g)
    return frames.clamp(0.0, 1.0)


class CameraMoves(Dataset):
    """Clips of a random camera moving over photos, as float32 tensors (3, T, S, S) in [-1, 1].

    Item i is photo i. A training draw (a :class:`SampleKey`) gives a camera path drawn from the key's seed; a
    plain int (evaluation) gives the path drawn from the index alone, the same every time. The path is the first
    draw: ``draw_path(motion, T, key.generator())`` (``torch.Generator().manual_seed(i)`` for an int). With probability
    ``motion.parallax`` a foreground patch from another part of the photo, or (half the time) from another
    photo, moves over it at a different speed. A photo that cannot be decoded gives ``None`` and a logged warning
    (:func:`~vqtok.training.data.video_datamodule.collate_mixed` drops and counts it).

    Args:
        files: the photo files (any size, any format :func:`vqtok.io.images.read_image` reads).
        num_frames: frames T per clip.
        image_size: side S of the frames.
        motion: the ranges of the camera paths (default :class:`CameraMotion`).

    Raises:
        ConfigError: no files, or a size below 1.
    """

    def __init__(self, files: list[Path], num_frames: int, image_size: int, motion: CameraMotion | None = None) -> None:
        if not files:
            raise ConfigError("CameraMoves needs at least one photo file")
        if num_frames < 1 or image_size < 1:
            raise ConfigError(f"num_frames and image_size must be at least 1, got {num_frames} and {image_size}")
        self.files = list(files)
        self.num_frames = num_frames
        self.image_size = image_size
        self.motion = motion or CameraMotion()

    @classmethod
    def from_folder(
        cls, root: str | Path, num_frames: int, image_size: int, motion: CameraMotion | None = None
    ) -> CameraMoves:
        """Camera moves over every photo under ``root`` (recursively; hidden files skipped).

        Raises:
            ConfigError: ``root`` is missing, not a directory, or holds no image.
        """
        return cls(list_photos(root), num_frames, image_size, motion)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | SampleKey) -> Tensor | None:
        """Clip of photo ``key.index`` as float32 (3, T, S, S) in [-1, 1], or ``None`` if it cannot be read."""
        train = isinstance(key, SampleKey)
        key = as_key(key)
        if not 0 <= key.index < len(self):
            raise IndexError(f"index {key.index} out of range for {len(self)} photos")
        g = key.generator() if train else torch.Generator().manual_seed(key.index)
        photo = read_chw(self.files[key.index], "photo")  # (3, H, W) in [0, 1]
        if photo is None:
            return None
        path = draw_path(self.motion, self.num_frames, g)
        foreground = None
        if _uniform(g) < self.motion.parallax:
            other = int(torch.randint(len(self), (), generator=g))
            if _uniform(g) < 0.5 and other != key.index:
                foreground = read_chw(self.files[other], "photo")
            foreground = photo if foreground is None else foreground
        return render_clip(photo, self.image_size, path, g, foreground) * 2.0 - 1.0


def list_photos(root: str | Path) -> list[Path]:
    """The image files under ``root``, raising ConfigError naming ``root`` when it is missing or holds none."""
    root = Path(root)
    if not root.is_dir():
        reason = "is not a directory" if root.exists() else "does not exist"
        raise ConfigError(
            f"photo folder {str(root)!r} {reason}: fetch the training photos with `python -m tools.fetch_training_data`"
            " (they go to data/training/pool), or point at a directory of photos"
        )
    files = list_images(root)
    if not files:
        raise ConfigError(
            f"photo folder {str(root)!r} holds no images (searched recursively for .jpg, .png, .webp, ...; hidden "
            "files and directories are skipped)"
        )
    return files
