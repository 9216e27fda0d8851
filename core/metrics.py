"""Evaluation metrics, written once: pure, vectorised numpy functions.

Two sections: classification (accuracy, confusion matrix, per-class report) and pose
(PCK). Functions take numpy arrays (or anything ``np.asarray`` accepts, e.g. CPU
tensors) and return numpy arrays; they never loop over samples in Python.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.keypoints import TEMPORAL25

# ============================================================================ classification
# Shapes, once for the whole section:
#   pred, target : (N,) integer class indices in [0, C)
#   cm           : (C, C) int64 counts, cm[i, j] = samples of true class i predicted as j


def accuracy(pred, target) -> float:
    """Fraction of samples with ``pred == target``; NaN for an empty set (no data is not 0%)."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in length")
    return float(np.mean(pred == target)) if pred.size else float("nan")


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class.

    One ``np.bincount`` over the flattened cell index ``true * C + pred``.
    """
    pred = np.asarray(pred, dtype=np.int64).ravel()
    target = np.asarray(target, dtype=np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in length")
    for name, a in (("pred", pred), ("target", target)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} holds a class index outside [0, {num_classes})")
    cells = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def per_class_report(cm) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix.

    Returns a dict of (C,) arrays: ``precision`` = cm[i,i] / column sum (of everything
    predicted as i), ``recall`` = cm[i,i] / row sum (of everything truly i), ``f1`` =
    2 tp / (2 tp + fp + fn) (their harmonic mean where both exist), ``support`` = row
    sum (int). A 0/0 is NaN, not 0: precision of a class never predicted, recall of a
    class absent from the data, F1 of a class neither present nor predicted. "Undefined"
    must stay distinguishable from "always wrong" in the dashboard's tables.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(predicted + support > 0, 2 * tp / (predicted + support), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1,
            "support": support.astype(np.int64)}

# ============================================================================ pose (PCK)
# Shapes, once for the whole section:
#   pred, gt   : (N, K, 2) keypoint locations (x, y), any unit (heatmap pixels here)
#   visible    : (N, K) bool, ground truth exists and counts for this sample/keypoint
#   norm       : (N,) or (N, K) normalising length s, same unit as pred/gt
#   thresholds : (A,) fractions a; a keypoint is correct when ||pred - gt||2 <= a * s
#
# Conventions (each tested in tests/test_pck.py):
# * invisible keypoints are excluded from numerator AND denominator;
# * a keypoint with no counted sample gives NaN, never 0 (0 would read "always wrong");
# * a distance exactly equal to a * s is correct (<=, as the thesis defines PCK; mmpose's
#   ``_distance_acc`` uses <, so the two differ only for a distance exactly on a threshold);
# * a sample whose norm is 0 or not finite is excluded like an invisible one: a
#   degenerate box has no scale, and counting it would make the threshold 0 and the
#   result depend on float exactness;
# * a non-finite prediction (NaN from a diverged model) counts as wrong, not excluded.

PCK_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2)


def _pck_valid(visible, norm, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(valid (N, K) bool, norm broadcast to (N, K) float64)."""
    norm = np.asarray(norm, dtype=np.float64)
    if norm.ndim == 1:
        norm = norm[:, None]
    norm = np.broadcast_to(norm, shape)
    valid = np.asarray(visible, dtype=bool) & np.isfinite(norm) & (norm > 0)
    return valid, norm


def keypoint_distances(pred, gt) -> np.ndarray:
    """Euclidean distance per sample and keypoint: (N, K, 2) x 2 -> (N, K)."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)


def pck(pred, gt, visible, norm, thresholds=PCK_THRESHOLDS) -> np.ndarray:
    """Per-keypoint PCK: fraction of counted samples with distance <= a * norm.

    Returns (len(thresholds), K) float64 in [0, 1], NaN for a keypoint never counted.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2); got {pred.shape} and {gt.shape}")
    n, k = pred.shape[:2]
    valid, norm = _pck_valid(visible, norm, (n, k))                     # (N, K)
    dist = keypoint_distances(pred, gt)                                 # (N, K)
    a = np.asarray(thresholds, dtype=np.float64)[:, None, None]         # (A, 1, 1)
    correct = (dist[None] <= a * norm[None]) & valid[None]              # (A, N, K)
    counted = valid.sum(axis=0)                                         # (K,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, correct.sum(axis=1) / counted, np.nan)


