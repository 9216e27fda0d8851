"""Random transforms of coordinate windows, for training coordinate models (DeciWatch).

A heatmap model is a convolution: it cannot tell where in the crop a pose is. DeciWatch
embeds a frame's absolute coordinates with a linear layer, so on a few dozen training
videos it learns *which poses* need *which correction*: on the study's 43 BlazePose
training videos its train PCK@0.05 climbed from 0.69 to 0.90 in ten epochs while the
validation score fell below the untrained model's (docs/RESULTS.md). What it should learn
is how a pose moves over five frames, which does not change when the window is

* rotated (up to ``ROTATE_DEG``), scaled (up to ``SCALE`` either way) and shifted (up to
  ``SHIFT`` of the half-width) in the image plane: the same affine for every frame;
* mirrored left-right, the left and right keypoints exchanged with it (``flip``,
  ``core.keypoints.flip_permutation``);
* played backwards: the model looks both ways in time, so a reversed window is as likely
  as the original.

``WindowTransform`` draws one such transform per window of a batch, applies it to the
input, the ground truth and the visibility alike, and inverts it on the prediction, so
that the training PCK is scored in the original frame. Coordinates are DeciWatch's
normalised ones ([-1, 1] over the heatmap, ``DeciWatch.normalise``); NaN (a missing
keypoint) stays NaN. The draws come from torch's global generator, which the training
loop seeds per epoch, so a resumed run draws what the uninterrupted one would have.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ROTATE_DEG = 30.0   # largest in-plane rotation, either way
SCALE = 1.25        # scale drawn log-uniformly from [1 / SCALE, SCALE]
SHIFT = 0.2         # largest shift per axis, in normalised units (a tenth of the crop)


@dataclass
class WindowTransform:
    """One transform per window: ``x' = A x + shift``, then the mirror's keypoint exchange
    and the time reversal. Shapes: matrix (B, 2, 2), shift (B, 2), mirror and reverse (B,)."""
    matrix: torch.Tensor
    shift: torch.Tensor
    mirror: torch.Tensor
    reverse: torch.Tensor
    flip: torch.Tensor | None     # (K,) left <-> right index array; None: never mirror

    @classmethod
    def draw(cls, batch: int, flip: torch.Tensor | None, device: torch.device | str = "cpu") -> WindowTransform:
        u = lambda: torch.rand(batch, device=device) * 2 - 1          # noqa: E731  U(-1, 1) per window
        angle, scale = u() * math.radians(ROTATE_DEG), torch.exp(u() * math.log(SCALE))
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)   # (B, 2, 2)
        mirror = (torch.rand(batch, device=device) < 0.5) if flip is not None else \
            torch.zeros(batch, dtype=torch.bool, device=device)
        matrix[:, :, 0] = torch.where(mirror[:, None], -matrix[:, :, 0], matrix[:, :, 0])  # x -> -x first
        shift = torch.stack([u(), u()], -1) * SHIFT                    # (B, 2)
        reverse = torch.rand(batch, device=device) < 0.5
        return cls(matrix, shift, mirror, reverse, None if flip is None else flip.to(device))

    def _reorder(self, x: torch.Tensor) -> torch.Tensor:
        """Exchange left and right in mirrored windows and reverse time in reversed ones;
        x (B, T, K, ...). Both are their own inverse."""
        lead = (slice(None),) + (None,) * (x.dim() - 1)
        if self.flip is not None:
            x = torch.where(self.mirror[lead], x[:, :, self.flip], x)
        return torch.where(self.reverse[lead], x.flip(1), x)

    def points(self, p: torch.Tensor) -> torch.Tensor:
        """Coordinates (B, T, K, 2) -> the transformed window's coordinates."""
        moved = torch.einsum("bij,btkj->btki", self.matrix.to(p.dtype), p) + self.shift.to(p.dtype)[:, None, None]
        return self._reorder(moved)

    def mask(self, m: torch.Tensor) -> torch.Tensor:
        """A per-keypoint mask (B, T, K) -> the transformed window's."""
        return self._reorder(m)

    def invert(self, p: torch.Tensor) -> torch.Tensor:
        """Coordinates of the transformed window (B, T, K, 2) -> the original frame's."""
        p = self._reorder(p)
        inverse = torch.linalg.inv(self.matrix.float()).to(p.dtype)
        return torch.einsum("bij,btkj->btki", inverse, p - self.shift.to(p.dtype)[:, None, None])
