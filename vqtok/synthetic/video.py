"""Procedural videos, so that a video tokenizer can be trained (and benchmarked) with no data set at all.

A clip is a camera looking at a dead-leaves scene (see :mod:`vqtok.synthetic.dead_leaves`) larger than the
frame, while textured sprites with anti-aliased ellipse or polygon outlines move across it:

- the camera pans and zooms along smooth random paths (sums of slow sinusoids), or stays still;
- each sprite moves at its own velocity in scene coordinates, turns and breathes in scale, and wraps around the
  scene, so it leaves the frame and comes back; sprites are painted back to front and occlude each other;
- every frame is sampled from the scene with bilinear interpolation (one ``grid_sample`` per layer), so motion
  is sub-pixel and zoom is continuous; a rare slow fade changes the brightness.

Motion is defined in seconds: a clip sampled at ``fps`` frames per second moves that much per frame, and the
training data set (:class:`vqtok.training.data.ProceduralVideos`) draws ``fps`` per clip, so the tokenizer sees
slow and fast motion.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vqtok.errors import ConfigError
from vqtok.synthetic.dead_leaves import render_dead_leaves

__all__ = ["procedural_video_frames", "render_procedural_video"]

_SCENE_MARGIN = 1.8  # the scene's side, in units of the frame's longer side
_MAX_SCENE_RENDER = 1024  # larger scenes are rendered at this size and sampled up
_MAX_SPRITE_RENDER = 256
_FRAMES_PER_CALL = 16  # frames rendered together by procedural_video_frames
_WRAP_MARGIN = 1.7  # sprite radii beyond the scene's edge at which a sprite wraps (rotated, pulsing corners)


@dataclass
class _Sprite:
    rgba: Tensor  # (1, 4, s, s) float32 colour in [0, 1] and alpha
    position: np.ndarray  # (2,) x, y at time 0, scene units (the scene spans [-1, 1])
    velocity: np.ndarray  # (2,) scene units per second
    radius: float  # half the side of the sprite's square, scene units
    angle: float  # radians at time 0
    spin: float  # radians per second
    pulse: tuple[float, float, float]  # scale breathing: amplitude, frequency (Hz), phase


@dataclass
class _Scene:
    background: Tensor  # (1, 3, S, S) float32 in [0, 1]
    aspect: tuple[float, float]  # frame half-width and half-height in scene units at zoom 1
    camera: np.ndarray  # (3, 3) rows x, y, log-zoom; columns amplitude, frequency (Hz), phase
    sprites: list[_Sprite]
    fade: tuple[float, float, float]  # brightness amplitude, frequency (Hz), phase


def _outline_alpha(rng: np.random.Generator, size: int) -> np.ndarray:
    """An anti-aliased ellipse or convex polygon filling most of a (size, size) square -> alpha (size, size)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    x, y = c[None, :], c[:, None]
    px = 2.0 / size  # one pixel in these units
    if rng.random() < 0.5:  # ellipse: distance approximated by the scaled implicit function
        a, b, theta = rng.uniform(0.4, 0.95), rng.uniform(0.4, 0.95), rng.uniform(0, math.pi)
        u = x * math.cos(theta) + y * math.sin(theta)
        v = -x * math.sin(theta) + y * math.cos(theta)
        distance = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * min(a, b)
    else:  # convex polygon: the largest signed distance to its edges' lines
        n = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radius = rng.uniform(0.6, 0.95)
        mids = (angles + np.roll(angles, -1) + np.where(np.arange(n) == n - 1, 2 * math.pi, 0)) / 2
        offsets = radius * np.cos((np.roll(angles, -1) - angles) % (2 * math.pi) / 2)
        distance = np.max([x * math.cos(m) + y * math.sin(m) - o for m, o in zip(mids, offsets, strict=True)], axis=0)
    return np.clip(0.5 - distance / px, 0.0, 1.0).astype(np.float32)


