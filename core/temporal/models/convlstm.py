"""Bidirectional ConvLSTM refinement (sum or concat merge of the two directions).

A ConvLSTM cell is an LSTM whose gates are convolutions, so its hidden state keeps the
spatial layout of a heatmap. One cell runs forward over the window's frames and another
backward; at every frame the two hidden states are merged (summed, or concatenated and
mixed by a 1x1 conv) and mapped to a per-frame correction of the input heatmaps.

Scale: the hidden state is bounded by tanh, while preprocessed heatmaps peak at tens
(each map sums to 255), so the model works on maps divided by their mean peak
(``peak_scale``) and its correction is scaled back; without this the output layer
would need weights of ~50 before it could move a peak, thousands of Adam steps away.

Speed: the input-to-gates convolution does not depend on the recurrence, so it is run
once over all T frames as one batched conv; only the hidden-to-gates conv is in the time
loop, and both directions share each step's kernels (a grouped conv), which halves the
number of small kernel launches that bound a recurrent model on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.temporal.models.conv3d import peak_scale


@dataclass
class ConvLSTMConfig:
    keypoints: int = 25      # heatmap channels K
    frames: int = 5          # window length T (the recurrence handles any T)
    hidden: int = 32         # hidden/cell channels of each direction
    kernel: int = 3          # gate convolution kernel (odd, 'same' padding)
    merge: str = "sum"       # "sum" | "concat": how the two directions are combined
    last_init_std: float = 1e-3  # std of the output conv's init: small = starts near identity

    @property
    def arch(self) -> str:
        return f"convlstm-{self.merge}"


class BiConvLSTMRefiner(nn.Module):
    output_kind = "heatmaps"

    def __init__(self, cfg: ConvLSTMConfig):
        super().__init__()
        if cfg.merge not in ("sum", "concat"):
            raise ValueError(f"merge must be 'sum' or 'concat', not {cfg.merge!r}")
        self.cfg = cfg
        k, hid, pad = cfg.kernel, cfg.hidden, cfg.kernel // 2
        # Both directions in one conv each: channels [forward: i f o g | backward: i f o g].
        # The hidden-to-gates conv is grouped (block-diagonal), so each direction only
        # sees its own state -- two independent LSTMs, but half the kernel launches.
        self.x2g = nn.Conv2d(cfg.keypoints, 2 * 4 * hid, k, padding=pad)
        self.h2g = nn.Conv2d(2 * hid, 2 * 4 * hid, k, padding=pad, bias=False, groups=2)
        # concat merge: 1x1 conv over both directions' states; sum merge: 1x1 conv over their sum.
        self.head = nn.Conv2d(hid * (2 if cfg.merge == "concat" else 1), cfg.keypoints, 1)
        nn.init.normal_(self.head.weight, std=cfg.last_init_std)
        nn.init.zeros_(self.head.bias)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both directions at once: x (B, T, K, H, W) -> forward, backward states (B, T, h, H, W)."""
        b, t, _, hh, ww = x.shape
        hid = self.cfg.hidden
        gx = self.x2g(x.flatten(0, 1)).unflatten(0, (b, t))               # (B, T, 8h, H, W)
        # step s feeds frame s to the forward cell and frame T-1-s to the backward cell
        gx = torch.cat([gx[:, :, :4 * hid], gx[:, :, 4 * hid:].flip(1)], dim=2)  # (B, T, 8h, H, W)
        h = x.new_zeros(b, 2 * hid, hh, ww)                               # (B, 2h, H, W)
        c = x.new_zeros(b, 2, hid, hh, ww)                                # (B, 2, h, H, W)
        states = []
        for s in range(t):
            gates = (gx[:, s] + self.h2g(h)).unflatten(1, (2, 4, hid))    # (B, 2, 4, h, H, W)
            i, f, o, g = gates.unbind(2)                                  # (B, 2, h, H, W) each
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            hs = torch.sigmoid(o) * torch.tanh(c)                         # (B, 2, h, H, W)
            states.append(hs)
            h = hs.flatten(1, 2)
        states = torch.stack(states, dim=1)                               # (B, T, 2, h, H, W)
        return states[:, :, 0], states[:, :, 1].flip(1)                   # back in frame order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, K, H, W)
        scale = peak_scale(x)                                            # (B, 1, 1, 1, 1)
        xn = x / scale                                                   # peaks ~1
        fwd, bwd = self._run(xn)                                         # (B, T, h, H, W) each
        merged = fwd + bwd if self.cfg.merge == "sum" else torch.cat([fwd, bwd], dim=2)
        delta = self.head(merged.flatten(0, 1)).unflatten(0, x.shape[:2])  # (B, T, K, H, W)
        return x + delta * scale
