"""Conv3D refinement: 3-D convolutions over (time, H, W), keypoints as channels.

The window's 25 heatmaps per frame are the input channels, so one kernel mixes every
keypoint's evidence across neighbouring frames and pixels (a wrist next to an elbow
across 3 frames). The stack predicts a correction that is added to the input: with the
last layer initialised small, an untrained model is (almost) the identity function, so
training starts from the estimator's own PCK instead of from noise. The layers see
maps divided by their mean peak (``peak_scale``), so they work at any heatmap scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def peak_scale(x: torch.Tensor) -> torch.Tensor:
    """Mean of the per-map maxima of each window: (B, T, K, H, W) -> (B, 1, 1, 1, 1).

    Heatmaps summed to c = 255 peak at tens of units, more for sharper or smaller maps.
    Dividing by this scale (and multiplying the output back) gives the layers inputs
    of order 1 at any heatmap size or sharpness; it is computed per window, so nothing
    is stored and the model stays a pure function of its input.
    """
    return x.detach().amax(dim=(-2, -1), keepdim=True).mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)


@dataclass
class Conv3DConfig:
    keypoints: int = 25      # heatmap channels K
    frames: int = 5          # window length T (the kernel pads, any T works)
    hidden: int = 32         # channels of the inner layers
    layers: int = 3          # conv layers in all (>= 2: in, hidden..., out)
    kernel: int = 3          # kernel size over time and space (odd, 'same' padding)
    last_init_std: float = 1e-3  # std of the last layer's init: small = starts near identity

    arch = "conv3d"


class Conv3DRefiner(nn.Module):
    output_kind = "heatmaps"

    def __init__(self, cfg: Conv3DConfig):
        super().__init__()
        if cfg.layers < 2 or cfg.kernel % 2 == 0:
            raise ValueError("Conv3D needs layers >= 2 and an odd kernel")
        self.cfg = cfg
        chans = [cfg.keypoints] + [cfg.hidden] * (cfg.layers - 1) + [cfg.keypoints]
        blocks: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            blocks.append(nn.Conv3d(cin, cout, cfg.kernel, padding=cfg.kernel // 2))
            if i < len(chans) - 2:
                blocks.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*blocks)
        last = self.net[-1]
        # Small, not zero: zero would also zero every earlier layer's first gradient.
        nn.init.normal_(last.weight, std=cfg.last_init_std)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, K, H, W) preprocessed heatmaps
        scale = peak_scale(x)                     # (B, 1, 1, 1, 1)
        h = (x / scale).transpose(1, 2)           # (B, K, T, H, W): keypoints as channels, peaks ~1
        h = h + self.net(h)                       # (B, K, T, H, W) residual correction
        return h.transpose(1, 2) * scale          # (B, T, K, H, W), input scale again
