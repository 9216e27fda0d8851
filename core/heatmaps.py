"""Heatmap maths (docs/ARCHITECTURE.md, "Metrics" and "Sequence datasets"): a basic module,
shared by the temporal models, the simulated estimator and the sequence datasets.

Conventions, used by every function here and by the sequence datasets:

* A heatmap of size (H, W) covers the estimator's predicted person box ``(x0, y0, x1, y1)``
  (image pixels, top-down style). Heatmap coordinates are *pixel centres*: pixel ``i``
  covers ``[i - 0.5, i + 0.5]``, so the box's left edge is ``u = -0.5`` and its right
  edge ``u = W - 0.5``::

      u = (x - x0) / (x1 - x0) * W - 0.5        v = (y - y0) / (y1 - y0) * H - 0.5

* Input preprocessing (``normalize_heatmaps``): negative values set to 0, then each
  heatmap scaled to sum ``c = 255``. An all-zero (or all-negative) heatmap stays zero:
  it carries no location and must not be turned into a uniform map.
* Ground-truth targets (``gaussian_heatmaps``): one isotropic Gaussian per keypoint,
  sigma ``default_sigma(size) = size / 32`` heatmap pixels (2 px at 64, 1 px at 32, the
  usual 64-px choice of SimpleBaseline/HRNet scaled with the map), evaluated at the pixel
  centres, truncated at the map's edge and then normalised like the input (sum 255), so
  targets and inputs live on the same scale. A keypoint outside the box is first moved
  to the nearest border pixel (``clamp_to_heatmap``); an invisible keypoint gets an
  all-zero map (its loss is masked anyway).
* Decoding (``decode_heatmaps``): argmax, then a sub-pixel offset per axis from a
  parabola fitted through the log of the peak and its two neighbours (for a Gaussian
  peak the log is exactly a parabola, so this recovers a fractional position exactly;
  DARK, Zhang et al. 2020, does the 2-D version). The offset is clipped to +-0.5 px and
  is 0 at the map's edge or where the three values are not a local maximum.
  ``method="quarter"`` gives the classic quarter-pixel shift toward the higher
  neighbour (SimpleBaseline) instead. A flat map (all values equal: an empty input, a
  frame where the estimator found nobody) has no peak and decodes to NaN: the keypoint
  is *missing*, and PCK counts it as wrong, rather than a guess at the map's corner.

Array shapes, written once: heatmaps ``(..., K, H, W)``; points ``(..., K, 2)`` as
``(x, y)`` = ``(u, v)`` in heatmap pixels; boxes ``(..., 4)`` xyxy in image pixels.
Functions take and return torch tensors (``decode_heatmaps``, ``gaussian_heatmaps``) or
work on both numpy arrays and tensors (``normalize_heatmaps``, the box mappings).
"""
from __future__ import annotations

import numpy as np
import torch

HEATMAP_SUM = 255.0  # c of the study: every non-empty heatmap sums to this


def default_sigma(size: int) -> float:
    """Gaussian sigma in heatmap pixels for an (size x size) heatmap: 2 px at 64."""
    return max(size / 32.0, 0.75)


def normalize_heatmaps(heatmaps, total: float = HEATMAP_SUM):
    """Negatives -> 0, then each (H, W) map scaled to sum ``total``; zero maps stay zero.

    Works on numpy arrays and torch tensors of shape (..., H, W); returns float32 of the
    same kind (float16 inputs are summed in float32: 4096 values overflow half precision).
    """
    if isinstance(heatmaps, torch.Tensor):
        x = heatmaps.float().clamp(min=0)
        s = x.sum(dim=(-2, -1), keepdim=True)
        return torch.where(s > 0, x * (total / s.clamp(min=1e-30)), torch.zeros_like(x))
    x = np.maximum(np.asarray(heatmaps, dtype=np.float32), 0)
    s = x.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s > 0, x * (total / np.where(s > 0, s, 1)), 0)
    return out.astype(np.float32)


# --------------------------------------------------------------------- affine maps

