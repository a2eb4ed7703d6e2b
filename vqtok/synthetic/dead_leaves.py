"""Procedural "dead leaves" images, so that a tokenizer can be trained (and the app, tests and benchmarks fed)
with no data set at all.

A dead-leaves image is a stack of random opaque shapes dropped on top of each other. With shape sizes drawn
from a power law (density ∝ r^-3) the result is scale-invariant and has the edge, occlusion and 1/f spectrum
statistics of natural images, which makes it a good stand-in for photos when training a tokenizer.

Rendering is vectorised, because painting thousands of shapes one by one from Python is far too slow:

1. Shapes are grouped by kind and bounding-box size; each group's signed distances are computed in one numpy
   expression over a box of the group's largest size, giving ``(pixel, depth, alpha)`` entries.
2. A scatter-max over ``depth * 256 + alpha`` finds, per pixel, the front-most shape and its alpha; a second
   one, over the entries behind the front shape's anti-aliased edge pixels, finds the shape behind it.
3. The front shape is alpha-blended over the one behind, which is blended over the background. Where three
   shapes' edges meet inside one pixel the back-most edge loses its anti-aliasing, which is invisible.

Arrays of per-shape parameters keep the shape axis last: numpy's loops are slow when the innermost axis is
short (e.g. 3 colour channels or 6 polygon edges).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from vqtok.errors import ConfigError

__all__ = ["render_dead_leaves"]

_MAX_EDGES = 6  # E: polygons have 3..6 edges, rectangles and strokes 4; unused edges repeat edge 0
_FILL_FLAT, _FILL_GRADIENT, _FILL_STRIPES, _FILL_NOISE = 0, 1, 2, 3
_FILL_PROBS = (0.45, 0.25, 0.15, 0.15)
_KIND_ELLIPSE, _KIND_RECTANGLE, _KIND_POLYGON, _KIND_STROKE = 0, 1, 2, 3
_KIND_PROBS = (0.4, 0.25, 0.25, 0.1)
# Mean area of each kind in units of r² (r = bounding radius), and of strokes in units of r; see _shape_geometry.
_KIND_AREA_R2 = np.array([1.96, 1.69, 1.3, 0.0])
_STROKE_AREA_R = 3.1
_COVERAGE = (2.25, 3.25)  # total shape area per image, in canvas areas (e^-2.25..e^-3.25 of the background shows)
_R_MIN = (1.5, 16.0)  # range of the per-image smallest radius, pixels (log-uniform: busy to calm scenes)
_FINE_GROUPS_FROM = 1000  # shapes per image from which rasterisation groups are finer (see _rasterise)
_AUGMENT_PROB = 0.25  # probability of each of blur, noise and JPEG re-compression
_SUPERSAMPLE_PROB = 0.5  # probability of rendering at twice the size and downscaling (a photo's soft detail)


@dataclass
class _Shapes:
    """N shapes in painting order (index 0 at the back). Positions and lengths are in pixels."""

    cx: np.ndarray  # (N,) float32 centre x
    cy: np.ndarray  # (N,) float32 centre y
    box: np.ndarray  # (4, N) int64 bounding box x0, y0, width, height, clipped to the canvas (may be empty)
    num_edges: np.ndarray  # (N,) int64: 0 for ellipses, else the polygon's number of distinct edges
    ell: np.ndarray  # (4, N) float32 ellipse cos θ, sin θ, 1/a², 1/b²
    edges: np.ndarray  # (3, E, N) float32 half-planes nx, ny, offset: inside iff nx*dx + ny*dy <= offset
    colour0: np.ndarray  # (3, N) float32 RGB in [0, 1]
    dcolour: np.ndarray  # (3, N) float32 second texture colour minus colour0
    fill: np.ndarray  # (N,) int64, one of the _FILL_* codes
    tex: np.ndarray  # (5, N) float32 texture direction gx, gy, frequency, phase, contrast


def _uniform(rng: np.random.Generator, low: float, high: float, shape: int | tuple[int, ...]) -> np.ndarray:
    """Uniform float32 samples in [low, high) (float32 keeps the vectorised maths fast)."""
    return rng.random(shape, dtype=np.float32) * (high - low) + low


def _normal(rng: np.random.Generator, scale: float, n: int) -> np.ndarray:
    """Zero-mean Gaussian float32 samples."""
    return rng.standard_normal(n, dtype=np.float32) * scale


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV to RGB; inputs (N,) float32 in [0, 1], output (3, N) float32 in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32)[:, None] + h * 6.0) % 6.0  # (3, N)
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (v - v * s * ramp).astype(np.float32)


def _sample_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Natural-ish colours: hues clustered around a small per-image palette, mostly low saturation.

    Returns:
        ``(colour0, colour1)``, each (3, n) float32 in [0, 1]; colour1 is the second colour of a texture,
        usually a variation of colour0.
    """

    def uniform01() -> np.ndarray:
        return rng.random(n, dtype=np.float32)

    palette = rng.random(rng.integers(2, 6), dtype=np.float32)
    hue = np.where(uniform01() < 0.7, rng.choice(palette, n) + _normal(rng, 0.03, n), uniform01()) % 1.0
    sat = np.clip(uniform01() ** 1.7 * rng.uniform(0.5, 1.3), 0.0, 1.0)
    val = np.clip((uniform01() + uniform01()) * rng.uniform(0.35, 0.55), 0.0, 1.0)
    related = uniform01() < 0.75
    hue1 = np.where(related, hue + _normal(rng, 0.05, n), uniform01()) % 1.0
    sat1 = np.clip(np.where(related, sat + _normal(rng, 0.15, n), uniform01() ** 1.7), 0.0, 1.0)
    val1 = np.clip(np.where(related, val + _normal(rng, 0.3, n), uniform01()), 0.0, 1.0)
    return _hsv_to_rgb(hue, sat, val), _hsv_to_rgb(hue1, sat1, val1)


