"""Saliency maps for the pose classifier, through captum; arrays out, never figures.

``compute_saliency(model, image, keypoints, target, method, **opts)`` answers "which
pixels (and, for keypoint presets, which keypoints) drove the score of class
``target``" with one of ``METHODS``, the one registry of saliency methods: the
Saliency page, the bench scripts and the trust scores (``core.classification.trust``)
all read it.

=====================  ===========================================================
gradient               vanilla gradient |d logit / d pixel|, max over colour
                       channels (Simonyan et al. 2014; the method of the paper)
integrated_gradients   path integral of gradients from a black (ImageNet-mean) image
                       and absent keypoints to the input (Sundararajan et al. 2017)
smoothgrad             gradient averaged over noisy copies of the image (Smilkov et
                       al. 2017), captum NoiseTunnel
gradcam                Grad-CAM on ``model.backbone.layer4`` (Selvaraju et al. 2017),
                       upsampled bilinearly to the image
occlusion              drop of the target logit when a grey square slides over the
                       image (Zeiler & Fergus 2014); slow: one forward per position
=====================  ===========================================================

Adding a method is one function ``(model, x, kp, target, options) -> (map, keypoint
attribution)`` and one ``Method`` entry in ``METHODS`` (its label, options with their
slider ranges, whether it is smooth by construction and whether it is slow).

The model is shared by every dashboard session (``st.cache_resource``), so nothing here
mutates it: it must be in eval mode (a model in train mode is switched for the call and
switched back), gradients are taken with ``torch.autograd.grad`` on the *inputs* only
(no ``.grad`` is written on a parameter), and the only hooks are the ones captum's
LayerGradCam adds and removes inside its call; that one method holds a lock so two
sessions never see each other's hooks.

Maps are scaled to [0, 1] for display: pixel-level methods by their 99.5th percentile
(one saturated pixel would otherwise darken the whole map, as Smilkov et al. note),
Grad-CAM and occlusion (smooth by construction) by their maximum. The unscaled map is
kept too (``SaliencyResult.raw``), so maps of several runs can share one colour scale
(``common_scale``). The keypoint attribution is signed and in logit units: input x
gradient for the gradient family, the integrated gradients themselves, and for
occlusion the logit drop when that keypoint's (x, y, mask) is zeroed, i.e. marked missing.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum import attr as ca
from PIL import Image

from core.classification.crops import (
    DEFAULT_MARGIN,
    crop_box,
    crop_padded,
    keypoints_in_box,
    load_crop,
    model_input,
    model_keypoints,
)
from core.classification.dataset import Sample
from core.classification.image_cache import normalize_uint8
from core.errors import DataError
from core.estimator.blazepose import BlazePose, coco17_from_blazepose
from core.estimator.still import estimate_still
from core.images import image_to_tensor, open_image, read_image_size, tensor_to_image
from core.io import resolve_inside
from core.polygons import polygons_to_mask
from core.runs import RunInfo

# LayerGradCam hooks layer4 for the duration of a call; a deep copy of a shared model
# (core.classification.trust) waits for it too, so it never copies the hooks
HOOK_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- methods
# Each method: (model, x (1, 3, H, W), kp (1, 17, 3) or None, target, options) ->
# (map (H, W) non-negative, keypoint attribution (17,) signed or None). x and kp are
# fresh leaves that require grad; the model is in eval mode.

def _gradient(model, x, kp, target, o):
    inputs = (x,) if kp is None else (x, kp)
    a = ca.Saliency(model).attribute(inputs, target=target, abs=False)
    return a[0].abs().amax(dim=1)[0], _times_input(a, kp)          # (H, W), (17,)


def _smoothgrad(model, x, kp, target, o):
    inputs = (x,) if kp is None else (x, kp)
    rng = float((x.max() - x.min()).detach()) or 1.0
    nt = ca.NoiseTunnel(ca.Saliency(model))
    # Noise on the pixels only: keypoints are exact annotations, not a signal whose local
    # noise the method is meant to average out.
    a = nt.attribute(inputs, nt_type="smoothgrad", nt_samples=int(o["samples"]),
                     nt_samples_batch_size=int(o["batch"]),
                     stdevs=(float(o["noise"]) * rng,) + ((0.0,) if kp is not None else ()),
                     target=target, abs=False)
    return a[0].abs().amax(dim=1)[0], _times_input(a, kp)


def _integrated_gradients(model, x, kp, target, o):
    inputs = (x,) if kp is None else (x, kp)
    # Baseline: zeros in normalised space = the ImageNet mean colour, and every keypoint
    # marked missing (mask 0).
    a = ca.IntegratedGradients(model).attribute(
        inputs, baselines=tuple(torch.zeros_like(t) for t in inputs), target=target,
        n_steps=int(o["steps"]), internal_batch_size=int(o["batch"]))
    return a[0].abs().sum(dim=1)[0], None if kp is None else a[1][0].sum(dim=-1)


def _gradcam(model, x, kp, target, o):
    H, W = x.shape[-2:]
    with HOOK_LOCK:
        cam = ca.LayerGradCam(model, model.backbone.layer4).attribute(
            x, target=target, additional_forward_args=None if kp is None else (kp,),
            relu_attributions=True)                                        # (1, 1, h, w)
    img_map = F.interpolate(cam.detach().float(), size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    kp_attr = None
    if kp is not None:
        g = ca.InputXGradient(model).attribute((x, kp), target=target)
        kp_attr = g[1][0].sum(dim=-1)
    return img_map, kp_attr


def _occlusion(model, x, kp, target, o):
    H, W = x.shape[-2:]
    inputs = (x,) if kp is None else (x, kp)
    win = int(o["window"]) or max(1, round(min(H, W) / 7))
    stride = int(o["stride"]) or win
    shapes = ((3, win, win),) + (((1, 3),) if kp is not None else ())
    strides = ((3, stride, stride),) + (((1, 3),) if kp is not None else ())
    a = ca.Occlusion(model).attribute(
        inputs, sliding_window_shapes=shapes, strides=strides,
        baselines=(0.0,) * len(inputs),   # grey (mean) square; keypoint marked missing
        target=target, perturbations_per_eval=int(o["batch"]))
    return a[0].mean(dim=1)[0].clamp(min=0), None if kp is None else a[1][0, :, 0]   # logit drop


@dataclass(frozen=True)
class Option:
    """One option of a method: its default, and for the page a slider (None: not shown,
    e.g. a batch size that changes the speed, not the map)."""
    default: float | int
    label: str | None = None
    low: float = 0
    high: float = 0
    step: float = 1


@dataclass(frozen=True)
class Method:
    label: str                                    # what the page shows
    fn: Callable                                  # see "methods" above
    options: dict[str, Option] = field(default_factory=dict)
    smooth: bool = False                          # smooth by construction: scaled by its max
    slow: bool = False                            # seconds on a CPU: behind a spinner, fewer bench samples

    @property
    def defaults(self) -> dict[str, float | int]:
        return {k: o.default for k, o in self.options.items()}


# Defaults chosen for a live demo on a CPU: they answer in a few seconds at 224 px; raise
# them for publication figures.
METHODS: dict[str, Method] = {
    "gradient": Method("Vanilla gradient (the paper's)", _gradient),
    "integrated_gradients": Method("Integrated Gradients", _integrated_gradients, {
        "steps": Option(24, "Steps", 4, 128),            # Riemann steps
        "batch": Option(8)}, slow=True),                 # steps per forward
    "smoothgrad": Method("SmoothGrad", _smoothgrad, {
        "samples": Option(12, "Noisy samples", 2, 64),
        "noise": Option(0.15, "Noise (fraction of the value range)", 0.05, 0.5, 0.05),  # std / (max - min)
        "batch": Option(6)}, slow=True),
    "gradcam": Method("Grad-CAM (layer4)", _gradcam, smooth=True),
    # 0 = image side / 7 and stride = window: 7 x 7 positions (+ one per keypoint), a few
    # seconds on CPU; a smaller stride gives a smoother map at quadratic cost.
    "occlusion": Method("Occlusion", _occlusion, {
        "window": Option(0, "Window (px, 0 = side/7)", 0, 96),
        "stride": Option(0, "Stride (px, 0 = window)", 0, 64),
        "batch": Option(16)}, smooth=True, slow=True),
}


@dataclass(frozen=True)
class SaliencyResult:
    map: np.ndarray                          # (H, W) float32 in [0, 1]
    keypoint_attribution: np.ndarray | None  # (17,) float32, signed, logit units; None without keypoints
    seconds: float                           # wall time of the attribution itself
    method: str
    target: int
    raw: np.ndarray | None = None            # (H, W) float32 >= 0, unscaled (common_scale)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def predict(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor | None = None) -> np.ndarray:
    """Class probabilities (C,) for one normalised image (3, H, W) (+ keypoints (17, 3))."""
    dev = _device(model)
    with _eval_mode(model), torch.no_grad():
        args = (image[None].to(dev),) + (() if keypoints is None else (keypoints[None].to(dev),))
        return torch.softmax(model(*args).float(), dim=1)[0].cpu().numpy()


def method_options(method: str, opts: dict) -> dict:
    """The method's defaults updated by ``opts``; an unknown method or option raises
    ValueError (so a typo is not silently ignored)."""
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {list(METHODS)}")
    unknown = set(opts) - set(METHODS[method].options)
    if unknown:
        raise ValueError(f"{method} takes no option(s) {sorted(unknown)}")
    return {**METHODS[method].defaults, **opts}


def compute_saliency(model: torch.nn.Module, image: torch.Tensor, keypoints: torch.Tensor | None,
                     target: int, method: str, **opts) -> SaliencyResult:
    """Saliency of logit ``target`` for one image.

    image: (3, H, W) ImageNet-normalised; keypoints: (17, 3) as PoseDataset yields them
    (x/W, y/H, mask) for a model whose preset uses keypoints, else None; method: a key
    of METHODS; opts: the method's options (``METHODS[method].options``).
    """
    o = method_options(method, opts)
    target = int(target)          # captum rejects numpy integers
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    dev = _device(model)
    # Fresh leaf copies that require grad: the caller's tensors are never touched.
    x = image[None].detach().to(dev, torch.float32).clone().requires_grad_()  # (1, 3, H, W)
    kp = None if keypoints is None else \
        keypoints[None].detach().to(dev, torch.float32).clone().requires_grad_()  # (1, 17, 3)
    t0 = time.perf_counter()
    with _eval_mode(model):
        img_map, kp_attr = METHODS[method].fn(model, x, kp, target, o)
    seconds = time.perf_counter() - t0
    raw = np.maximum(np.nan_to_num(img_map.detach().float().cpu().numpy(), nan=0.0, posinf=0.0,
                                   neginf=0.0), 0).astype(np.float32)
    kpa = None if kp_attr is None else kp_attr.detach().float().cpu().numpy().astype(np.float32)
    return SaliencyResult(map=scale_map(raw, method), keypoint_attribution=kpa, seconds=seconds,
                          method=method, target=target, raw=raw)


def _times_input(grads: tuple[torch.Tensor, ...], kp: torch.Tensor | None) -> torch.Tensor | None:
    """Keypoint attribution as input x gradient, summed over (x, y, mask): (17,)."""
    return None if kp is None else (grads[1] * kp)[0].sum(dim=-1)


def map_top(raw: np.ndarray, method: str) -> float:
    """The value a method's map is scaled by: its 99.5th percentile for pixel-level methods,
    its maximum for smooth ones (falling back to the maximum when the percentile is 0)."""
    m = np.maximum(np.nan_to_num(np.asarray(raw, np.float32)), 0)
    top = float(m.max()) if METHODS[method].smooth else float(np.percentile(m, 99.5))
    return top if top > 0 else float(m.max())


def scale_map(raw: np.ndarray, method: str, top: float | None = None) -> np.ndarray:
    """A non-negative map scaled to [0, 1] (float32) by ``top`` (default ``map_top``); an
    all-zero map stays zero."""
    m = np.maximum(np.nan_to_num(np.asarray(raw, np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0)
    top = map_top(m, method) if top is None else float(top)
    if top <= 0:
        return np.zeros(m.shape, np.float32)
    return np.clip(m / top, 0, 1).astype(np.float32)


def common_scale(results: list[SaliencyResult]) -> tuple[list[np.ndarray], float]:
    """Maps of one method from several models on one colour scale: each raw map divided by
    the largest of their ``map_top`` values (so the strongest model's map reaches 1 and the
    others keep their relative strength). Returns the scaled maps and that value."""
    if not results:
        return [], 0.0
    methods = {r.method for r in results}
    if len(methods) != 1:
        raise ValueError(f"one method per colour scale, got {sorted(methods)}")
    top = max(map_top(r.raw, r.method) for r in results)
    return [scale_map(r.raw, r.method, top) for r in results], top


# ----------------------------------------------------------------------------- overlay

# Colour maps as a few anchor colours, interpolated into a 256-entry LUT: no
# matplotlib needed at import, and the three cover perceptual (viridis, inferno) and
# the classic saliency look (jet).
_ANCHORS: dict[str, list[str]] = {
    "inferno": ["000004", "1f0c48", "550f6d", "88226a", "ba3655", "e35933", "f98c0a", "f9c932", "fcffa4"],
    "viridis": ["440154", "472c7a", "3b518b", "2c718e", "21908d", "27ad81", "5cc863", "aadc32", "fde725"],
    "jet": ["000080", "0000ff", "0080ff", "00ffff", "80ff80", "ffff00", "ff8000", "ff0000", "800000"],
    "gray": ["000000", "ffffff"],
}
COLORMAPS: tuple[str, ...] = tuple(_ANCHORS)


def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a colour map."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; choose from {COLORMAPS}")
    rgb = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in _ANCHORS[name]], float)
    pos = np.linspace(0, 1, len(rgb))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def colorize(m: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """(H, W) map in [0, 1] -> (H, W, 3) uint8 colours."""
    idx = (np.clip(np.nan_to_num(m), 0, 1) * 255).round().astype(np.intp)
    return colormap_lut(colormap)[idx]


def overlay(image: np.ndarray, m: np.ndarray, opacity: float = 0.5,
            colormap: str = "inferno") -> np.ndarray:
    """Blend a colour-mapped saliency map over an image.

    image: (H, W, 3) uint8; m: (h, w) in [0, 1], resized bilinearly to (H, W) when it
    differs; opacity in [0, 1] (0 = the image, 1 = the map). Returns (H, W, 3) uint8.
    """

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    H, W = image.shape[:2]
    m = np.asarray(m, np.float32)
    if m.shape != (H, W):
        m = np.asarray(Image.fromarray(m, mode="F").resize((W, H), Image.BILINEAR))
    alpha = float(np.clip(opacity, 0.0, 1.0))
    out = (1 - alpha) * image.astype(np.float32) + alpha * colorize(m, colormap).astype(np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def to_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image (for a download button)."""

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------ inputs
# What the saliency page feeds the model: a run's test sample, exactly as the run saw it
# (same crop, margin and size as PoseDataset), or an uploaded picture.

