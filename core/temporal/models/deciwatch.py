"""DeciWatch (Zeng et al., ECCV 2022), sample-denoise-recover, on a 5-frame window.

DeciWatch refines a pose *sequence*, not heatmaps: coordinates are decoded from the
estimator's heatmaps (argmax + sub-pixel, ``core.heatmaps.decode_heatmaps``), then

1. sample every ``interval``-th frame (window T = interval * Q + 1, so for T = 5 the
   interval is 2 (Q = 2, frames 0, 2, 4) or 4 (Q = 1, frames 0, 4));
2. DenoiseNet: a transformer encoder over the Q + 1 sampled poses (one token per
   frame, linear pose embedding + sinusoidal position of the frame in the window),
   predicting a residual that denoises them;
3. linear interpolation of the denoised sampled poses back to all T frames;
4. RecoverNet: a 1-D convolution over time embeds the interpolated sequence (so each
   token sees its neighbours, which a per-frame linear layer cannot), then a
   transformer decoder attends to DenoiseNet's memory and predicts a residual on the
   interpolated poses.

Losses (``deciwatch_loss``): L1 between the denoised sampled poses and the ground truth
of those frames, plus L1 between the recovered poses and the ground truth of all frames,
both masked by visibility, weighted 1 and 5 as in the reference implementation
(cure-lab/DeciWatch: the recovery is what is scored, the denoising only helps it).
Two departures from the reference, both switchable in the config: the ground truth is
taken on the estimator's sides, left and right exchanged in the frames where the
estimator exchanged them (``keep_sides``, ``estimator_sides``), and training windows are
randomly rotated, scaled, shifted, mirrored and reversed (``augment``,
``core.temporal.models.augment``). Without them, on a few dozen training videos, DeciWatch
learnt which poses the estimator gets wrong instead of how poses move.

For a 5-frame window the interval is 1, 2 or 4. Interval 1 watches every frame (no
sampling: DenoiseNet sees all five, the interpolation is the identity); interval 2
watches frames 0, 2, 4 and must recover 1 and 3 from them, 4 only 0 and 4. The paper's
saving comes from long windows (interval 10 over 100 frames); in 5 frames every skipped
frame is evidence thrown away, which is why the demo uses interval 1. Coordinates inside the model are normalised to [-1, 1] by the
heatmap size so the transformer sees the same scale at any heatmap resolution; outputs
are returned in heatmap pixels like every other model's decoded output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from core.heatmaps import decode_heatmaps
from core.keypoints import TEMPORAL25, flip_permutation
from core.temporal.models.augment import WindowTransform


@dataclass
class DeciWatchConfig:
    keypoints: int = 25      # K; a token is one frame's K x 2 coordinates
    frames: int = 5          # window length T = interval * Q + 1
    interval: int = 2        # sample every interval-th frame (1, 2 or 4 for T = 5: module docstring)
    embed_dim: int = 128     # transformer width
    heads: int = 4           # attention heads (embed_dim % heads == 0)
    encoder_layers: int = 3  # DenoiseNet depth
    decoder_layers: int = 3  # RecoverNet depth
    ffn_dim: int = 256       # transformer feed-forward width
    dropout: float = 0.1     # transformer dropout (the paper's value)
    recover_kernel: int = 5  # RecoverNet's temporal conv embedding kernel (odd)
    denoise_weight: float = 1.0  # weight of the denoise L1 term (the reference's 1)
    recover_weight: float = 5.0  # weight of the recover L1 term (the reference's 5)
    out_init_std: float = 0.0    # std of both output layers' init: 0 = an untrained model returns its input
    augment: bool = True         # train on rotated, scaled, shifted, mirrored, reversed windows (models/augment.py)
    keep_sides: bool = True      # train towards the ground truth on the estimator's sides (``estimator_sides``)

    arch = "deciwatch"


def sine_positions(length: int, dim: int) -> torch.Tensor:
    """Transformer sinusoidal position table (length, dim), frame index = position."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]                 # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def interpolation_matrix(frames: int, interval: int) -> torch.Tensor:
    """(T, Q+1) weights: row t linearly interpolates frame t from the sampled frames."""
    q = (frames - 1) // interval
    w = torch.zeros(frames, q + 1)
    for t in range(frames):
        j, r = divmod(t, interval)
        if r == 0:
            w[t, j] = 1.0
        else:
            w[t, j], w[t, j + 1] = 1 - r / interval, r / interval
    return w