def pooled_pck(pred, gt, visible, norm, thresholds=PCK_THRESHOLDS) -> np.ndarray:
    """PCK over all counted (sample, keypoint) pairs, every pair weighing the same: (A,).

    pred, gt (..., K, 2), visible (..., K), norm (...) or (..., K): any leading shape
    (windows x frames, say); the pairs are treated as one keypoint column of ``pck``.
    """
    visible = np.asarray(visible, dtype=bool)
    norm = np.asarray(norm, np.float64)
    norm = np.broadcast_to(norm[..., None] if norm.shape == visible.shape[:-1] else norm, visible.shape)
    return pck(np.asarray(pred).reshape(-1, 1, 2), np.asarray(gt).reshape(-1, 1, 2),
               visible.reshape(-1, 1), norm.reshape(-1, 1), thresholds)[:, 0]


def pool(values, counts) -> float:
    """Pooled value of per-keypoint fractions ``values`` (K,) counted over ``counts`` (K,)
    samples each: what ``pooled_pck`` gives, from a pck table. Keypoints never counted
    (NaN, or count 0) are left out; NaN when nothing is counted."""
    values, counts = np.asarray(values, np.float64), np.asarray(counts, np.float64)
    ok = np.isfinite(values) & (counts > 0)
    n = counts[ok].sum()
    return float((values[ok] * counts[ok]).sum() / n) if n > 0 else float("nan")


def mean_threshold_px(visible, norm, thresholds=PCK_THRESHOLDS) -> np.ndarray:
    """Mean threshold distance a * s over the counted (sample, keypoint) pairs: (A,).

    The thesis prints it under its PCK tables so a fraction can be read as pixels.
    """
    visible = np.asarray(visible, dtype=bool)
    valid, norm = _pck_valid(visible, norm, visible.shape)
    s = norm[valid].mean() if valid.any() else np.nan
    return np.asarray(thresholds, dtype=np.float64) * s


def box_norm(boxes) -> np.ndarray:
    """Default PCK normaliser: the max side of an (x, y, w, h) box, (..., 4) -> (...)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.maximum(boxes[..., 2], boxes[..., 3])


def torso_norm(gt, visible, names=None) -> np.ndarray:
    """Optional normaliser: distance left shoulder -> right hip, (N, K, 2) -> (N,).

    0 where either joint is invisible, so ``pck`` excludes that sample.
    """
    names = tuple(names) if names is not None else TEMPORAL25
    ls, rh = names.index("left_shoulder"), names.index("right_hip")
    gt, visible = np.asarray(gt, np.float64), np.asarray(visible, bool)
    d = np.linalg.norm(gt[:, ls] - gt[:, rh], axis=-1)                  # (N,)
    return np.where(visible[:, ls] & visible[:, rh], d, 0.0)


def pck_table(pred, gt, visible, norm, identity_pred=None, names=None,
              thresholds=PCK_THRESHOLDS):
    """The pck.csv table of the run contract, as a pandas DataFrame.

    One row per keypoint (column ``keypoint`` = name): ``pck@a`` for ``pred``,
    ``identity_pck@a`` for the estimator's own locations ``identity_pred`` (NaN when
    not given), ``n_visible`` (counted samples); then a final row ``threshold_px``
    whose pck columns hold the mean threshold distance a * s (same unit as pred).
    """
    names = list(names) if names is not None else list(TEMPORAL25)
    k = np.asarray(pred).shape[1]
    if len(names) != k:
        raise ValueError(f"{len(names)} keypoint names for {k} keypoints")
    model = pck(pred, gt, visible, norm, thresholds)                    # (A, K)
    ident = (pck(identity_pred, gt, visible, norm, thresholds) if identity_pred is not None
             else np.full_like(model, np.nan))
    valid, _ = _pck_valid(visible, norm, np.asarray(visible).shape)
    cols = {"keypoint": names}
    cols.update({f"pck@{a:g}": model[i] for i, a in enumerate(thresholds)})
    cols.update({f"identity_pck@{a:g}": ident[i] for i, a in enumerate(thresholds)})
    cols["n_visible"] = valid.sum(axis=0).astype(np.int64)
    px = mean_threshold_px(visible, norm, thresholds)
    last = {"keypoint": "threshold_px", "n_visible": int(valid.sum())}
    for i, a in enumerate(thresholds):
        last[f"pck@{a:g}"] = last[f"identity_pck@{a:g}"] = px[i]
    return pd.concat([pd.DataFrame(cols), pd.DataFrame([last])], ignore_index=True)


def pck_auc(pred, gt, visible, norm, max_threshold: float = 0.2, steps: int = 21) -> float:
    """Area under the pooled PCK curve for thresholds 0 .. ``max_threshold`` (``steps``
    evenly spaced), divided by ``max_threshold``: 1 = every keypoint exact, 0 = every
    keypoint beyond the largest threshold. One number for the whole curve, so a model
    that is better at 0.05 but worse at 0.2 is not judged by one threshold alone."""
    a = np.linspace(0.0, max_threshold, steps)
    curve = pooled_pck(pred, gt, visible, norm, a)
    return float(np.trapezoid(curve, a) / max_threshold) if np.isfinite(curve).all() else float("nan")


# ============================================================================ left and right
# pred, gt (N, K, 2), visible (N, K) as above; ``flip`` (K,) the index array that swaps
# every left keypoint with its right twin (``core.keypoints.flip_permutation``).


def swapped_frames(pred, gt, visible, flip) -> np.ndarray:
    """(N,) bool: frames whose prediction fits the ground truth better with every left
    and right keypoint exchanged, over the visible keypoints that have a twin. A body seen
    from behind that the estimator read as facing the camera is such a frame."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    flip = np.asarray(flip)
    sided = flip != np.arange(len(flip))                                 # (K,) has a twin
    vis = np.asarray(visible, bool) & sided[None] & np.isfinite(pred).all(-1) & np.isfinite(pred[:, flip]).all(-1)
    straight = np.where(vis, keypoint_distances(pred, gt), 0.0).sum(-1)         # (N,)
    exchanged = np.where(vis, keypoint_distances(pred[:, flip], gt), 0.0).sum(-1)
    return (exchanged < straight) & vis.any(-1)