def _image_tensor(image: np.ndarray) -> Tensor:
    """uint8 (S, S, 3) -> float32 (1, 3, S, S) in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def _sample_sprite(rng: np.random.Generator, longer_side: int) -> _Sprite:
    radius = float(rng.uniform(0.05, 0.25))  # scene units: up to half the frame
    side = int(min(_MAX_SPRITE_RENDER, max(8, round(radius * longer_side * _SCENE_MARGIN))))
    colour = _image_tensor(render_dead_leaves(rng, side))
    alpha = torch.from_numpy(_outline_alpha(rng, side))[None, None]
    speed = rng.uniform(0.0, 0.4) * rng.choice([0.25, 1.0])  # scene units per second: still to brisk
    direction = rng.uniform(0, 2 * math.pi)
    return _Sprite(
        rgba=torch.cat([colour, alpha], dim=1),
        position=rng.uniform(-1, 1, 2),
        velocity=speed * np.array([math.cos(direction), math.sin(direction)]),
        radius=radius,
        angle=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.normal(0, 0.3)),
        pulse=(float(rng.uniform(0, 0.15)), float(rng.uniform(0.05, 0.5)), float(rng.uniform(0, 2 * math.pi))),
    )


def _sample_scene(rng: np.random.Generator, height: int, width: int) -> _Scene:
    longer = max(height, width)
    scene_side = min(_MAX_SCENE_RENDER, math.ceil(_SCENE_MARGIN * longer))
    background = _image_tensor(render_dead_leaves(rng, scene_side))
    half = (width / longer / _SCENE_MARGIN, height / longer / _SCENE_MARGIN)  # frame half-size, scene units
    camera = np.zeros((3, 3))
    if rng.random() < 0.8:  # else a static camera
        camera[:2, 0] = rng.uniform(0, 0.25, 2)  # pan amplitude, scene units
        camera[2, 0] = rng.uniform(0, 0.2)  # log-zoom amplitude (zoom in [0.82, 1.22])
    camera[:, 1] = rng.uniform(0.02, 0.3, 3)
    camera[:, 2] = rng.uniform(0, 2 * math.pi, 3)
    sprites = [_sample_sprite(rng, longer) for _ in range(int(rng.integers(2, 9)))]
    fade = (float(rng.uniform(0, 0.25)) if rng.random() < 0.1 else 0.0, 0.2, float(rng.uniform(0, 2 * math.pi)))
    return _Scene(background, half, camera, sprites, fade)


def _camera(scene: _Scene, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera centre x, y (scene units) and zoom at each time: three (n,) arrays."""
    amp, freq, phase = scene.camera[:, 0:1], scene.camera[:, 1:2], scene.camera[:, 2:3]
    wave = amp * np.sin(2 * math.pi * freq * times[None] + phase)  # (3, n)
    # Keep the frame inside the scene: |centre| + half-size / zoom <= 1.
    zoom = np.exp(wave[2])
    cx = np.clip(wave[0], -(1 - scene.aspect[0] / zoom), 1 - scene.aspect[0] / zoom)
    cy = np.clip(wave[1], -(1 - scene.aspect[1] / zoom), 1 - scene.aspect[1] / zoom)
    return cx, cy, zoom


