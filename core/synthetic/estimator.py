"""A simulated single-frame pose estimator: ground-truth keypoints -> raw heatmaps with real errors.

The temporal study refines the heatmaps of a *frozen* single-frame estimator. Synthetic
videos and the pre-training datasets (Penn Action, BRACE) have ground truth but no such
output, so this module makes it: for every frame it predicts a person box, places each
keypoint's peak where a real estimator would put it, and renders (T, 25, H, W) heatmaps.

Error modes (rates at ``noise=1``; ``noise`` multiplies every magnitude and every rate,
so ``noise=0`` is a perfect estimator whose decoded peaks are the ground truth).
Distances are fractions of the body size ``s`` = max side of the visible ground-truth
keypoints' box in heatmap pixels, the PCK normaliser (docs/ARCHITECTURE.md, "Metrics"):

=================  ======================================================================
jitter             independent per frame and keypoint: uniform direction, radius
                   ``0.061 s`` x Gamma(7)/7 (mean 1, std 0.38) x a per-joint factor:
                   0.9 face, 1.0 shoulders/hips, 1.05 elbows/knees, 1.15 wrists/ankles,
                   1.3 heels/foot tips, 1.5 pinky/index/thumb. The part a temporal model
                   can average away.
drift              slow, temporally correlated offset per keypoint: AR(1) with
                   coefficient 0.9 per frame, stationary std ``0.02 s`` per axis.
left/right swap    a whole limb (arm: elbow..fingers, or leg: knee..foot tip) takes its
                   twin's place for 1-4 frames; an episode starts with probability 0.03
                   per frame and limb pair (each limb pair is swapped in about 7.5% of
                   frames).
missed joint       the peak drops to 0.05 (true peak = 1) and widens x2, so the argmax
                   usually lands on background noise; 7% of joint-frames, in runs of 1-3.
second peak        a second Gaussian 0.2-0.5 s away (a neighbouring limb, another person)
                   with 0.5-1.4x the true peak's height, so about 45% of them win the
                   argmax; 14% of joint-frames.
box jitter         the predicted box (a square crop 1.25x the tight body box) shifts by
                   N(0, 0.04) of its side and scales by exp(N(0, 0.04)) per frame; joints
                   that leave it are clamped to its border by the estimator.
background         i.i.d. Gaussian noise of std 0.04 (true peak = 1) plus a constant
                   offset of -0.01, so raw heatmaps carry negative values, as real ones do.
=================  ======================================================================

Peaks are Gaussians of ``default_sigma(H)`` x U(0.9, 1.3). At ``noise=1`` the decoded
peaks score PCK@0.05/0.1/0.2 = 0.207/0.654/0.858 against ground truth on 24 synthetic
videos x 40 frames (32 px maps; 64 px gives the same to +-0.01); the study's identity
baseline is 19.4/66.1/85.2. ``noise=0`` scores 1.0/1.0/1.0.

Joints a dataset lacks (``joint_mask`` False, e.g. Penn Action has no fingers) still get
a heatmap, as a real estimator would output one: placed near a proxy joint (fingers at
the wrist, feet at the ankle, ears at the nose) with a wide, weak peak. They are masked
out of loss and PCK downstream; the estimator only keeps the input realistic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.heatmaps import bbox_norm, clamp_to_heatmap, default_sigma, image_to_heatmap
from core.keypoints import TEMPORAL25


@dataclass(frozen=True)
class EstimatorErrors:
    """Magnitudes and rates of each error mode at noise=1 (see the module docstring)."""
    jitter: float = 0.061          # mean per-frame jitter radius, fraction of body size s
    jitter_shape: float = 7.0      # radius ~ Gamma(shape, 1/shape) x jitter: std = mean/sqrt(shape)
    drift: float = 0.02            # stationary std of the slow AR(1) offset, fraction of s
    drift_corr: float = 0.9        # AR(1) coefficient per frame (higher = slower drift)
    swap_rate: float = 0.03        # P(a left/right limb swap starts) per frame and limb pair
    swap_frames: int = 4           # a swap lasts 1..swap_frames frames
    miss_rate: float = 0.07        # fraction of joint-frames whose peak nearly vanishes
    miss_frames: int = 3           # a miss lasts 1..miss_frames frames
    miss_amplitude: float = 0.05   # peak height of a missed joint (true peak = 1)
    second_rate: float = 0.14      # fraction of joint-frames with a second peak
    second_dist: tuple[float, float] = (0.2, 0.5)     # its distance, fraction of s
    second_amp: tuple[float, float] = (0.5, 1.4)      # its height relative to the true peak
    box_jitter: float = 0.04       # std of box shift (fraction of side) and log-scale
    background: float = 0.04       # std of the i.i.d. background noise (peak = 1)
    offset: float = -0.01          # constant background level (negative, as real nets give)


def _joint_factors() -> np.ndarray:
    factor = {"nose": 0.9, "ear": 0.9, "shoulder": 1.0, "hip": 1.0, "elbow": 1.05,
              "knee": 1.05, "wrist": 1.15, "ankle": 1.15, "heel": 1.3, "foot_index": 1.3,
              "pinky": 1.5, "index": 1.5, "thumb": 1.5}
    return np.array([factor[n.removeprefix("left_").removeprefix("right_")] for n in TEMPORAL25],
                    dtype=np.float32)


JOINT_FACTORS = _joint_factors()  # (25,) jitter multiplier per TEMPORAL25 joint

_ARM = ("elbow", "wrist", "pinky", "index", "thumb")
_LEG = ("knee", "ankle", "heel", "foot_index")
# (left indices, right indices) of each whole limb that can swap.
LIMBS = tuple((np.array([TEMPORAL25.index("left_" + j) for j in chain]),
               np.array([TEMPORAL25.index("right_" + j) for j in chain])) for chain in (_ARM, _LEG))

# Where a joint the dataset lacks is drawn (see module docstring).
_PROXY = {"pinky": "wrist", "index": "wrist", "thumb": "wrist", "heel": "ankle",
          "foot_index": "ankle", "ear": "nose"}


def crop_boxes(keypoints: np.ndarray, boxes: np.ndarray | None = None, enlarge: float = 1.25
               ) -> np.ndarray:
    """Square crop boxes (T, 4) xyxy around each frame's person, top-down style.

    From ``boxes`` (T, 4) xyxy when given (e.g. a dataset's tight person box), else from
    the visible keypoints (T, K, 3). The square side is ``enlarge`` x the longer side, so
    the whole body fits a square heatmap. A frame with nothing visible borrows the
    nearest frame's box; a video with nothing at all gets a unit box at the origin.
    """
    t = len(keypoints)
    if boxes is None:
        vis = keypoints[..., 2] > 0
        lo = np.where(vis[..., None], keypoints[..., :2], np.inf).min(1)
        hi = np.where(vis[..., None], keypoints[..., :2], -np.inf).max(1)
        boxes = np.concatenate([lo, hi], -1)
    boxes = np.asarray(boxes, dtype=np.float64).copy()
    ok = np.isfinite(boxes).all(-1)
    if not ok.any():
        return np.tile(np.array([0, 0, 1, 1], np.float32), (t, 1))
    good = np.flatnonzero(ok)
    nearest = good[np.abs(np.arange(t)[:, None] - good[None]).argmin(1)]
    boxes = boxes[nearest]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = np.maximum((boxes[:, 2:] - boxes[:, :2]).max(-1), 1.0) * enlarge
    return np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], -1).astype(np.float32)


def _episodes(rng: np.random.Generator, shape: tuple[int, ...], rate: float, max_len: int) -> np.ndarray:
    """Boolean (T, ...) mask of runs that start with prob ``rate`` per frame, 1..max_len long."""
    t = shape[0]
    starts = rng.random(shape) < rate
    lengths = rng.integers(1, max_len + 1, size=shape)
    on = np.zeros(shape, dtype=bool)
    for d in range(max_len):  # max_len is tiny (<= 4): loop over offsets, not frames
        shifted = np.zeros(shape, dtype=bool)
        shifted[d:] = (starts & (lengths > d))[: t - d]
        on |= shifted
    return on


def _render(points: np.ndarray, sigma: np.ndarray, amp: np.ndarray, size: int) -> np.ndarray:
    """Sum of separable Gaussians: points (T, K, P, 2), sigma/amp (T, K, P) -> (T, K, H, W) float32.

    numpy on purpose: these are many tiny ops, and torch's thread pool only adds
    contention for them on a busy 2-core machine (measured 4x slower)."""
    grid = np.arange(size, dtype=np.float32)
    den = (2 * sigma[..., None] ** 2).astype(np.float32)
    gx = np.exp(-((grid - points[..., 0:1].astype(np.float32)) ** 2) / den) * amp[..., None].astype(np.float32)
    gy = np.exp(-((grid - points[..., 1:2].astype(np.float32)) ** 2) / den)  # (T, K, P, H)
    out = gy[..., 0, :, None] * gx[..., 0, None, :]
    for q in range(1, points.shape[2]):  # P = 2 peaks
        out += gy[..., q, :, None] * gx[..., q, None, :]
    return out


def simulate_estimator(keypoints: np.ndarray, *, heatmap: int = 64, noise: float = 1.0,
                       joint_mask: np.ndarray | None = None, boxes: np.ndarray | None = None,
                       seed: int | np.random.Generator = 0,
                       errors: EstimatorErrors = EstimatorErrors()
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Raw estimator output for one video.

    keypoints: (T, 25, 3) ground truth in image pixels (x, y, visibility); joints outside
    ``joint_mask`` (25,) are ignored. boxes: optional (T, 4) xyxy tight person boxes.
    Returns ``(heatmaps (T, 25, heatmap, heatmap) float16, pred_boxes (T, 4) float32)``;
    the heatmaps cover ``pred_boxes`` (the estimator's own, jittered boxes).
    """
    # One piece because the error modes act in sequence on the same arrays and draw from one
    # rng in a fixed order (box, jitter, drift, swaps, misses, second peaks, background):
    # moving a draw would change every simulated dataset.
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    kp = np.asarray(keypoints, dtype=np.float64)
    t, k = kp.shape[:2]
    mask = np.ones(k, bool) if joint_mask is None else np.asarray(joint_mask, bool)
    present = (kp[..., 2] > 0) & mask  # (T, K)
    kp_vis = kp.copy()
    kp_vis[..., 2] = present
    n = float(noise)
    e = errors

    # --- predicted box: the crop a detector would give, with per-frame jitter
    crop = crop_boxes(kp_vis, boxes).astype(np.float64)
    side = crop[:, 2] - crop[:, 0]
    shift = rng.normal(0, e.box_jitter * n, (t, 2)) * side[:, None]
    scale = np.exp(rng.normal(0, e.box_jitter * n, t))
    centre = (crop[:, :2] + crop[:, 2:]) / 2 + shift
    half = (side * scale / 2)[:, None]
    pred_boxes = np.concatenate([centre - half, centre + half], -1)

    # --- ground truth in the predicted box's heatmap pixels; joints a dataset lacks
    # borrow a proxy joint's location so the estimator still "sees" something there.
    size = (heatmap, heatmap)
    g = image_to_heatmap(kp[..., :2], pred_boxes, size)  # (T, K, 2)
    proxy_used = np.zeros((t, k), bool)
    for j, name in enumerate(TEMPORAL25):
        if present[:, j].all():
            continue
        part = name.removeprefix("left_").removeprefix("right_")
        if part in _PROXY:
            src_name = "nose" if part == "ear" else name[: len(name) - len(part)] + _PROXY[part]
            src = TEMPORAL25.index(src_name)
            use = ~present[:, j] & present[:, src]
            g[use, j] = g[use, src]
            proxy_used[use, j] = True
    s = bbox_norm(g, present)  # (T,)
    s = np.where(s > 0, s, heatmap * 0.5)[:, None, None]  # frames with nothing visible

    # --- where the estimator puts each peak
    # Jitter radius ~ Gamma(7, 1/7) (mean 1, std 0.38) x jitter x joint factor, uniform
    # direction: more concentrated than a 2-D Gaussian's Rayleigh radius, as real
    # estimators are seldom exactly right yet seldom far off without a gross error.
    radius = rng.gamma(e.jitter_shape, 1.0 / e.jitter_shape, (t, k)) * e.jitter * n * JOINT_FACTORS[None, :]
    theta = rng.uniform(0, 2 * np.pi, (t, k))
    jitter = np.stack([np.cos(theta), np.sin(theta)], -1) * radius[..., None]
    drift = np.zeros((t, k, 2))
    innov = rng.normal(0, 1, (t, k, 2)) * e.drift * n * np.sqrt(1 - e.drift_corr ** 2)
    drift[0] = rng.normal(0, 1, (k, 2)) * e.drift * n
    for i in range(1, t):  # AR(1) over frames: vectorised over keypoints
        drift[i] = e.drift_corr * drift[i - 1] + innov[i]
    est = g + (jitter + drift) * s
    for left, right in LIMBS:  # whole-limb swaps
        swap = _episodes(rng, (t,), e.swap_rate * n, e.swap_frames)
        est[np.ix_(swap, left)], est[np.ix_(swap, right)] = est[np.ix_(swap, right)], est[np.ix_(swap, left)]
    est = clamp_to_heatmap(est, size)

    missed = _episodes(rng, (t, k), e.miss_rate * n / ((1 + e.miss_frames) / 2), e.miss_frames)
    sigma0 = default_sigma(heatmap)
    sig = sigma0 * rng.uniform(0.9, 1.3, (t, k))
    amp = np.ones((t, k))
    amp[missed] = e.miss_amplitude if n > 0 else 1.0
    sig[missed] *= 2.0 if n > 0 else 1.0
    amp[proxy_used] = 0.3  # a guessed joint: weak and wide
    sig[proxy_used] *= 2.0
    amp[~(present | proxy_used)] = 0.0  # nothing at all to place

    second = rng.random((t, k)) < e.second_rate * n
    angle = rng.uniform(0, 2 * np.pi, (t, k))
    dist = rng.uniform(*e.second_dist, (t, k)) * s[..., 0]
    p2 = clamp_to_heatmap(g + np.stack([np.cos(angle), np.sin(angle)], -1) * dist[..., None], size)
    amp2 = np.where(second, rng.uniform(*e.second_amp, (t, k)), 0.0) * (amp > 0)

    if n == 0:  # a perfect estimator: exactly the ground truth, no second peaks or noise
        sig[:] = sigma0
    maps = _render(np.stack([est, p2], 2), np.stack([sig, sig], 2), np.stack([amp, amp2], 2), heatmap)
    if n > 0:
        maps += rng.normal(e.offset * n, e.background * n, maps.shape).astype(np.float32)
    return maps.astype(np.float16), pred_boxes.astype(np.float32)
