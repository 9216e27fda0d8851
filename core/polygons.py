"""COCO polygon segmentations <-> pixel masks, in COCO's pixel convention: pixel (row r,
column c) is the unit square [c, c+1] x [r, r+1], so its centre is (c + 0.5, r + 0.5).

* ``mask_to_polygons``: the outline of a mask as COCO polygons (one flat
  ``[x0, y0, x1, y1, ...]`` ring per 4-connected part), what PoseLab's renders write as
  ``segmentation``. The rings follow the boundary half-way between a person pixel and a
  background pixel (marching squares at level 0.5), simplified to ``tolerance`` pixels
  (below half a pixel, so that no pixel centre changes side on straight runs and
  corners). Holes (an arm bent back to the body leaves one) are filled: a COCO polygon
  has no way to express them.
* ``polygons_to_mask``: the pixels whose centres fall inside any ring (even-odd rule per
  ring, union over rings), optionally after mapping the rings through an axis-aligned
  scale and offset, e.g. from scene pixels into a resized crop. The centre rule keeps
  ``polygons_to_mask(mask_to_polygons(m))`` within a thin band of ``m``; drawing the rings
  with a line rasteriser would add every pixel the boundary touches.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from contourpy import FillType, contour_generator


def _simplify_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring (N, 2) without its repeated closing point: the
    vertices that keep every dropped one within ``tolerance`` of the kept outline."""
    n = len(ring)
    if n <= 3 or tolerance <= 0:
        return ring
    far = int(np.argmax(((ring - ring[0]) ** 2).sum(1)))   # split the ring at its two far ends
    keep = np.zeros(n, bool)
    keep[[0, far]] = True
    stack = [(0, far), (far, n)]                             # index n is vertex 0 again
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        pa, pb, between = ring[a], ring[b % n], ring[a + 1:b]
        d = pb - pa
        length = float(np.hypot(d[0], d[1]))
        if length > 0:
            dist = np.abs(d[0] * (between[:, 1] - pa[1]) - d[1] * (between[:, 0] - pa[0])) / length
        else:
            dist = np.hypot(between[:, 0] - pa[0], between[:, 1] - pa[1])
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return ring[keep]


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.4) -> list[list[float]]:
    """(H, W) bool -> COCO polygons (flat x, y lists in pixels, 2 decimals), one per
    4-connected part (pixels that touch only at a corner are separate rings), largest
    first; [] for an empty mask."""
    mask = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    # The mask's bounding box with a one-pixel empty border, so every ring closes.
    sub = np.zeros((rows[-1] - rows[0] + 3, cols[-1] - cols[0] + 3))
    sub[1:-1, 1:-1] = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # contourpy puts sample (i, j) at (x, y) = (j, i); in the mask that sample is pixel
    # (rows[0] - 1 + i, cols[0] - 1 + j), whose centre is half a pixel further on.
    offset = np.array([cols[0] - 0.5, rows[0] - 0.5])
    points, offsets = contour_generator(z=sub, fill_type=FillType.OuterOffset).filled(0.5, 2.0)
    rings = []
    for pts, off in zip(points, offsets):
        ring = _simplify_ring(pts[off[0]:off[1] - 1], tolerance)   # the outer ring; holes dropped
        if len(ring) >= 3:
            rings.append(ring + offset)
    rings.sort(key=lambda r: -abs(_area(r)))
    return [[round(float(v), 2) for v in r.ravel()] for r in rings]


def _area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygons_to_mask(polygons: Iterable[Sequence[float]], shape: tuple[int, int], *,
                     scale: float = 1.0, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(H, W) bool: pixels whose centres lie inside any of the COCO polygons, each point
    (x, y) first mapped to ((x - origin[0]) * scale, (y - origin[1]) * scale). Rings with
    fewer than three points are ignored."""
    h, w = shape
    out = np.zeros((h, w), bool)
    cy, cx = np.mgrid[0:h, 0:w] + 0.5                         # (H, W) pixel centres
    for poly in polygons:
        xy = (np.asarray(poly, np.float64).reshape(-1, 2) - origin) * scale
        if len(xy) < 3:
            continue
        inside = np.zeros((h, w), bool)
        for (x0, y0), (x1, y1) in zip(xy, np.roll(xy, -1, axis=0)):
            if y0 == y1:
                continue                                      # horizontal edges cross no scanline
            crosses = (y0 > cy) != (y1 > cy)
            x_at = x0 + (cy - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (cx < x_at)
        out |= inside
    return out