def _render(scene: _Scene, times: np.ndarray, height: int, width: int) -> Tensor:
    """Frames at the given times (seconds) -> float32 (n, 3, H, W) in [0, 1]."""
    n = len(times)
    cx, cy, zoom = _camera(scene, times)
    # Frame normalised coords (u, v) in [-1, 1] -> scene coords: x = cx + u * half_w / zoom.
    to_scene = np.zeros((n, 2, 3))
    to_scene[:, 0, 0], to_scene[:, 0, 2] = scene.aspect[0] / zoom, cx
    to_scene[:, 1, 1], to_scene[:, 1, 2] = scene.aspect[1] / zoom, cy
    frames = _sample(scene.background, to_scene, height, width)[:, :3]
    for sprite in scene.sprites:
        # Scene coords -> sprite coords in [-1, 1]: rotate by -angle about the (wrapped) centre, divide by radius.
        span = 2 + 2 * _WRAP_MARGIN * sprite.radius  # wrap once the whole sprite has left the scene
        centre = (sprite.position[:, None] + sprite.velocity[:, None] * times[None] + span / 2) % span - span / 2
        angle = sprite.angle + sprite.spin * times
        amp, freq, phase = sprite.pulse
        radius = sprite.radius * (1 + amp * np.sin(2 * math.pi * freq * times + phase))
        cos, sin = np.cos(angle) / radius, np.sin(angle) / radius
        rotation = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)  # (n, 2, 2)
        to_sprite = np.concatenate(
            [rotation @ to_scene[:, :, :2], (rotation @ (to_scene[:, :, 2:] - centre.T[..., None]))], 2
        )
        rgba = _sample(sprite.rgba, to_sprite, height, width)  # (n, 4, H, W), zero outside the sprite
        frames = torch.lerp(frames, rgba[:, :3], rgba[:, 3:])
    amp, freq, phase = scene.fade
    if amp:
        gain = 1 + amp * np.sin(2 * math.pi * freq * times + phase)
        frames = frames * torch.from_numpy(gain).float().view(n, 1, 1, 1)
    return frames.clamp_(0, 1)


def _sample(source: Tensor, theta: np.ndarray, height: int, width: int) -> Tensor:
    """Bilinear samples of source (1, C, S, S) at the affine grids theta (n, 2, 3) -> (n, C, H, W); zeros outside."""
    theta_t = torch.from_numpy(theta).float()
    grid = F.affine_grid(theta_t, [len(theta), source.shape[1], height, width], align_corners=False)
    return F.grid_sample(source.expand(len(theta), -1, -1, -1), grid, align_corners=False, padding_mode="zeros")


def _to_uint8(frames: Tensor) -> np.ndarray:
    """float (n, 3, H, W) in [0, 1] -> uint8 (n, H, W, 3)."""
    return (frames.permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()


def render_procedural_video(
    rng: np.random.Generator, num_frames: int, height: int, width: int | None = None, fps: float = 24.0
) -> np.ndarray:
    """Render one procedural clip (see the module docstring); a pure function of the generator state.

    Args:
        rng: the only source of randomness.
        num_frames: T.
        height: H.
        width: W (default H).
        fps: frames per second; motion is defined in seconds, so a lower rate moves more per frame.

    Returns:
        uint8 array (T, H, W, 3).
    """
    width = height if width is None else width
    if min(num_frames, height, width) < 1 or not fps > 0:
        raise ConfigError(
            f"need positive num_frames, height, width and fps, got {num_frames}, {height}, {width}, {fps}"
        )
    scene = _sample_scene(rng, height, width)
    with torch.no_grad():
        return _to_uint8(_render(scene, np.arange(num_frames) / fps, height, width))


def procedural_video_frames(
    seed: int, num_frames: int, height: int, width: int, fps: float = 24.0
) -> Iterator[np.ndarray]:
    """Frames uint8 (H, W, 3) of one long procedural clip, rendered a few at a time (memory does not grow with
    the length). The same seed gives the same frames."""
    if min(num_frames, height, width) < 1 or not fps > 0:
        raise ConfigError(
            f"need positive num_frames, height, width and fps, got {num_frames}, {height}, {width}, {fps}"
        )
    scene = _sample_scene(np.random.default_rng(seed), height, width)
    for start in range(0, num_frames, _FRAMES_PER_CALL):
        times = np.arange(start, min(start + _FRAMES_PER_CALL, num_frames)) / fps
        with torch.no_grad():
            yield from _to_uint8(_render(scene, times, height, width))
