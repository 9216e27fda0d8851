"""Mistakenness and hardness of a classifier's test predictions, from its stored
probabilities alone (the ``prob_<class>`` columns of ``predictions.parquet``): nothing
is recomputed, so the gallery sorts by them at no cost.

Definitions (FiftyOne Brain's, ``fiftyone.brain.compute_mistakenness`` /
``compute_hardness`` for classifications), with p the predicted distribution over the
C classes and H(p) = -sum_c p_c ln p_c its entropy in nats:

* **mistakenness** = (m * exp(-H(p)) + 1) / 2 with m = +1 when the prediction is wrong
  and -1 when it is right: in [0, 1], near 1 for a confident wrong prediction (a likely
  label mistake, or a look-alike the model is sure of), near 0 for a confident right one,
  about 1/2 for an unsure one. FiftyOne computes exp(-H) from the logits' softmax; the
  stored probabilities are that softmax, so the value is the same.
* **hardness** = H(p), in [0, ln C]: how unsure the model is, right or wrong.
* **margin** = p_top1 - p_top2, in [0, 1]: a small margin is a near tie between two
  classes (the classic margin-sampling score of active learning); not in FiftyOne, given
  because it names the look-alike pair that entropy spreads over all classes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from core.errors import RunError

SCORE_COLUMNS = ("mistakenness", "hardness", "margin")


def probabilities(preds: pd.DataFrame, classes: Sequence[str], path=None) -> np.ndarray:
    """(N, C) float64 stored class probabilities; RunError naming the file when the
    columns are missing or hold non-finite values."""
    cols = [f"prob_{c}" for c in classes]
    missing = [c for c in cols if c not in preds.columns]
    if missing:
        raise RunError(path, f"has no stored class probabilities ({len(missing)} of {len(cols)} "
                             f"prob_<class> columns missing, e.g. {missing[0]!r}): mistakenness, "
                             "hardness and margin need them")
    p = preds[cols].to_numpy(np.float64)
    if not np.isfinite(p).all():
        raise RunError(path, "has non-finite class probabilities")
    return p


def entropy(p: np.ndarray) -> np.ndarray:
    """(N,) entropy in nats of the rows of (N, C) probabilities (renormalised; 0 ln 0 = 0)."""
    p = np.clip(np.asarray(p, np.float64), 0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def mistakenness(p: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """(N,) FiftyOne Brain's mistakenness (module docstring) of (N, C) probabilities."""
    m = np.where(np.asarray(correct, bool), -1.0, 1.0)
    return (m * np.exp(-entropy(p)) + 1.0) / 2.0


def margin(p: np.ndarray) -> np.ndarray:
    """(N,) top-1 minus top-2 probability (0 for a single class)."""
    p = np.asarray(p, np.float64)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    top2 = np.sort(p, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def prediction_scores(preds: pd.DataFrame, classes: Sequence[str], path=None) -> pd.DataFrame:
    """``preds`` with ``mistakenness``, ``hardness`` and ``margin`` columns added (same index)."""
    p = probabilities(preds, classes, path)
    out = preds.copy()
    out["mistakenness"] = mistakenness(p, preds["correct"].to_numpy(bool))
    out["hardness"] = entropy(p)
    out["margin"] = margin(p)
    return out