def _sample_radii(rng: np.random.Generator, n: int, r_min: float, r_max: float) -> np.ndarray:
    """n radii with density ∝ r^-3 on [r_min, r_max] (inverse-CDF sampling), float64."""
    return (r_min**-2 - rng.random(n) * (r_min**-2 - r_max**-2)) ** -0.5


def _polygon_edges(vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Half-planes of convex polygons from counter-clockwise vertices (E, n); repeated vertices are allowed.

    Returns:
        (3, E, n) float32: outward unit normals nx, ny and offsets; a zero-length edge (repeated vertex)
        repeats edge 0, so that every polygon has exactly E half-planes.
    """
    ex = np.roll(vx, -1, axis=0) - vx  # (E, n) edge vectors
    ey = np.roll(vy, -1, axis=0) - vy
    length = np.hypot(ex, ey)
    safe = np.maximum(length, 1e-6)
    nx, ny = ey / safe, -ex / safe  # outward for counter-clockwise order
    edges = np.stack([nx, ny, nx * vx + ny * vy])  # (3, E, n)
    return np.where(length > 1e-6, edges, edges[:, :1]).astype(np.float32)


def _polygon_vertices(
    rng: np.random.Generator, r: np.ndarray, aspect: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convex polygons: 3..E points at sorted random angles on an ellipse of semi-axes (r, aspect * r).

    Returns:
        ``(x, y, m)``: vertices (E, n) float32, counter-clockwise, unused ones repeating vertex 0; and the
        number of vertices (n,).
    """
    m = rng.integers(3, _MAX_EDGES + 1, len(r))
    used = np.arange(_MAX_EDGES)[:, None] < m  # (E, n)
    gaps = np.where(used, _uniform(rng, 0.4, 1.0, used.shape), np.float32(0.0))
    angles = np.where(used, (np.cumsum(gaps, axis=0) - gaps) * (2 * np.pi / gaps.sum(axis=0)), 0.0)
    return r * np.cos(angles), r * aspect * np.sin(angles), m


def _rectangle_vertices(
    rng: np.random.Generator, r: np.ndarray, aspect: np.ndarray, stroke: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rectangles with half-diagonal r, or strokes (thin rectangles) of half-length r and half-width 0.35-1.2.

    Returns:
        ``(x, y, 4)``: vertices (E, n) float32, counter-clockwise, vertices 4.. repeating vertex 0.
    """
    half_w = np.where(stroke, np.minimum(_uniform(rng, 0.35, 1.2, len(r)), r), r * aspect / np.hypot(1.0, aspect))
    half_l = np.where(stroke, r, r / np.hypot(1.0, aspect))
    pad = [1] * (_MAX_EDGES - 4)
    corner_x, corner_y = np.array([[1, -1, -1, 1, *pad], [1, 1, -1, -1, *pad]], np.float32)[:, :, None]  # (E, 1)
    return corner_x * half_l, corner_y * half_w, 4


def _shape_geometry(
    rng: np.random.Generator, r: np.ndarray, kind: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Geometry of shapes of bounding radius ``r`` (N,) float32 and ``kind`` (N,) (_KIND_*), rotated at random.

    Returns:
        ``(ell, edges, num_edges, extent)``: ellipse parameters (4, N), polygon half-planes (3, E, N), number
        of edges (N,) (see :class:`_Shapes`), and half-width and half-height of the bounding box (2, N).
    """
    n = len(r)
    theta, aspect = _uniform(rng, 0.0, math.pi, n), _uniform(rng, 0.25, 1.0, n)
    cos, sin = np.cos(theta), np.sin(theta)
    b = np.maximum(r * aspect, 0.5)  # ellipses: semi-axes (r, b)
    ell = np.stack([cos, sin, 1.0 / (r * r), 1.0 / (b * b)])
    extent = np.stack([np.hypot(r * cos, b * sin), np.hypot(r * sin, b * cos)])  # ellipses; polygons below
    edges = np.zeros((3, _MAX_EDGES, n), dtype=np.float32)
    num_edges = np.where(kind == _KIND_ELLIPSE, 0, 4)
    p = np.flatnonzero(kind == _KIND_POLYGON)
    q = np.flatnonzero((kind == _KIND_RECTANGLE) | (kind == _KIND_STROKE))
    for ids, (vx, vy, m) in (
        (p, _polygon_vertices(rng, r[p], aspect[p])),
        (q, _rectangle_vertices(rng, r[q], aspect[q], kind[q] == _KIND_STROKE)),
    ):
        vx, vy = vx * cos[ids] - vy * sin[ids], vx * sin[ids] + vy * cos[ids]  # (E, n_ids) rotated by θ
        edges[:, :, ids] = _polygon_edges(vx, vy)
        num_edges[ids] = m
        extent[:, ids] = np.stack([np.abs(vx).max(axis=0), np.abs(vy).max(axis=0)])
    return ell, edges, num_edges, extent


def _sample_textures(rng: np.random.Generator, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill codes (N,) and texture parameters (5, N): direction gx, gy, frequency, phase, contrast.

    The frequency is 1 / (gradient length) for gradients, 2π / period (period >= 3 px) for stripes and
    1 / (cell size of 1.5-12 px) for noise.
    """
    n = len(r)
    fill = rng.choice(4, n, p=_FILL_PROBS)
    direction = _uniform(rng, 0.0, 2 * math.pi, n)
    log_period = math.log(3.0) + rng.random(n, dtype=np.float32) * np.log((np.maximum(r, 3.0) + 1.0) / 3.0)
    freq = np.where(
        fill == _FILL_GRADIENT, 1.0 / (2.0 * r * _uniform(rng, 0.5, 1.5, n)), 2 * math.pi / np.exp(log_period)
    )
    freq = np.where(fill == _FILL_NOISE, 1.0 / _uniform(rng, 1.5, 12.0, n), freq)
    phase = _uniform(rng, 0.0, 2 * math.pi, n)
    contrast = _uniform(rng, 0.5, 3.0, n)
    return fill, np.stack([np.cos(direction), np.sin(direction), freq, phase, contrast]).astype(np.float32)


def _bounding_boxes(cx: np.ndarray, cy: np.ndarray, extent: np.ndarray, size: int) -> np.ndarray:
    """Pixel boxes (4, N) int64 x0, y0, width, height, clipped to the canvas, for half-sizes ``extent`` (2, N).

    A pixel x can be touched only if its centre x + 0.5 lies within extent + 0.5 of the shape's centre.
    """
    x0 = np.clip(np.floor(cx - extent[0] - 1.0), 0, size)
    y0 = np.clip(np.floor(cy - extent[1] - 1.0), 0, size)
    x1 = np.clip(np.floor(cx + extent[0]) + 1, 0, size)
    y1 = np.clip(np.floor(cy + extent[1]) + 1, 0, size)
    return np.stack([x0, y0, np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)]).astype(np.int64)


def _sample_shapes(rng: np.random.Generator, size: int, scale: int = 1) -> _Shapes:
    """Shapes with power-law radii, enough that their total area covers the canvas _COVERAGE times; ``scale`` > 1
    renders a scene at that many times its final size (radii grow with it)."""
    r_max = max(size / 2.0, 2.5)
    r_min = min(scale * math.exp(rng.uniform(*np.log(_R_MIN))), r_max / 2)  # small canvases (sprites) stay busy
    budget = rng.uniform(*_COVERAGE) * size * size
    mean_area = 1.6 * r_min**2 * math.log(r_max / r_min)  # ≈ E[r²] * mean area factor, with E[r²] ≈ 2 r_min² ln
    r = _sample_radii(rng, int(2 * budget / mean_area) + 16, r_min, r_max)
    kind = rng.choice(4, len(r), p=_KIND_PROBS)
    area = _KIND_AREA_R2[kind] * r * r + (kind == _KIND_STROKE) * _STROKE_AREA_R * r
    inside = (size / (size + r)) ** 2  # centres spread over (size + r)², see below
    n = int(np.searchsorted(np.cumsum(area * inside), budget)) + 1
    r, kind = r[:n].astype(np.float32), kind[:n]
    n = len(r)
    # Centres may lie up to half a radius outside the canvas, so borders are covered like the interior.
    cx = (rng.random(n) * (size + r) - r / 2).astype(np.float32)
    cy = (rng.random(n) * (size + r) - r / 2).astype(np.float32)
    ell, edges, num_edges, extent = _shape_geometry(rng, r, kind)
    colour0, colour1 = _sample_colours(rng, n)
    fill, tex = _sample_textures(rng, r)
    box = _bounding_boxes(cx, cy, extent, size)
    return _Shapes(cx, cy, box, num_edges, ell, edges, colour0, colour1 - colour0, fill, tex)


def _pixel_offsets(
    shapes: _Shapes, ids: np.ndarray, width: int, height: int, shape_minor: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets from each shape's centre to the pixel centres of a width x height box at its box's corner.

    Returns:
        ``(dx, dy, x, y)``: float32 offsets and int64 pixel coordinates, broadcastable to the group's grid,
        (H, W, n) if ``shape_minor`` (many small shapes) else (n, H, W) (few large shapes), so that the
        innermost axis is the long one.
    """
    x0, y0, cx, cy = shapes.box[0, ids], shapes.box[1, ids], shapes.cx[ids], shapes.cy[ids]
    if shape_minor:  # x: (1, W, n), y: (H, 1, n)
        x, y = x0 + np.arange(width)[None, :, None], y0 + np.arange(height)[:, None, None]
    else:  # x: (n, 1, W), y: (n, H, 1)
        x0, y0, cx, cy = x0[:, None, None], y0[:, None, None], cx[:, None, None], cy[:, None, None]
        x, y = x0 + np.arange(width), y0 + np.arange(height)[:, None]
    return (x + 0.5 - cx).astype(np.float32), (y + 0.5 - cy).astype(np.float32), x, y


def _ellipse_level(
    ell: np.ndarray, dx: np.ndarray, dy: np.ndarray, per_shape: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Implicit function of ellipses over a grid of centre offsets (dx, dy).

    Args:
        ell: (4, n) cos θ, sin θ, 1/a², 1/b² of the group's ellipses.
        dx, dy: offsets broadcastable to the grid.
        per_shape: makes an (n,) array broadcastable to the grid.

    Returns:
        ``(level, grad)`` on the grid: ``u²/a² + v²/b² - 1`` (< 0 inside) and half its gradient norm, so
        ``level / (2 grad)`` is the first-order signed distance in pixels.
    """
    # In place where possible: fewer large temporaries is measurably faster (allocation and page faults).
    cos, sin, ia2, ib2 = (per_shape(row) for row in ell)
    u2 = np.add(dx * cos, dy * sin)  # u, the coordinate along the ellipse's first axis...
    v2 = np.subtract(dy * cos, dx * sin)  # ...and v along its second axis
    u2 *= u2
    v2 *= v2
    level = u2 * ia2
    level += v2 * ib2
    level -= 1.0
    u2 *= ia2 * ia2
    v2 *= ib2 * ib2
    u2 += v2
    return level, np.sqrt(u2, out=u2)


def _polygon_distance(
    edges: np.ndarray, num_edges: int, dx: np.ndarray, dy: np.ndarray, per_shape: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Signed distance (pixels, < 0 inside) of convex polygons: the largest distance to their edges' lines.

    Args:
        edges: (3, E, n) half-planes of the group's polygons; only the first ``num_edges`` are used.
        num_edges: the group's largest number of edges (polygons with fewer repeat edge 0).
        dx, dy: offsets broadcastable to the grid.
        per_shape: makes an (n,) array broadcastable to the grid.
    """

    def edge_distance(k: int, out: np.ndarray | None = None) -> np.ndarray:
        nx, ny, off = (per_shape(row) for row in edges[:, k])
        return np.add(nx * dx - off, ny * dy, out=out)

    dist = edge_distance(0)
    scratch = np.empty_like(dist)
    for k in range(1, num_edges):
        np.maximum(dist, edge_distance(k, scratch), out=dist)
    return dist


def _group_entries(shapes: _Shapes, ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a group of shapes of one kind (all ellipses or all polygons) over their bounding boxes.

    Args:
        shapes: all shapes of the image.
        ids: (n,) indices of the shapes in this group; all are evaluated over a box of the group's largest
            width and height.
        size: canvas side S.

    Returns:
        ``(pixel, depth, alpha)`` for every (pixel, shape) pair where the shape covers part of the pixel, each
        of shape (k,): the flat canvas index ``y * S + x`` (int64), the shape id (int32) and the anti-aliased
        coverage ``clip(0.5 - d, 0, 1)`` of the signed distance d in pixels (float32).
    """
    n, width, height = len(ids), int(shapes.box[2, ids].max()), int(shapes.box[3, ids].max())
    shape_minor = n >= width
    dx, dy, x, y = _pixel_offsets(shapes, ids, width, height, shape_minor)

    def per_shape(values: np.ndarray) -> np.ndarray:  # (n,) -> broadcastable to the grid
        return values if shape_minor else values[:, None, None]

    num_edges = int(shapes.num_edges[ids].max())
    if num_edges == 0:  # ellipses
        level, grad = _ellipse_level(shapes.ell[:, ids], dx, dy, per_shape)
        touched = level < grad  # distance level / (2 grad) < 0.5 px
    else:
        dist = _polygon_distance(shapes.edges[:, :, ids], num_edges, dx, dy, per_shape)
        touched = dist < 0.5
    if int(x.max()) >= size or int(y.max()) >= size:  # the common box sticks out of the canvas
        touched &= (x < size) & (y < size)
    flat = np.flatnonzero(touched)
    d = level.ravel()[flat] / (2.0 * grad.ravel()[flat] + 1e-12) if num_edges == 0 else dist.ravel()[flat]
    if shape_minor:  # grid (H, W, n)
        cell, k = np.divmod(flat, n)
    else:  # grid (n, H, W)
        k, cell = np.divmod(flat, height * width)
    row, col = np.divmod(cell, width)
    pixel = (shapes.box[1, ids[k]] + row) * size + shapes.box[0, ids[k]] + col
    return pixel, ids[k].astype(np.int32), np.clip(0.5 - d, 0.0, 1.0)


def _rasterise_groups(shapes: _Shapes, ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated :func:`_group_entries` of shapes ``ids`` (visible ones only).

    Shapes are grouped by kind (ellipse, polygon of <= 4 edges, polygon of 5-6 edges) and by bounding-box
    size in steps of √2, so that each group's common box wastes little work. With few shapes (small images)
    the fixed cost per group dominates, so they are grouped coarser: ellipse or polygon, size steps of 2.
    """
    width, height = shapes.box[2, ids], shapes.box[3, ids]
    fine = len(ids) > _FINE_GROUPS_FROM
    bucket = np.floor((2.0 if fine else 1.0) * np.log2(np.maximum(np.maximum(width, height), 1))).astype(np.int64)
    num_edges = shapes.num_edges[ids]
    edge_class = np.where(num_edges == 0, 0, np.where((num_edges <= 4) | (not fine), 1, 2))
    group_key = bucket * 3 + edge_class
    parts = [_group_entries(shapes, ids[group_key == key], size) for key in np.unique(group_key)]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    pixel, depth, alpha = (np.concatenate([part[j] for part in parts]) for j in range(3))
    return pixel, depth, alpha


def _rasterise(shapes: _Shapes, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixel, depth, alpha) of every visible shape over every pixel it touches (see :func:`_group_entries`)."""
    return _rasterise_groups(shapes, np.flatnonzero((shapes.box[2] > 0) & (shapes.box[3] > 0)), size)


def _texture(shapes: _Shapes, ids: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Colour of shapes ``ids`` (k,) at pixel centres ``(x, y)`` (k,) float32, as (3, k) float32 in [0, 1]."""
    fill = shapes.fill[ids]
    t = np.zeros(len(ids), dtype=np.float32)  # position between colour0 (0) and colour1 (1)
    for code in (_FILL_GRADIENT, _FILL_STRIPES, _FILL_NOISE):
        sel = np.flatnonzero(fill == code)
        if len(sel) == 0:
            continue
        k = ids[sel]
        gx, gy, freq, phase, contrast = shapes.tex[:, k]
        if code == _FILL_NOISE:
            t[sel] = _value_noise(x[sel] * freq, y[sel] * freq, k)
            continue
        proj = (x[sel] - shapes.cx[k]) * gx + (y[sel] - shapes.cy[k]) * gy  # position along the direction
        if code == _FILL_GRADIENT:
            t[sel] = np.clip(0.5 + proj * freq, 0.0, 1.0)
        else:
            t[sel] = np.clip(0.5 + contrast * np.sin(proj * freq + phase), 0.0, 1.0)
    return np.take(shapes.colour0, ids, axis=1) + np.take(shapes.dcolour, ids, axis=1) * t


def _value_noise(u: np.ndarray, v: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] at lattice coordinates (u, v) (n,) float32, a different field per shape k.

    Random values at the integer lattice points (a hash of the point and the shape) are blended with smoothstep
    weights, so the texture is continuous, like cloth, foliage or stone seen from afar.
    """
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    wu, wv = fu * fu * (3.0 - 2.0 * fu), fv * fv * (3.0 - 2.0 * fv)
    iu, iv, salt = iu.astype(np.int64), iv.astype(np.int64), k.astype(np.int64) * 83492791

    def corner(du: int, dv: int) -> np.ndarray:
        h = ((iu + du) * 73856093) ^ ((iv + dv) * 19349663) ^ salt
        return (h % 1021).astype(np.float32) * np.float32(1.0 / 1020.0)

    top = corner(0, 0) + (corner(1, 0) - corner(0, 0)) * wu
    bottom = corner(0, 1) + (corner(1, 1) - corner(0, 1)) * wu
    return top + (bottom - top) * wv


def _top_layer(pixel: np.ndarray, key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, the front-most of the entries ``(pixel, key)``, where ``key = depth * 256 + alpha_u8``.

    Returns:
        ``(key, depth, alpha)``, each (S*S,): the winning key and depth (-1 where no entry) and its alpha in
        [0, 1] (0 where no entry).
    """
    top = np.full(size * size, -1, dtype=np.int32)
    np.maximum.at(top, pixel, key)
    return top, top >> 8, (top & 255).astype(np.float32) * np.float32(1.0 / 255.0)


def _composite(shapes: _Shapes, canvas: np.ndarray, size: int) -> np.ndarray:
    """Paint ``shapes`` over ``canvas`` (3, S*S): the front shape over the one behind it over the canvas.

    Only the two front-most shapes of each pixel are blended, and the second one only where the front one's
    anti-aliased alpha is below 1 (its edge pixels). Alpha is quantised to 1/255 on the way.

    Returns:
        The painted canvas, (3, S*S) float32 in [0, 1].
    """
    pixel, depth, alpha = _rasterise(shapes, size)  # each (k,)
    key = (depth << 8) | np.rint(alpha * 255.0).astype(np.int32)  # orders by depth and carries alpha
    front_key, front, front_alpha = _top_layer(pixel, key, size)
    covering = front_key[pixel]
    candidates = np.flatnonzero((key < covering) & (covering & 255 < 255))  # entries behind a front edge
    _, behind, behind_alpha = _top_layer(pixel[candidates], key[candidates], size)
    where = np.flatnonzero(behind >= 0)
    a = behind_alpha[where]
    x, y = (where % size + 0.5).astype(np.float32), (where // size + 0.5).astype(np.float32)
    canvas[:, where] = canvas[:, where] * (1.0 - a) + _texture(shapes, behind[where], x, y) * a
    centres = np.arange(size, dtype=np.float32) + 0.5
    x, y = np.tile(centres, size), np.repeat(centres, size)  # (S*S,) every pixel centre, row-major
    return canvas * (1.0 - front_alpha) + _texture(shapes, np.maximum(front, 0), x, y) * front_alpha


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat or linear-gradient background, (3, S*S) float32 in [0, 1]."""
    colour0, colour1 = _sample_colours(rng, 1)  # (3, 1) each
    if rng.random() < 0.5:
        canvas = np.empty((3, size * size), dtype=np.float32)
        canvas[:] = colour0
        return canvas
    angle = rng.uniform(0.0, 2 * np.pi)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    proj = (coords[None, :] * math.cos(angle) + coords[:, None] * math.sin(angle)).reshape(1, -1)  # (1, S*S)
    t = np.clip(0.5 + proj * rng.uniform(0.5, 2.0), 0.0, 1.0)  # Python floats keep float32 (NEP 50)
    return colour0 + (colour1 - colour0) * t


def _augment(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Random camera-like degradations of a uint8 (S, S, 3) image: blur, sensor noise, JPEG re-compression."""
    if rng.random() < _AUGMENT_PROB:
        radius = rng.uniform(0.3, 1.5)
        image = np.array(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    if rng.random() < _AUGMENT_PROB:
        noisy = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(1.0, 8.0)
        image = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < _AUGMENT_PROB:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(30, 96)))
        buffer.seek(0)
        with Image.open(buffer, formats=["JPEG"]) as decoded:
            image = np.array(decoded.convert("RGB"))
    return image


def render_dead_leaves(rng: np.random.Generator, size: int) -> np.ndarray:
    """Render one random dead-leaves image.

    A flat or gradient background, then 2.25-3.25 canvas areas' worth of occluding shapes painted back to front
    (about 6% of the background stays visible): rotated ellipses, rotated rectangles, convex polygons and thin
    strokes, with radii drawn from a density ∝ r^-3 between r_min (1.5-16 px, log-uniform per image: busy to
    calm scenes) and size/2, each filled with a flat colour, a linear gradient, sinusoidal stripes or smooth value
    noise, with anti-aliased edges. Colours come from a per-image palette of hues with mostly low saturation.
    Half of the images are rendered at twice the size and downscaled (Lanczos), for a photo's soft small detail.
    Then, each with probability 1/4: Gaussian blur, Gaussian noise and JPEG re-compression at quality 30-95.

    Args:
        rng: the only source of randomness; the same generator state gives the same image.
        size: side S of the square image, in pixels (>= 1).

    Returns:
        uint8 array of shape (S, S, 3).

    Raises:
        ConfigError: ``size`` is below 1.
    """
    if size < 1:
        raise ConfigError(f"image size must be at least 1 pixel, got {size}")
    scale = 2 if rng.random() < _SUPERSAMPLE_PROB else 1
    side = size * scale
    canvas = _background(rng, side)  # (3, side*side) float32 in [0, 1]
    canvas = _composite(_sample_shapes(rng, side, scale), canvas, side)
    image = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(3, side, side)
    image = np.ascontiguousarray(image.transpose(1, 2, 0))  # (side, side, 3)
    if scale > 1:
        image = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    return _augment(rng, image)  # (S, S, 3)
