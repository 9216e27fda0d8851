"""Classical smoothing filters over a window's decoded keypoints: the baselines a learned
refiner has to beat (DeciWatch and SmoothNet compare against them too).

Each takes the window's heatmaps (B, T, K, H, W), decodes the estimator's keypoints
(argmax + sub-pixel, ``core.heatmaps.decode_heatmaps``) and smooths every keypoint's track
over the T frames, returning coordinates (B, T, K, 2) in heatmap pixels. A missing
keypoint (an empty map) takes the nearest frame's location first; a keypoint missing in
the whole window stays missing. They have no weights: their parameters are chosen on the
validation split (``tune``: the candidates) and recorded in the run's config, so a run
rebuilds the same filter.

* ``gaussian``: a Gaussian kernel of ``sigma`` frames, the window's edges repeated.
* ``savgol`` (Savitzky-Golay): a least-squares polynomial of ``order`` over ``window``
  frames around each frame (at the window's edges, the nearest ``window`` frames).
* ``interp``: linear interpolation between every ``interval``-th frame, the others
  discarded (DeciWatch's "sample, then interpolate" without its two networks).
* ``one-euro`` (Casiez et al., CHI 2012): a first-order low-pass whose cutoff grows with
  the speed (``min_cutoff`` + ``beta`` * |velocity|, frequencies in cycles per frame), run
  forward from the window's first frame: the causal filter a live application uses.

The first three are linear: a (T, T) matrix applied along time, built once per config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import savgol_coeffs
from torch import nn

from core.heatmaps import decode_heatmaps


@dataclass
class GaussianConfig:
    keypoints: int = 25      # K
    frames: int = 5          # window length T
    sigma: float = 1.0       # kernel std, frames

    arch = "gaussian"


@dataclass
class SavGolConfig:
    keypoints: int = 25
    frames: int = 5
    window: int = 5          # frames in each fit (odd, <= frames)
    order: int = 2           # polynomial order (< window)

    arch = "savgol"


@dataclass
class InterpConfig:
    keypoints: int = 25
    frames: int = 5
    interval: int = 2        # keep frames 0, interval, 2*interval ... (frames - 1 a multiple)

    arch = "interp"


@dataclass
class OneEuroConfig:
    keypoints: int = 25
    frames: int = 5
    min_cutoff: float = 0.3  # cutoff at rest, cycles per frame
    beta: float = 0.05       # cutoff added per pixel per frame of speed
    d_cutoff: float = 0.3    # cutoff of the speed estimate, cycles per frame

    arch = "one-euro"


def gaussian_matrix(frames: int, sigma: float) -> np.ndarray:
    """(T, T): row t is the normalised Gaussian around t, edges repeated ('nearest')."""
    t = np.arange(frames)
    reach = max(1, int(math.ceil(4 * sigma)))
    m = np.zeros((frames, frames))
    for i in t:
        offsets = np.arange(-reach, reach + 1)
        w = np.exp(-0.5 * (offsets / sigma) ** 2)
        np.add.at(m[i], np.clip(i + offsets, 0, frames - 1), w / w.sum())
    return m


def savgol_matrix(frames: int, window: int, order: int) -> np.ndarray:
    """(T, T): the Savitzky-Golay fit evaluated at every frame (edge frames from the
    nearest full window)."""
    if window % 2 == 0 or not order < window <= frames:
        raise ValueError(f"Savitzky-Golay needs an odd window <= {frames} frames and order < window "
                         f"(got window {window}, order {order})")
    m = np.zeros((frames, frames))
    half = window // 2
    for i in range(frames):
        start = min(max(i - half, 0), frames - window)
        # coefficients that evaluate the fit at position i - start of the window
        m[i, start:start + window] = savgol_coeffs(window, order, pos=i - start, use="dot")
    return m


def interp_matrix(frames: int, interval: int) -> np.ndarray:
    """(T, T): linear interpolation from the frames 0, interval, ...; the others unused."""
    if interval < 1 or (frames - 1) % interval:
        raise ValueError(f"interp needs frames - 1 a multiple of the interval (frames {frames}, interval {interval})")
    m = np.zeros((frames, frames))
    for t in range(frames):
        j, r = divmod(t, interval)
        if r == 0:
            m[t, t] = 1.0
        else:
            m[t, j * interval], m[t, (j + 1) * interval] = 1 - r / interval, r / interval
    return m


def fill_missing(points: torch.Tensor) -> torch.Tensor:
    """(B, T, K, 2) with NaN where a keypoint is missing -> each missing frame takes the
    nearest present frame's point (the earlier one on a tie); all-missing tracks stay NaN."""
    present = torch.isfinite(points).all(-1)                         # (B, T, K)
    t = points.shape[1]
    idx = torch.arange(t, device=points.device)
    dist = (idx[:, None] - idx[None, :]).abs().float()               # (T, T) |t - s|
    # distance from frame t to each present frame s (inf where s is missing)
    d = torch.where(present[:, None], dist[None, :, :, None], torch.tensor(float("inf"), device=points.device))
    nearest = (d + idx[None, None, :, None] * 1e-3).argmin(2)        # (B, T, K): ties -> earlier
    filled = torch.gather(points, 1, nearest[..., None].expand(*nearest.shape, 2))
    return torch.where(present[..., None], points, filled)