class DeciWatch(nn.Module):
    output_kind = "coords"

    def __init__(self, cfg: DeciWatchConfig):
        super().__init__()
        if cfg.interval < 1 or (cfg.frames - 1) % cfg.interval:
            raise ValueError(f"DeciWatch needs frames = interval * Q + 1; got frames={cfg.frames}, "
                             f"interval={cfg.interval}")
        if cfg.recover_kernel % 2 == 0:
            raise ValueError("recover_kernel must be odd")
        self.cfg = cfg
        d, e = cfg.keypoints * 2, cfg.embed_dim
        self.denoise_embed = nn.Linear(d, e)
        self.denoise = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(e, cfg.heads, cfg.ffn_dim, cfg.dropout, batch_first=True),
            cfg.encoder_layers, enable_nested_tensor=False)
        self.denoise_out = nn.Linear(e, d)
        self.recover_embed = nn.Conv1d(d, e, cfg.recover_kernel, padding=cfg.recover_kernel // 2)
        self.recover = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(e, cfg.heads, cfg.ffn_dim, cfg.dropout, batch_first=True),
            cfg.decoder_layers)
        self.recover_out = nn.Linear(e, d)
        # Both stages predict residuals. Zero output layers make an untrained model return
        # the linearly interpolated input (at interval 1: the input itself), so epoch 0,
        # a candidate best, is the identity baseline and not a random perturbation of it:
        # at std 1e-3 the untrained residual was ~0.1 heatmap px, a tenth of PCK@0.05's
        # radius. The first step still trains them (their gradient is delta * h).
        for out in (self.denoise_out, self.recover_out):
            nn.init.normal_(out.weight, std=cfg.out_init_std)           # std 0: zeros
            nn.init.zeros_(out.bias)
        # Constants, not weights: rebuilt from the config, never saved.
        self.register_buffer("positions", sine_positions(cfg.frames, e), persistent=False)
        self.register_buffer("interp", interpolation_matrix(cfg.frames, cfg.interval), persistent=False)
        self.sampled = list(range(0, cfg.frames, cfg.interval))
        # Left <-> right for the mirror augmentation; only the temporal keypoint set has
        # named sides, so a model over other keypoints is never mirrored.
        self.flip = (torch.as_tensor(flip_permutation(TEMPORAL25)) if cfg.keypoints == len(TEMPORAL25) else None)

    # -- coordinate normalisation: heatmap px <-> [-1, 1] (pixel centres span -0.5..S-0.5)
    @staticmethod
    def normalise(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        scale = points.new_tensor([size[1], size[0]])
        return (points + 0.5) / scale * 2 - 1

    @staticmethod
    def denormalise(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        scale = points.new_tensor([size[1], size[0]])
        return (points + 1) / 2 * scale - 0.5

    def forward_coords(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """poses (B, T, K, 2) normalised -> (denoised (B, Q+1, K, 2), recovered (B, T, K, 2))."""
        b, t, k, _ = poses.shape
        x = poses.flatten(2).float()                                      # (B, T, D)
        s = x[:, self.sampled]                                            # (B, Q+1, D)
        memory = self.denoise(self.denoise_embed(s) + self.positions[self.sampled])  # (B, Q+1, E)
        # The coordinate path (input + small learned residuals) stays float32 under bf16
        # autocast: bf16 would round the poses to ~0.004 (0.1-0.3 heatmap px) and swallow
        # the residuals, which start at ~1e-3. The transformers run in bf16.
        denoised = s + self.denoise_out(memory).float()                  # (B, Q+1, D)
        with torch.autocast(device_type=poses.device.type, enabled=False):
            interp = torch.einsum("tq,bqd->btd", self.interp.float(), denoised)  # (B, T, D)
        tokens = self.recover_embed(interp.transpose(1, 2)).transpose(1, 2)  # (B, T, E)
        h = self.recover(tokens + self.positions, memory)                # (B, T, E)
        recovered = interp + self.recover_out(h).float()                 # (B, T, D)
        return denoised.unflatten(2, (k, 2)), recovered.unflatten(2, (k, 2))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, K, H, W) heatmaps -> their peaks (B, T, K, 2), normalised; NaN where a
        map is empty (nobody found in that frame)."""
        points, _ = decode_heatmaps(x)                                   # px, no grad
        return self.normalise(points, x.shape[-2:])

    def forward_train(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, T, K, 2) normalised, NaN where missing -> (denoised, recovered)."""
        # A missing keypoint enters at the map's centre, 0 in normalised coordinates: a
        # neutral guess the model corrects.
        return self.forward_coords(torch.nan_to_num(points, nan=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, K, H, W) -> refined coordinates (B, T, K, 2) in heatmap pixels
        _, recovered = self.forward_train(self.decode(x))
        return self.denormalise(recovered, x.shape[-2:])


def estimator_sides(points: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor,
                    flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ground truth (B, T, K, 2) and visibility (B, T, K) with left and right exchanged
    in the frames whose input ``points`` (B, T, K, 2, NaN where missing) lie closer to the
    exchanged ground truth: the frames where the estimator swapped the body's sides.

    Why: from coordinates alone a body seen from behind is the mirror image of one seen from
    the front, so whether the estimator's sides are right cannot be told. Trained towards
    the true sides, DeciWatch learnt the swaps of the training videos as a prior (on the
    study's BlazePose data it pulled left and right towards each other on a test squat the
    estimator had right, 93 % -> 7 % PCK@0.05). Trained towards the estimator's sides it
    refines positions and leaves the sides as it found them, which the swap-tolerant PCK
    and the share of swapped frames report (``core.metrics``)."""
    both = visible & visible[:, :, flip] & torch.isfinite(points).all(-1)       # (B, T, K)

    def distance(target: torch.Tensor) -> torch.Tensor:                         # (B, T) L1 over counted joints
        return ((points - target).abs().sum(-1).nan_to_num(0.0) * both).sum(-1)
    swapped = distance(gt[:, :, flip]) < distance(gt)                           # (B, T)
    return (torch.where(swapped[..., None, None], gt[:, :, flip], gt),
            torch.where(swapped[..., None], visible[:, :, flip], visible))


def deciwatch_loss(model: nn.Module, base: DeciWatch, batch: dict) -> tuple[list, torch.Tensor]:
    """The two masked L1 terms as (weight, sum, count) and the recovered keypoints (B, T, K, 2)
    in heatmap px (``core.temporal.models.losses``). Each term's count is its (frame,
    keypoint, axis) entries, so the loss does not shrink when fewer joints are visible."""
    x = batch["heatmaps"]                                                # (B, T, K, H, W)
    size = tuple(x.shape[-2:])
    points = base.decode(x)                                              # (B, T, K, 2) normalised
    gt = base.normalise(batch["keypoints"].float(), size)                # (B, T, K, 2)
    visible = batch["visible"]                                           # (B, T, K)
    move = WindowTransform.draw(len(x), base.flip, x.device) if base.training and base.cfg.augment else None
    if move is not None:
        points, gt, visible = move.points(points), move.points(gt), move.mask(visible)
    if base.cfg.keep_sides and base.flip is not None:                    # the loss's own target, also in eval
        gt, visible = estimator_sides(points, gt, visible, base.flip.to(x.device))
    denoised, recovered = model.forward_train(points)                    # normalised coords
    m = visible.float()[..., None]                                       # (B, T, K, 1)

    def l1(pred, target, w):
        return (pred.float() - target).abs().mul(w).sum(), 2 * w.sum()  # 2 axes per point

    s = base.sampled
    terms = [(base.cfg.denoise_weight, *l1(denoised, gt[:, s], m[:, s])),
             (base.cfg.recover_weight, *l1(recovered, gt, m))]
    pred = recovered.detach().float()
    return terms, base.denormalise(move.invert(pred) if move is not None else pred, size)