@dataclass(frozen=True)
class SaliencyInput:
    image: torch.Tensor                 # (3, S, S) ImageNet-normalised, what the model sees
    keypoints: torch.Tensor | None      # (17, 3) [x/W, y/H, mask] or None (no keypoints)
    display: np.ndarray                 # (S, S, 3) uint8: the same pixels, for the overlay
    label: int | None                   # true class when known (test samples)
    name: str                           # for captions and file names
    person: np.ndarray | None = None    # (S, S) bool: the person's outline in the input, when known


def run_image_settings(info: RunInfo) -> tuple[int, float]:
    """(image_size, margin) a classifier run was trained with (config.train), with the
    paper's defaults for runs that do not record them."""
    train = info.config.get("train") or {}
    return int(train.get("image_size", 224)), float(train.get("margin", 0.15))


def run_uses_keypoints(info: RunInfo) -> bool:
    return bool((info.config.get("model") or {}).get("use_keypoints", False))


def row_sample(info: RunInfo, row, scene_size: tuple[int, int] | None = None, *,
               source: str = "run") -> Sample:
    """The ``Sample`` of one predictions.parquet row, its image path resolved inside the
    run's data root (a path that leaves it is a DataError), with the keypoints the run
    saw (``source="run"``: the estimator's when it trained on estimated ones) or the
    annotation's (``source="annotation"``). ``scene_size``: the scene's (W, H) when
    already known, else read from the file's header."""
    root = info.data.root
    if not root:
        raise DataError(None, "run.json has no data.root: cannot find the test images")
    path = resolve_inside(root, str(row["image_path"]))
    column = "estimated_keypoints" if source == "run" and info.data.keypoint_source == "estimated" and \
        row.get("estimated_keypoints") is not None else "keypoints"
    kp = np.asarray(row[column], np.float32).reshape(17, 3)
    bbox = tuple(float(v) for v in row["bbox"])
    if len(bbox) != 4:
        raise DataError(path, f"bbox of sample {row['sample_id']} is not 4 numbers")
    return Sample(sample_id=str(row["sample_id"]), image_path=path, rel_path=str(row["image_path"]),
                  image_id=row.get("image_id", ""), scene_id=str(row.get("image_id", "")),
                  person_index=int(row.get("person_index", 0)), label=int(row.get("label", -1)),
                  label_name=str(row.get("label_name", "")), bbox=bbox, keypoints=kp,
                  image_size=scene_size or read_image_size(path), pose_variation=None,
                  exercise_category=None, camera_rotation_deg=None)


