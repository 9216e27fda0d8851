"""What the keypoints contribute: the paper's question ("do the keypoints help?") asked
of one sample, and of one run class by class.

**The completeness split** (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep
Networks", Proposition 1). Integrated Gradients from a baseline x0 to the input x
satisfies completeness: the attributions of all inputs add up to f(x) - f(x0), the
target logit's change along the path. The model has two inputs, the image and the 17
keypoints, so that change splits exactly in two:

    f(x) - f(x0) = I + K + delta,   I = sum of the image's attributions,
                                    K = sum of the keypoints' attributions,

delta being the Riemann sum's error (captum's convergence delta; it shrinks with more
steps). The image's share is |I| / (|I| + |K|), the keypoints' |K| / (|I| + |K|): absolute
values, since the two can push in opposite directions (then I and K are shown signed
too). Baseline: the ImageNet-mean image (zeros in normalised space) with every keypoint
marked missing (zeros), the same as the Saliency page's IG.

* ``pixel_split``: IG over the pixels and keypoints of one sample (the full model).
* ``head_split``: the same split with the path taken at the head's input, the pooled
  features of the image (the baseline image's features at the start) and the keypoints:
  one head evaluation per step instead of a ResNet-50 backward, so a whole test split is
  split in a second. For the linear heads (model3, model4) IG is exact there (f is linear
  along the path: I and K are the two terms of the logit, delta is 0); for MLP heads
  (model5, model6) it is IG of the head. It is a different path from the pixel one, so
  the two splits agree in their total (both f(x) - f(x0)), not necessarily in the shares.
  ``class_split`` averages it per true class: the run-level answer.

**Counterfactuals**: the prediction again with one keypoint moved by the PCK@0.1 radius
(a tenth of the longer side of the box around the visible ground-truth keypoints,
``core.metrics``'s convention: the error a keypoint estimate may have and still count
as right), in a chosen direction; or with the annotated keypoints replaced by
BlazePose's on the same crop (what a deployed system would give the model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

from core.classification import saliency as sal
from core.classification.crops import keypoints_in_box, load_crop, model_input, model_keypoints
from core.errors import DataError
from core.estimator.blazepose import BlazePose, coco17_from_blazepose
from core.estimator.still import estimate_still
from core.keypoints import COCO17
from core.runs import RunInfo

PCK_ALPHA = 0.1
DIRECTIONS: dict[str, float] = {      # degrees, image axes (y down): 90 = down
    "right": 0.0, "down-right": 45.0, "down": 90.0, "down-left": 135.0,
    "left": 180.0, "up-left": 225.0, "up": 270.0, "up-right": 315.0,
}


@dataclass(frozen=True)
class Split:
    """One completeness split (logit units)."""
    image: float            # I: the image's attributions, summed
    keypoints: float        # K: the keypoints', summed
    gap: float              # f(x) - f(x0)
    per_keypoint: np.ndarray | None = None   # (17,) the keypoints' attributions (pixel_split)

    @property
    def delta(self) -> float:
        return self.gap - self.image - self.keypoints

    @property
    def image_share(self) -> float:
        total = abs(self.image) + abs(self.keypoints)
        return abs(self.image) / total if total > 0 else math.nan

    @property
    def keypoint_share(self) -> float:
        s = self.image_share
        return 1.0 - s if np.isfinite(s) else math.nan


def need_keypoints(model: torch.nn.Module, what: str = "the keypoint share") -> None:
    """A DataError (one readable line) for a keypoint-free preset."""
    if not getattr(getattr(model, "cfg", None), "use_keypoints", False):
        raise DataError(None, f"this preset does not use keypoints: {what} is zero by construction "
                              "(its head sees the image alone); pick a keypoint preset (model3 ... model6)")


def pixel_split(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor, target: int, *,
                steps: int = 32, batch: int = 8) -> Split:
    """IG over pixels and keypoints of one (3, H, W) image + (17, 3) keypoints, split by
    completeness (module docstring)."""
    need_keypoints(model)
    dev = sal._device(model)
    x = image[None].detach().to(dev, torch.float32)                       # (1, 3, H, W)
    k = keypoints[None].detach().to(dev, torch.float32)                   # (1, 17, 3)
    with sal._eval_mode(model):
        a_img, a_kp = IntegratedGradients(model).attribute(
            (x, k), baselines=(torch.zeros_like(x), torch.zeros_like(k)), target=int(target),
            n_steps=int(steps), internal_batch_size=int(batch))
        with torch.no_grad():
            gap = (model(x, k) - model(torch.zeros_like(x), torch.zeros_like(k)))[0, int(target)]
    return Split(image=float(a_img.sum()), keypoints=float(a_kp.sum()), gap=float(gap),
                 per_keypoint=a_kp[0].sum(-1).detach().cpu().numpy().astype(np.float32))


@torch.no_grad()
def baseline_features(model: torch.nn.Module, size: int) -> torch.Tensor:
    """(2048,) pooled features of the baseline image (the ImageNet mean, zeros) at ``size`` px."""
    with sal._eval_mode(model):
        return model.forward_features(torch.zeros(1, 3, size, size, device=sal._device(model)))[0].float()


def head_split(model: torch.nn.Module, features: np.ndarray, keypoints: np.ndarray, targets: np.ndarray,
               base_features: torch.Tensor, *, steps: int = 32, batch: int = 512) -> pd.DataFrame:
    """The split at the head's input for N samples at once: features (N, 2048), keypoints
    (N, 17, 3), targets (N,) -> a frame of image, keypoints, gap, delta, image_share,
    keypoint_share (one row per sample)."""
    need_keypoints(model)
    dev = sal._device(model)

    def head(f, k):
        return model.forward_head(f, k)
    ig = IntegratedGradients(head)
    rows = []
    with sal._eval_mode(model):
        for i in range(0, len(features), batch):
            f = torch.as_tensor(features[i:i + batch], dtype=torch.float32, device=dev)          # (B, 2048)
            k = torch.as_tensor(keypoints[i:i + batch], dtype=torch.float32, device=dev)         # (B, 17, 3)
            t = torch.tensor(np.asarray(targets[i:i + batch]), dtype=torch.long, device=dev)
            f0 = base_features.to(dev).expand_as(f)
            a_f, a_k = ig.attribute((f, k), baselines=(f0, torch.zeros_like(k)), target=t, n_steps=int(steps))
            with torch.no_grad():
                gap = (head(f, k) - head(f0, torch.zeros_like(k))).gather(1, t[:, None])[:, 0]
            rows.append(np.stack([a_f.flatten(1).sum(1).cpu().numpy(), a_k.flatten(1).sum(1).cpu().numpy(),
                                  gap.cpu().numpy()], 1))
    a = np.concatenate(rows) if rows else np.zeros((0, 3))
    out = pd.DataFrame(a.astype(np.float64), columns=["image", "keypoints", "gap"])
    out["delta"] = out["gap"] - out["image"] - out["keypoints"]
    total = out["image"].abs() + out["keypoints"].abs()
    out["image_share"] = np.where(total > 0, out["image"].abs() / total.where(total > 0, 1), np.nan)
    out["keypoint_share"] = 1.0 - out["image_share"]
    return out


def class_split(split: pd.DataFrame, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per true class: samples, mean image and keypoint share, mean I, K and gap."""
    df = split.assign(label=np.asarray(labels))
    g = df.groupby("label")
    out = pd.DataFrame({
        "class": [classes[i] for i in g.size().index], "samples": g.size().to_numpy(),
        "image_share": g["image_share"].mean().to_numpy(), "keypoint_share": g["keypoint_share"].mean().to_numpy(),
        "image_logit": g["image"].mean().to_numpy(), "keypoint_logit": g["keypoints"].mean().to_numpy(),
        "gap": g["gap"].mean().to_numpy()})
    return out.sort_values("keypoint_share", ascending=False, ignore_index=True)