def invert_affine(affine: np.ndarray) -> np.ndarray:
    """(..., 2, 3) -> (..., 2, 3): the inverse map, exact up to float rounding."""
    a = np.asarray(affine, dtype=np.float64)
    m = a[..., :2]
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    inv = np.stack([np.stack([m[..., 1, 1], -m[..., 0, 1]], -1),
                    np.stack([-m[..., 1, 0], m[..., 0, 0]], -1)], -2) / det[..., None, None]
    t = -np.einsum("...ij,...j->...i", inv, a[..., 2])
    return np.concatenate([inv, t[..., None]], axis=-1)


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``points`` (..., K, 2) through ``affine`` (..., 2, 3) -> (..., K, 2).

    Leading dimensions broadcast: points (T, K, 2) with affine (T, 2, 3), or one affine
    (2, 3) for all. float64 arithmetic."""
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", a[..., :2], p) + a[..., None, :, 2]



# --------------------------------------------------------------------- box <-> heatmap

def _split_box(boxes):
    x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
    return x0[..., None], y0[..., None], x1[..., None], y1[..., None]


def image_to_heatmap(points, boxes, size: tuple[int, int]):
    """Image pixels -> heatmap pixels. points (..., K, 2), boxes (..., 4), size (H, W).

    Not clamped: a point outside the box maps outside [-0.5, W-0.5]."""
    h, w = size
    x0, y0, x1, y1 = _split_box(boxes)
    u = (points[..., 0] - x0) / (x1 - x0) * w - 0.5
    v = (points[..., 1] - y0) / (y1 - y0) * h - 0.5
    return _stack(points, u, v)


def heatmap_to_image(points, boxes, size: tuple[int, int]):
    """Inverse of ``image_to_heatmap``."""
    h, w = size
    x0, y0, x1, y1 = _split_box(boxes)
    x = (points[..., 0] + 0.5) / w * (x1 - x0) + x0
    y = (points[..., 1] + 0.5) / h * (y1 - y0) + y0
    return _stack(points, x, y)


def box_affines(boxes, size: tuple[int, int]) -> np.ndarray:
    """(..., 2, 3) affine maps of ``heatmap_to_image`` for axis-aligned ``boxes`` (..., 4):
    heatmap pixel (u, v, 1) -> image pixel, the form a rotated crop's mapping also takes."""
    h, w = size
    boxes = np.asarray(boxes, np.float64)
    x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    zero = np.zeros_like(sx)
    return np.stack([np.stack([sx, zero, x0 + 0.5 * sx], -1), np.stack([zero, sy, y0 + 0.5 * sy], -1)], -2)


def to_image(points, affines) -> np.ndarray:
    """Heatmap pixels (..., K, 2) -> image pixels through per-frame ``affines`` (..., 2, 3)."""
    return apply_affine(np.asarray(points, np.float64), affines)


def to_heatmap(points, affines) -> np.ndarray:
    """Image pixels (..., K, 2) -> heatmap pixels: the inverse of ``to_image``. Not clamped."""
    return apply_affine(np.asarray(points, np.float64), invert_affine(np.asarray(affines, np.float64)))


def affine_scale(affines) -> np.ndarray:
    """Image pixels per heatmap pixel of each map (..., 2, 3) -> (...): sqrt |det|."""
    a = np.asarray(affines, np.float64)
    return np.sqrt(np.abs(a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]))


