"""Identity: the estimator's own heatmaps, unchanged. The baseline every table compares to."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class IdentityConfig:
    keypoints: int = 25      # K (kept so every config says what it expects)
    frames: int = 5          # window length T

    arch = "identity"


class Identity(nn.Module):
    output_kind = "heatmaps"

    def __init__(self, cfg: IdentityConfig | None = None):
        super().__init__()
        self.cfg = cfg or IdentityConfig()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x                                  # (B, T, K, H, W)