# ------------------------------------------------------------------ counterfactuals


def pck_radius(keypoints: torch.Tensor | np.ndarray, alpha: float = PCK_ALPHA) -> float:
    """The PCK@alpha radius in the model's keypoint units (fractions of the square crop's
    side) of (17, 3) model keypoints: alpha x the longer side of the box around the
    present ones (mask > 0). With the annotation's keypoints this is PCK's threshold
    (``core.metrics``: the ground truth's box); a DataError with fewer than two."""
    kp = np.asarray(keypoints, np.float64).reshape(17, 3)
    present = kp[:, 2] > 0
    if present.sum() < 2:
        raise DataError(None, "fewer than two keypoints are present: no PCK radius to move one by")
    return alpha * float((kp[present, :2].max(0) - kp[present, :2].min(0)).max())


def moved_keypoint(keypoints: torch.Tensor, index: int, direction: str, radius: float) -> torch.Tensor:
    """A copy of (17, 3) model keypoints with keypoint ``index`` moved by ``radius`` (crop
    fractions) towards ``direction`` (a key of DIRECTIONS); a missing keypoint is a DataError."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {list(DIRECTIONS)}")
    if not 0 <= index < len(COCO17):
        raise ValueError(f"keypoint index {index} outside 0..16")
    if float(keypoints[index, 2]) <= 0:
        raise DataError(None, f"the {COCO17[index]} is missing in this sample: there is nothing to move")
    out = keypoints.detach().clone()
    angle = math.radians(DIRECTIONS[direction])
    out[index, 0] += radius * math.cos(angle)
    out[index, 1] += radius * math.sin(angle)
    return out


def annotation_keypoints(info: RunInfo, row) -> np.ndarray:
    """(17, 3) model keypoints of the sample's annotation (for a run trained on estimated
    ones, the counterfactual is the annotation)."""
    _, margin = sal.run_image_settings(info)
    return model_keypoints(sal.row_sample(info, row, source="annotation"), margin)


def blazepose_keypoints(info: RunInfo, row, estimator: BlazePose) -> np.ndarray | None:
    """(17, 3) model keypoints BlazePose finds on the sample's crop (the square the run's
    crops are cut to, at the scene's resolution, as ``--keypoints estimated`` does, with the
    still-picture fallbacks of ``core.estimator.still``), or None when it finds nobody."""
    sample = sal.row_sample(info, row)
    _, margin = sal.run_image_settings(info)
    crop = np.asarray(load_crop(sample, margin).convert("RGB"))
    people = estimate_still(estimator, crop, max_people=1)
    if not people:
        return None
    kp = coco17_from_blazepose(people[0].landmarks, people[0].visibility)
    return model_input(keypoints_in_box(kp, (0, 0, crop.shape[1], crop.shape[0])))


@dataclass(frozen=True)
class Counterfactual:
    what: str                   # e.g. "left_wrist moved 0.1 x PCK up" / "BlazePose's keypoints"
    before: np.ndarray          # (C,) probabilities with the keypoints the run saw
    after: np.ndarray           # (C,) with the changed keypoints
    keypoints: torch.Tensor     # (17, 3) the changed keypoints

    @property
    def changed_class(self) -> bool:
        return int(np.argmax(self.before)) != int(np.argmax(self.after))


def counterfactual(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor,
                   new_keypoints: torch.Tensor, what: str) -> Counterfactual:
    """The prediction before and after replacing the keypoints (image unchanged)."""
    need_keypoints(model, "a keypoint counterfactual")
    return Counterfactual(what, sal.predict(model, image, keypoints), sal.predict(model, image, new_keypoints),
                          new_keypoints)