class LinearFilter(nn.Module):
    """A (T, T) smoothing matrix applied to each keypoint's track."""
    output_kind = "coords"

    def __init__(self, cfg, matrix: np.ndarray):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("matrix", torch.as_tensor(matrix, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, T, K, H, W) heatmaps -> smoothed coordinates (B, T, K, 2)
        points = fill_missing(decode_heatmaps(x)[0])
        return torch.einsum("ts,bskc->btkc", self.matrix.to(points.dtype), points)


class OneEuro(nn.Module):
    output_kind = "coords"

    def __init__(self, cfg: OneEuroConfig):
        super().__init__()
        self.cfg = cfg

    @staticmethod
    def _alpha(cutoff: torch.Tensor | float) -> torch.Tensor | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau)                                     # frame period 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        points = fill_missing(decode_heatmaps(x)[0])                 # (B, T, K, 2)
        out = [points[:, 0]]
        speed = torch.zeros_like(points[:, 0])
        a_d = self._alpha(self.cfg.d_cutoff)
        for t in range(1, points.shape[1]):
            speed = a_d * (points[:, t] - out[-1]) + (1 - a_d) * speed
            cutoff = self.cfg.min_cutoff + self.cfg.beta * speed.norm(dim=-1, keepdim=True)
            a = self._alpha(cutoff)
            out.append(a * points[:, t] + (1 - a) * out[-1])
        return torch.stack(out, 1)


def build_gaussian(cfg: GaussianConfig) -> nn.Module:
    return LinearFilter(cfg, gaussian_matrix(cfg.frames, cfg.sigma))


def build_savgol(cfg: SavGolConfig) -> nn.Module:
    return LinearFilter(cfg, savgol_matrix(cfg.frames, cfg.window, cfg.order))


def build_interp(cfg: InterpConfig) -> nn.Module:
    return LinearFilter(cfg, interp_matrix(cfg.frames, cfg.interval))


# The candidates tried on the validation split (the first of equally good ones wins).
def gaussian_candidates(frames: int) -> list[dict]:
    return [{"sigma": s} for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)]


def savgol_candidates(frames: int) -> list[dict]:
    return [{"window": w, "order": o} for w in range(3, frames + 1, 2) for o in range(1, min(w, 4))]


def interp_candidates(frames: int) -> list[dict]:
    return [{"interval": i} for i in range(2, frames) if (frames - 1) % i == 0]


def one_euro_candidates(frames: int) -> list[dict]:
    return [{"min_cutoff": c, "beta": b} for c in (0.05, 0.1, 0.2, 0.4, 1.0) for b in (0.0, 0.01, 0.05, 0.2)]