def pool_heatmaps(heatmaps: np.ndarray, affines: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Average-pool (T, K, H, W) heatmaps by ``factor`` and adapt their (T, 2, 3) affines:
    pooled pixel u' covers pixels factor*u' .. factor*u' + factor - 1, whose centre is
    u = factor*u' + (factor - 1) / 2."""
    if factor == 1:
        return heatmaps, affines
    t, k, h, w = heatmaps.shape
    if h % factor or w % factor:
        raise ValueError(f"heatmaps of {h}x{w} cannot be pooled by {factor}")
    pooled = heatmaps.reshape(t, k, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    a = np.asarray(affines, np.float64)
    shift = (factor - 1) / 2
    out = a.copy()
    out[..., :2] = a[..., :2] * factor
    out[..., 2] = a[..., 2] + shift * (a[..., 0] + a[..., 1])
    return pooled.astype(heatmaps.dtype), out


def clamp_to_heatmap(points, size: tuple[int, int]):
    """Move points outside the map onto the nearest border pixel centre, as the study's targets do."""
    h, w = size
    if isinstance(points, torch.Tensor):
        return torch.stack([points[..., 0].clamp(0, w - 1), points[..., 1].clamp(0, h - 1)], -1)
    return np.stack([np.clip(points[..., 0], 0, w - 1), np.clip(points[..., 1], 0, h - 1)], -1)


def _stack(like, a, b):
    if isinstance(like, torch.Tensor):
        return torch.stack([a, b], dim=-1)
    return np.stack([a, b], axis=-1)


# --------------------------------------------------------------------- targets

def gaussian_heatmaps(points: torch.Tensor, size: tuple[int, int], sigma: float | None = None,
                      visible: torch.Tensor | None = None,
                      total: float = HEATMAP_SUM) -> torch.Tensor:
    """Ground-truth heatmaps: points (..., K, 2) heatmap px -> (..., K, H, W) float32.

    Points are clamped to the map first (outside the box -> nearest border). Each map is
    a Gaussian of ``sigma`` px (default ``default_sigma(W)``) normalised to sum ``total``;
    where ``visible`` (..., K) is False the map is zero. Separable: one exp per row and
    column, then an outer product, so a whole video costs a few ms.
    """
    h, w = size
    sigma = default_sigma(w) if sigma is None else float(sigma)
    p = clamp_to_heatmap(points.float(), size)
    xs = torch.arange(w, dtype=torch.float32, device=p.device)
    ys = torch.arange(h, dtype=torch.float32, device=p.device)
    gx = torch.exp(-((xs - p[..., 0:1]) ** 2) / (2 * sigma ** 2))  # (..., K, W)
    gy = torch.exp(-((ys - p[..., 1:2]) ** 2) / (2 * sigma ** 2))  # (..., K, H)
    # Sums factorise too: normalise each axis so the outer product sums to 1.
    gx = gx / gx.sum(-1, keepdim=True)
    gy = gy / gy.sum(-1, keepdim=True)
    maps = gy[..., :, None] * gx[..., None, :] * total  # (..., K, H, W)
    if visible is not None:
        maps = maps * visible[..., None, None].to(maps.dtype)
    return maps


# --------------------------------------------------------------------- decoding

def decode_heatmaps(heatmaps: torch.Tensor, method: str = "parabola"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax + sub-pixel refinement. heatmaps (..., K, H, W) -> (points (..., K, 2), maxval (..., K)).

    ``method="parabola"``: log-parabola fit per axis (exact for Gaussian peaks);
    ``"quarter"``: shift 0.25 px toward the higher neighbour; ``"none"``: integer argmax.
    Non-positive values are floored at a tiny fraction of the peak before the log, so raw
    (negative) outputs decode too. A flat map (no value above the others: an all-zero
    input) is missing: NaN point, maxval 0. Vectorised, no Python loop; gradients do not flow (argmax).
    """
    if method not in ("parabola", "quarter", "none"):
        raise ValueError(f"unknown decoding method {method!r}")
    *lead, h, w = heatmaps.shape
    flat = heatmaps.detach().float().reshape(-1, h * w)
    maxval, idx = flat.max(dim=-1)
    py, px = idx // w, idx % w
    x = px.float()
    y = py.float()
    if method != "none":
        def at(yy, xx):
            return flat.gather(1, (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1))[:, None])[:, 0]

        left, right = at(py, px - 1), at(py, px + 1)
        up, down = at(py - 1, px), at(py + 1, px)
        inner_x = (px > 0) & (px < w - 1)
        inner_y = (py > 0) & (py < h - 1)
        if method == "quarter":
            dx = 0.25 * torch.sign(right - left)
            dy = 0.25 * torch.sign(down - up)
        else:
            floor = (maxval.abs() * 1e-6).clamp(min=1e-12)
            lc = torch.log(maxval.clamp(min=1e-12).maximum(floor))

            def offset(a, b):  # a = value at -1, b = value at +1
                la, lb = torch.log(a.maximum(floor)), torch.log(b.maximum(floor))
                den = la - 2 * lc + lb
                ok = den < 0  # curvature of a maximum
                d = 0.5 * (la - lb) / torch.where(ok, den, torch.ones_like(den))
                return torch.where(ok, d, torch.zeros_like(d)).clamp(-0.5, 0.5)

            dx, dy = offset(left, right), offset(up, down)
        positive = maxval > 0
        x = x + torch.where(inner_x & positive, dx, torch.zeros_like(dx))
        y = y + torch.where(inner_y & positive, dy, torch.zeros_like(dy))
    flat_map = maxval <= flat.min(dim=-1).values                   # no peak: missing
    nan = torch.full_like(x, float("nan"))
    points = torch.stack([torch.where(flat_map, nan, x), torch.where(flat_map, nan, y)], dim=-1)
    maxval = torch.where(flat_map, torch.zeros_like(maxval), maxval)
    return points.reshape(*lead, 2), maxval.reshape(*lead)


def bbox_norm(points, visible):
    """PCK normaliser: max side of the visible points' bounding box. points (..., K, 2), visible (..., K) -> (...,).

    0 where fewer than one point is visible. numpy or torch.
    """
    if isinstance(points, torch.Tensor):
        big = torch.tensor(float("inf"), dtype=points.dtype, device=points.device)
        v = visible[..., None]
        lo = torch.where(v, points, big).amin(-2)
        hi = torch.where(v, points, -big).amax(-2)
        side = (hi - lo).amax(-1)
        return torch.where(visible.any(-1), side, torch.zeros_like(side))
    v = np.asarray(visible)[..., None]
    pts = np.asarray(points, dtype=np.float32)
    lo = np.where(v, pts, np.inf).min(-2)
    hi = np.where(v, pts, -np.inf).max(-2)
    side = (hi - lo).max(-1)
    return np.where(np.asarray(visible).any(-1), side, 0.0).astype(np.float32)
