"""Can a saliency map be trusted? Two checks from the literature, for one map of one
input, cheap enough to run on request on a CPU.

**Deletion and insertion** (Petsiuk, Das & Saenko 2018, "RISE", section 4.1). Pixels are
ranked by the map, most salient first. *Deletion* replaces them, a share t of the pixels
at a time, by the ImageNet mean colour (zero in normalised space) and follows the
probability of the explained class; a faithful map makes it fall fast: a low area under
the curve (AUC over t in [0, 1], trapezoid rule). *Insertion* starts from a blurred copy
of the image and puts the original pixels back in the same order; a faithful map makes
the probability rise fast: a high AUC. The same two curves for a random pixel order
(seeded) are the baseline a map must beat. Where this deviates from RISE: the curves are
sampled at ``steps`` + 1 shares (RISE steps 224 pixels at a time) so that a CPU answers in
seconds; the blur is a Gaussian of sigma 5 px per 224 px of side (RISE's kernel, scaled to
the input); for keypoint presets the keypoints stay as they are: the curves measure the
evidence in the pixels given the keypoints (what the keypoints carry is
``core.classification.attribution``'s question).

**Model-randomisation sanity check** (Adebayo et al. 2018, "Sanity Checks for Saliency
Maps", cascading randomisation). The same method explains the same input and class on
copies of the model whose weights are re-initialised from the top down: the head (the
backbone's own fc and the classifier head: everything after the pooled features), then
layer4 as well, then the whole network. The Spearman rank correlation of each
randomised map with the original says how much of the map survives; a map that barely
changes when the weights it should explain are gone is explaining the picture, not the
model. ``RANK_THRESHOLD``: a stage whose correlation stays at or above it counts as
"unchanged"; the check fails when the map is unchanged with the whole network
randomised, and warns when it is unchanged with the head randomised (the map then says
little about the class). Re-initialisation uses each layer's own ``reset_parameters``
(torchvision's init; BatchNorm back to identity statistics), seeded per layer, so a stage
is the same network whichever stage was computed first. Adebayo et al. also report SSIM
and the correlation of signed maps; the maps here are non-negative (absolute) ones, so
the rank correlation is the one given.

Nothing here modifies the model it is given: the randomised models are deep copies, and
all forward passes run under ``torch.no_grad`` in eval mode.
"""
from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from scipy.stats import spearmanr

from core.classification import saliency as sal

DEFAULT_STEPS = 10              # the curves are sampled at 11 shares 0, 0.1, ..., 1
RANK_THRESHOLD = 0.5            # Spearman rho at or above: the map did not change
STAGES: dict[str, str] = {      # cascading randomisation, top down
    "head": "head randomised (fc + classifier head)",
    "layer4": "head + layer4 randomised",
    "all": "whole network randomised",
}


@dataclass(frozen=True)
class Curves:
    """Deletion / insertion curves of one map: probabilities of the explained class at
    each share of pixels deleted / inserted, in the map's order and in a random order."""
    fractions: np.ndarray            # (steps + 1,) shares in [0, 1]
    deletion: np.ndarray             # (steps + 1,) probabilities, the map's order
    insertion: np.ndarray
    deletion_random: np.ndarray      # the same for a random order (the baseline)
    insertion_random: np.ndarray

    @property
    def auc(self) -> dict[str, float]:
        """AUC of each curve (trapezoid over the shares); deletion: lower is better,
        insertion: higher is better."""
        f = self.fractions
        return {k: float(np.trapezoid(getattr(self, k), f)) for k in
                ("deletion", "insertion", "deletion_random", "insertion_random")}


@dataclass(frozen=True)
class SanityCheck:
    rank_correlation: dict[str, float]   # stage -> Spearman rho with the original (NaN: map vanished)
    threshold: float = RANK_THRESHOLD

    @property
    def unchanged(self) -> dict[str, bool]:
        return {s: bool(np.isfinite(r) and r >= self.threshold) for s, r in self.rank_correlation.items()}

    @property
    def passed(self) -> bool:
        """False when the map survives randomising the whole network."""
        return not self.unchanged.get("all", False)

    @property
    def verdict(self) -> str:
        """One sentence for the page."""
        rho = self.rank_correlation
        if not self.passed:
            return (f"Fails the randomisation check: with the whole network randomised the map keeps a rank "
                    f"correlation of {rho['all']:.2f} (>= {self.threshold}) with the original; it shows the "
                    "picture's structure, not what this model learned.")
        if self.unchanged.get("head", False):
            return (f"Passes, with a warning: randomising the head leaves the map nearly as it was "
                    f"(rho {rho['head']:.2f}), so it says little about the class; randomising the network "
                    f"changes it (rho {rho['all']:.2f}).")
        return ("Passes the randomisation check: the map changes as the model's weights are randomised "
                f"(rank correlation {', '.join(f'{s} {r:.2f}' for s, r in rho.items())}).")


# ------------------------------------------------------------------ deletion / insertion


def blurred(image: torch.Tensor) -> torch.Tensor:
    """RISE's insertion canvas: the (3, H, W) image under a Gaussian blur of sigma 5 px per
    224 px of side (kernel 11 px per 224, odd)."""
    side = min(image.shape[-2:])
    sigma = 5.0 * side / 224
    k = max(3, int(round(11 * side / 224)) | 1)
    return TF.gaussian_blur(image[None], [k, k], [sigma, sigma])[0]


def pixel_order(saliency_map: np.ndarray) -> np.ndarray:
    """(H * W,) flat pixel indices, most salient first (stable: ties keep raster order)."""
    return np.argsort(-np.asarray(saliency_map, np.float64).ravel(), kind="stable")


