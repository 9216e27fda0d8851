"""Evaluation metrics, written once (DESIGN.md §7): pure, vectorised numpy functions.

Two sections: classification (accuracy, confusion matrix, per-class report) and pose
(PCK). Functions take numpy arrays (or anything ``np.asarray`` accepts, e.g. CPU
tensors) and return numpy arrays; they never loop over samples in Python.
"""
from __future__ import annotations

import numpy as np

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
# (temporal engineer's section)
