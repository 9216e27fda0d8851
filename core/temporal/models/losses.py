"""The losses of the temporal models, as terms that can be pooled over ranks and batches.

A loss function takes ``(model, base, batch)``: ``model`` is what to call (possibly a DDP
wrapper, ``core.distributed.wrap_ddp``), ``base`` the plain model behind it (its config
and helpers), ``batch`` a window batch (``core.temporal.windows.WindowDataset``). It
returns ``(terms, pred)``: the loss as ``[(weight, sum, count)]`` terms, the loss being
the sum of ``weight * sum / count``, and the predicted keypoints (B, T, K, 2) in heatmap
pixels. Terms rather than one number, so that a distributed step can divide each sum by
its count over *all* ranks and ``evaluate`` over the whole split
(``core.temporal.train``). Every term is masked by ``batch["visible"]``: joints a dataset
lacks are never trained towards anything.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from core.heatmaps import decode_heatmaps

LossTerms = list  # [(weight, sum, count)]: loss = sum of weight * sum / max(count, 1)
LossFn = Callable[[nn.Module, nn.Module, dict], tuple[LossTerms, torch.Tensor]]


def heatmap_mse(model: nn.Module, base: nn.Module, batch: dict) -> tuple[LossTerms, torch.Tensor]:
    """Heatmap models: the squared error to the ground-truth Gaussians, mean over pixels,
    summed over counted maps; coordinates decoded from the output (argmax + sub-pixel)."""
    out = model(batch["heatmaps"]).float()                          # (B, T, K, H, W)
    per_map = (out - batch["target"]).pow(2).mean(dim=(-2, -1))     # (B, T, K)
    m = batch["visible"].float()
    pred, _ = decode_heatmaps(out)                                  # (B, T, K, 2), no grad
    return [(1.0, (per_map * m).sum(), m.sum())], pred


def coordinate_l1(model: nn.Module, base: nn.Module, batch: dict) -> tuple[LossTerms, torch.Tensor]:
    """Coordinate models without a loss of their own (the classical filters): the mean
    absolute error per axis of the output, in heatmap pixels. Only evaluated: it gives
    their validation loss a meaning beside the PCK they are tuned by."""
    pred = model(batch["heatmaps"]).float()                         # (B, T, K, 2)
    err = (pred - batch["keypoints"]).abs().nan_to_num(0.0, posinf=0.0, neginf=0.0)
    m = (batch["visible"] & torch.isfinite(pred).all(-1)).float()[..., None]
    return [(1.0, (err * m).sum(), 2 * m.sum())], pred