def _probe_images(image: torch.Tensor, canvas: torch.Tensor, order: np.ndarray, counts: list[int],
                  fill_from_image: bool) -> torch.Tensor:
    """(len(counts), 3, H, W): for each count n, the first n pixels of ``order`` taken from
    ``image`` onto ``canvas`` (insertion) or from ``canvas`` onto ``image`` (deletion)."""
    H, W = image.shape[-2:]
    rank = np.empty(H * W, np.int64)
    rank[order] = np.arange(H * W)                                      # pixel -> its rank
    rank_t = torch.from_numpy(rank).view(1, 1, H, W)
    n = torch.tensor(counts).view(-1, 1, 1, 1)
    first = rank_t < n                                                  # (K, 1, H, W)
    src, dst = (image, canvas) if fill_from_image else (canvas, image)
    return torch.where(first, src[None], dst[None])


@torch.no_grad()
def _probabilities(model, images: torch.Tensor, keypoints: torch.Tensor | None, target: int,
                   batch: int) -> np.ndarray:
    dev = sal._device(model)
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(dev).contiguous(memory_format=torch.channels_last)
        args = (x,) if keypoints is None else (x, keypoints[None].to(dev).expand(len(x), -1, -1))
        out.append(torch.softmax(model(*args).float(), dim=1)[:, target].cpu())
    return torch.cat(out).numpy().astype(np.float64)


def deletion_insertion(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor | None,
                       target: int, saliency_map: np.ndarray, *, steps: int = DEFAULT_STEPS,
                       seed: int = 0, batch: int = 16) -> Curves:
    """Deletion and insertion curves (module docstring) of ``saliency_map`` (H, W) for the
    (3, H, W) normalised ``image`` (+ (17, 3) keypoints) and class ``target``."""
    if image.ndim != 3 or tuple(saliency_map.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"map {tuple(saliency_map.shape)} does not match image {tuple(image.shape)}")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    image = image.detach().float().cpu()
    H, W = image.shape[-2:]
    fractions = np.linspace(0, 1, steps + 1)
    counts = [int(round(f * H * W)) for f in fractions]
    inner = counts[1:-1]                  # both ends are the same images for every order
    canvas_del, canvas_ins = torch.zeros_like(image), blurred(image)
    orders = {"map": pixel_order(saliency_map), "random": np.random.default_rng(seed).permutation(H * W)}
    # one batch of every distinct probe image: the original, the fully deleted, the
    # blurred canvas, then the inner points of the four curves
    probes = [image[None], canvas_del[None], canvas_ins[None]]
    for o in orders.values():
        probes.append(_probe_images(image, canvas_del, o, inner, fill_from_image=False))
        probes.append(_probe_images(image, canvas_ins, o, inner, fill_from_image=True))
    with sal._eval_mode(model):
        p = _probabilities(model, torch.cat(probes), keypoints, int(target), batch)
    p_image, p_deleted, p_canvas, rest = p[0], p[1], p[2], p[3:].reshape(4, len(inner))

    def curve(start, middle, end):
        return np.concatenate([[start], middle, [end]])
    return Curves(fractions=fractions,
                  deletion=curve(p_image, rest[0], p_deleted), insertion=curve(p_canvas, rest[1], p_image),
                  deletion_random=curve(p_image, rest[2], p_deleted),
                  insertion_random=curve(p_canvas, rest[3], p_image))


# ------------------------------------------------------------------ randomisation check


def _stage_prefixes(stage: str) -> tuple[str, ...]:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {list(STAGES)}")
    return {"head": ("head.", "fc."), "layer4": ("head.", "fc.", "backbone.layer4."),
            "all": ("head.", "fc.", "backbone.")}[stage]


def randomised_model(model: torch.nn.Module, stage: str, seed: int = 0) -> torch.nn.Module:
    """A deep copy of ``model`` (a PoseClassifier) with the layers of ``stage``
    re-initialised (``reset_parameters``), each seeded by ``seed`` and its own name; eval mode."""
    prefixes = _stage_prefixes(stage)
    with sal.HOOK_LOCK:         # never copy a shared model while Grad-CAM has hooked it
        twin = copy.deepcopy(model).eval()
    for name, module in twin.named_modules():
        if name and f"{name}.".startswith(prefixes) and hasattr(module, "reset_parameters"):
            # a generator per layer, so layer4 is the same network in stage "layer4" and "all"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def randomised_map(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor | None,
                   target: int, method: str, stage: str, *, seed: int = 0, **options) -> np.ndarray:
    """The raw (unscaled) map of ``method`` on the model randomised up to ``stage``."""
    return sal.compute_saliency(randomised_model(model, stage, seed), image, keypoints, target,
                                method, **options).raw


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two maps over their pixels; NaN when either is constant (an
    empty map has no ranking)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps of different sizes {a.shape} and {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def sanity_check(original: np.ndarray, randomised: dict[str, np.ndarray],
                 threshold: float = RANK_THRESHOLD) -> SanityCheck:
    """The check from the original map and the maps of the randomised stages."""
    return SanityCheck({s: rank_correlation(original, m) for s, m in randomised.items()}, threshold)


def randomisation_check(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor | None,
                        target: int, method: str, *, seed: int = 0, on_progress=None,
                        **options) -> SanityCheck:
    """The whole check in one call (benches, notebooks); the page runs it stage by stage
    (``randomised_map``) to show its progress. ``on_progress(fraction, message)``."""
    original = sal.compute_saliency(model, image, keypoints, target, method, **options).raw
    maps = {}
    for i, stage in enumerate(STAGES):
        if on_progress is not None:
            on_progress(i / len(STAGES), STAGES[stage])
        maps[stage] = randomised_map(model, image, keypoints, target, method, stage, seed=seed, **options)
    return sanity_check(original, maps)