def swap_tolerant_pck(pred, gt, visible, norm, flip, thresholds=PCK_THRESHOLDS) -> np.ndarray:
    """Pooled PCK (A,) after exchanging left and right in the frames ``swapped_frames``
    finds: how good the estimate is when the body's side is not held against it. A
    diagnostic beside the strict PCK, which stays the headline."""
    pred = np.asarray(pred, np.float64)
    swap = swapped_frames(pred, gt, visible, flip)
    fixed = np.where(swap[:, None, None], pred[:, np.asarray(flip)], pred)
    return pooled_pck(fixed, gt, visible, norm, thresholds)


# ============================================================================ motion
# Shapes, once for the section:
#   pred, gt : (..., T, K, 2) sequences of keypoints (a window, a video), T on axis -3
#   visible  : (..., T, K) bool
# Velocity is the first difference over frames, acceleration the second, in the unit of
# the points per frame (per frame squared): heatmap pixels here. A difference counts only
# where every frame it spans is visible (error metrics) or finite (jitter). Each function
# returns the mean over the counted (frame, keypoint) pairs; NaN when none is counted.


def _differences(x: np.ndarray, order: int) -> np.ndarray:
    return np.diff(np.asarray(x, np.float64), n=order, axis=-3)


def _spanned(mask: np.ndarray, order: int) -> np.ndarray:
    """(..., T - order, K): every frame a difference of ``order`` spans is in ``mask``."""
    m = np.asarray(mask, bool)
    out = m[..., order:, :].copy()
    for i in range(order):
        out &= m[..., i:m.shape[-2] - order + i, :]
    return out


def _mean_where(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else float("nan")


def velocity_error(pred, gt, visible) -> float:
    """Mean ||v_pred - v_gt|| (VideoPoses3D's MPJVE, in 2-D): how far the predicted motion
    is from the true one, frame to frame."""
    d = np.linalg.norm(_differences(pred, 1) - _differences(gt, 1), axis=-1)
    return _mean_where(d, _spanned(visible, 1) & np.isfinite(d))


def acceleration_error(pred, gt, visible) -> float:
    """Mean ||a_pred - a_gt|| (DeciWatch's and SmoothNet's Accel): jerky outputs and
    over-smoothed ones both score badly, since the true motion accelerates too."""
    d = np.linalg.norm(_differences(pred, 2) - _differences(gt, 2), axis=-1)
    return _mean_where(d, _spanned(visible, 2) & np.isfinite(d))


def jitter(pred) -> float:
    """Mean ||a_pred||, the acceleration magnitude of the output alone: needs no ground
    truth, so it also scores a user's own video (WHAM and GVHMR report the jerk, the
    next difference; the acceleration is steadier over 5-frame windows)."""
    a = np.linalg.norm(_differences(pred, 2), axis=-1)
    return _mean_where(a, np.isfinite(a))