def sample_input(info: RunInfo, row, *, use_keypoints: bool, cache=None) -> SaliencyInput:
    """A test sample of a classifier run (one predictions.parquet row) as model input.

    The image path is resolved inside the run's data root (a path that leaves it is a
    DataError), decoded with ``open_image`` and cropped like ``PoseDataset`` does; or,
    when ``cache`` (the run's ``core.classification.image_cache.ImageCache``) holds the sample, its
    cached crop -- the very pixels the run was evaluated on -- and only the scene's
    header is read.
    """

    size, margin = run_image_settings(info)
    root = info.data.root
    if not root:
        raise DataError(None, "run.json has no data.root: cannot find the test images")
    path = resolve_inside(root, str(row["image_path"]))
    cached = cache.crop(row["sample_id"]) if cache is not None and cache.image_size == size \
        and abs(cache.margin - margin) < 1e-9 else None
    scene = open_image(path) if cached is None else None
    sample = row_sample(info, row, scene.size if scene is not None else None)
    image = (image_to_tensor(load_crop(sample, margin, image=scene), size) if cached is None
             else normalize_uint8(torch.from_numpy(cached)))
    kpt = torch.from_numpy(model_keypoints(sample, margin)) if use_keypoints else None
    polygons = row.get("segmentation")
    person = (person_mask(polygons, crop_box(sample.bbox, sample.image_size, margin), size)
              if polygons is not None and len(polygons) else None)
    return SaliencyInput(image=image, keypoints=kpt, display=tensor_to_image(image),
                         label=int(row["label"]) if "label" in row else None,
                         name=str(row["sample_id"]), person=person)


def person_mask(polygons, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(size, size) bool: the person's outline (COCO polygons in scene pixels) in the model's
    input, i.e. in the crop ``box`` (x0, y0, x1, y1) resized to ``size``."""
    x0, y0, x1, _ = box
    return polygons_to_mask(polygons, (size, size), scale=size / float(x1 - x0), origin=(x0, y0))


def mass_inside(saliency_map: np.ndarray, mask: np.ndarray) -> float:
    """Share of a (non-negative) saliency map's mass that falls inside ``mask`` (both
    (S, S)); NaN for an empty map. Chance level is the mask's own share of the pixels."""
    m = np.clip(np.asarray(saliency_map, np.float64), 0, None)
    total = m.sum()
    return float(m[mask].sum() / total) if total > 0 else float("nan")


KEYPOINTS_JSON_EXAMPLE = (
    "[[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0],\n"
    " [120, 80, 2], [160, 82, 2], [110, 120, 2], [170, 121, 2], [105, 160, 2], [175, 158, 1],\n"
    " [125, 170, 2], [155, 171, 2], [122, 230, 2], [158, 231, 2], [120, 290, 2], [160, 292, 2]]")


def read_keypoints_json(text: str, name: str = "keypoints JSON") -> np.ndarray:
    """17 COCO keypoints [x, y, v] in the image's pixels (a JSON list of 17 triples, or an
    object {"keypoints": [...]} with 17 triples or 51 numbers) -> (17, 3) float64."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(name, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if isinstance(obj, dict):
        obj = obj.get("keypoints")
    try:
        kp = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(name, "expected 17 [x, y, v] triples of numbers") from None
    if kp.shape == (51,):
        kp = kp.reshape(17, 3)
    if kp.shape != (17, 3) or not np.isfinite(kp).all():
        raise DataError(name, f"expected 17 [x, y, v] triples of finite numbers, got shape {kp.shape}")
    if ((kp[:, 2] < 0) | (kp[:, 2] > 2)).any():
        raise DataError(name, "visibility v must be 0 (absent), 1 (occluded) or 2 (visible)")
    return kp


def parse_keypoints_json(text: str, width: int, height: int, name: str = "keypoints JSON") -> np.ndarray:
    """``read_keypoints_json`` as the model's (17, 3) [x/W, y/H, mask] of a W x H image;
    mask = v > 0, and x = y = 0 where v = 0, as in training."""
    kp = read_keypoints_json(text, name)
    present = kp[:, 2] > 0
    out = np.zeros((17, 3), np.float32)
    out[:, 0] = np.where(present, kp[:, 0] / width, 0.0)
    out[:, 1] = np.where(present, kp[:, 1] / height, 0.0)
    out[:, 2] = present
    return out


# ------------------------------------------------------------------ people in a picture

@dataclass
class FoundPerson:
    keypoints: np.ndarray        # (17, 3) COCO x, y in the picture's pixels, visibility 0/1/2
    box: np.ndarray              # (4,) xyxy around the 33 landmarks
    score: float                 # BlazePose's pose presence
    detection_score: float = float("nan")   # the detector's score of its detection
    view: str = "as is"          # how it was found (core.estimator.still: "weak detection", "mirror", ...)


def find_people(image: Image.Image, estimator: BlazePose, *, max_people: int = 4) -> list[FoundPerson]:
    """The people BlazePose finds in a still picture, largest first
    (``core.estimator.still.estimate_still``: weaker detections the landmark model
    confirms, the mirror, padded and cropped views), its keypoints mapped to COCO-17
    (``core.estimator.blazepose.coco17_from_blazepose``)."""
    people = estimate_still(estimator, np.asarray(image.convert("RGB")), max_people=max_people)
    return [FoundPerson(coco17_from_blazepose(p.landmarks, p.visibility).astype(np.float64),
                        np.asarray(p.box, np.float64), float(p.score), float(p.detection_score), p.view)
            for p in people]


# A box around a body's joints is tighter than around the body itself (the head's top,
# hands and feet reach past them): widened by this share of its longer side on each
# side, it approximates the person box the training crops are cut around.
KEYPOINT_BOX_MARGIN = 0.1


def person_box(keypoints: np.ndarray) -> tuple[float, float, float, float] | None:
    """COCO xywh box around the visible keypoints (17, 3), widened (``KEYPOINT_BOX_MARGIN``);
    None with fewer than two visible keypoints."""
    kp = np.asarray(keypoints, np.float64)
    vis = kp[:, 2] > 0
    if vis.sum() < 2:
        return None
    lo, hi = kp[vis, :2].min(0), kp[vis, :2].max(0)
    pad = KEYPOINT_BOX_MARGIN * float(max(hi - lo))
    lo, hi = lo - pad, hi + pad
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def upload_input(data: bytes, *, name: str, image_size: int, keypoints_json: str | None = None,
                 keypoints: np.ndarray | None = None, margin: float = DEFAULT_MARGIN,
                 max_pixels: int | None = None) -> SaliencyInput:
    """An uploaded (or camera) picture as model input: decoded by ``open_image``
    (grayscale, RGBA, CMYK, 16-bit, EXIF rotation handled; corrupt, non-image or
    decompression-bomb files raise DataError).

    With keypoints (17 [x, y, v] in the upright picture's pixels: ``keypoints``, e.g.
    BlazePose's, or ``keypoints_json``), the picture is cropped like a training sample:
    the square around the person (``person_box``) with the run's ``margin``, the keypoints
    as fractions of the crop. Without (an image-only preset, or nobody found), the whole
    picture is stretched to the model's size and every keypoint is missing."""
    kw = {} if max_pixels is None else {"max_pixels": max_pixels}
    img = open_image(data, name=name, **kw)
    if keypoints_json is not None:
        keypoints = read_keypoints_json(keypoints_json)
    box = person_box(keypoints) if keypoints is not None else None
    kpt = None
    if box is not None:
        square = crop_box(box, img.size, margin)
        kpt = torch.from_numpy(model_input(keypoints_in_box(keypoints, square)))
        img = crop_padded(img, square)
    elif keypoints is not None:                  # asked for keypoints, none usable: all missing
        kpt = torch.zeros(17, 3)
    image = image_to_tensor(img, image_size)
    return SaliencyInput(image=image, keypoints=kpt, display=tensor_to_image(image), label=None, name=name)
