"""The data ``python -m core pretrain`` trains on: PoseLab renders cut exactly like the
classifier's crops, with label-free pose targets (and the pose class, for the class-label
tasks only).

The scenes' people take their poses from one *family* of classes (``DataConfig.classes``):
``pretrain``, the pretraining family of ``core.synthetic.pretrain_poses`` (disjoint from the
demo's fifteen: no demo, test or default dataset contains it), or ``demo``, the fifteen
exercise classes themselves (how the backbone before the current one was made; its
classifiers then had the answer built in). docs/BACKBONE.md says why.

One sample per annotated person of a rendered scene (the people the synthetic writer
annotates: at least one visible pixel), cropped as the classifier's image cache does
(``crop_box`` square with a 15 % margin, ImageNet-mean padding, PIL bilinear resize to
``image_size``), kept as uint8, with the person's silhouette as a soft mask.

Targets, per person, for the ``J = len(BODY_JOINTS)`` (27) joints:

* ``cam3d``   (J, 3) joint positions in the camera frame (x right, y down, z forward),
              relative to the pelvis, divided by the body's standing height;
* ``canon3d`` (J, 3) the same in the gravity-aligned frame turned by the person's heading
              (the body faces +z, its left is +x): a pose that does not depend on the view;
* ``kp2d``    (J, 2) projected joints as fractions of the crop's side (what the
              classifier's keypoint input uses); ``vis`` (J,) 0 outside the image, 1
              occluded, 2 visible (the renderer's rule); ``label`` the pose class index.

Scene i of a shard draws everything from ``default_rng([seed, 0, i])``, as the synthetic
image writer's train split does, so a shard is a pure function of its settings and can be
rendered in any order and any number of processes. The default seed 1_000_003 is used by
no demo, test or default dataset (they use 0 and small integers).

On disk, ``<work>/shard-<first>-<n>/``: ``crops.npy`` (N, S, S, 3) uint8, ``masks.npy``
(N, S, S) uint8, ``targets.npz``, and ``meta.json`` written last (a shard without it is
unfinished and rendered again).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from core.classification.crops import DEFAULT_MARGIN, crop_box, crop_padded
from core.images import IMAGENET_MEAN, IMAGENET_STD
from core.io import write_json
from core.keypoints import BODY_JOINTS, flip_permutation
from core.synthetic import body as B
from core.synthetic.poses import CLASS_NAMES
from core.synthetic.pretrain_poses import PRETRAIN_CLASS_NAMES
from core.synthetic.render import render_scene
from core.synthetic.scene import sample_scene

PRETRAIN_SEED = 1_000_003
FAMILIES: dict[str, tuple[str, ...]] = {"pretrain": PRETRAIN_CLASS_NAMES, "demo": CLASS_NAMES}
J = len(BODY_JOINTS)
FLIP = torch.as_tensor(flip_permutation(BODY_JOINTS))
TARGETS = ("cam3d", "canon3d", "kp2d", "vis", "label")
SHARD_SCENES = 4000            # scenes per shard: the unit a killed render resumes by
_PELVIS = B.JOINT_INDEX["pelvis"]
_MEAN_255 = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255   # crops stay in 0..255 until normalised
_STD_255 = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255


@dataclass(frozen=True)
class DataConfig:
    scenes: int = 48_000         # rendered scenes (about 1.5 people each)
    seed: int = PRETRAIN_SEED    # used by no demo, test or default dataset
    size: int = 192              # scene side in pixels (the demo's)
    people_max: int = 2          # people per scene (the demo's)
    image_size: int = 112        # crop side fed to ResNet-50 (the demo's)
    margin: float = DEFAULT_MARGIN
    classes: str = "pretrain"    # pose-class family of the scenes: "pretrain" or "demo" (FAMILIES)

    @property
    def class_names(self) -> tuple[str, ...]:
        return FAMILIES[self.classes]


def person_targets(person, rendered, camera, box, class_names: tuple[str, ...]) -> dict:
    """Label-free targets of one person (module docstring), and its class index."""
    joints = person.joints[B.BODY_FROM_ALL]                          # (J, 3) world, metres
    pelvis = person.joints[_PELVIS]
    h = float(person.shape.height)
    cam = (joints - pelvis) @ camera.rotation.T / h                  # camera frame, root-relative
    canon = (joints - pelvis) @ B.rotation_y(person.heading) / h     # R_y(heading)^T (X - p), row form
    x0, y0, x1, _ = box
    side = float(x1 - x0)
    kp = rendered.keypoints                                          # (J, 3) u, v, vis
    vis = kp[:, 2].astype(np.int64)
    kp2d = np.where(vis[:, None] > 0, np.stack([(kp[:, 0] - x0) / side, (kp[:, 1] - y0) / side], 1), 0.0)
    return {"cam3d": cam.astype(np.float32), "canon3d": canon.astype(np.float32),
            "kp2d": np.clip(kp2d, -1, 2).astype(np.float32), "vis": vis.astype(np.int8),
            "label": np.int16(class_names.index(person.class_name))}


def render_samples(cfg: DataConfig, index: int) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """[(crop (S, S, 3) uint8, mask (S, S) uint8, targets)] of one scene."""
    rng = np.random.default_rng([cfg.seed, 0, index])
    scene = sample_scene(rng, size=cfg.size, people_max=cfg.people_max, classes=cfg.class_names)
    result = render_scene(scene, supersample=2, rng=rng)
    out = []
    for person, pr in zip(scene.people, result.people):
        if not pr.mask.any() or pr.bbox[2] < 1 or pr.bbox[3] < 1:   # as the image writer annotates
            continue
        bbox = tuple(round(v, 2) for v in pr.bbox)                    # as the JSON stores it
        box = crop_box(bbox, result.image.size, cfg.margin)
        crop = crop_padded(result.image, box)
        mask = Image.fromarray(pr.mask.astype(np.uint8) * 255).crop(box)   # zero outside the image
        s = cfg.image_size
        if crop.size != (s, s):                                       # as the image cache resizes
            crop = crop.resize((s, s), Image.Resampling.BILINEAR, reducing_gap=None)
            mask = mask.resize((s, s), Image.Resampling.BILINEAR, reducing_gap=None)
        out.append((np.asarray(crop, np.uint8), np.asarray(mask, np.uint8),
                    person_targets(person, pr, scene.camera, box, cfg.class_names)))
    return out


def _render_shard(task: tuple) -> str:
    """Render scenes ``first .. first + n - 1`` into their shard folder (temp name, renamed)."""
    cfg, first, n, folder = task
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cap = n * cfg.people_max
    s = cfg.image_size
    crops = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8, shape=(cap, s, s, 3))
    masks = np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(cap, s, s))
    tg: dict[str, list] = {k: [] for k in TARGETS}
    scene_of, rows, t0 = [], 0, time.perf_counter()
    for i in range(first, first + n):
        for crop, mask, t in render_samples(cfg, i):
            crops[rows], masks[rows] = crop, mask
            for k in TARGETS:
                tg[k].append(t[k])
            scene_of.append(i)
            rows += 1
    crops.flush()
    masks.flush()
    del crops, masks
    for name in ("crops", "masks"):                                   # keep the rows written
        full = np.load(tmp / f"{name}.npy", mmap_mode="r")
        np.save(tmp / f"{name}.part.npy", full[:rows])
        del full
        (tmp / f"{name}.part.npy").replace(tmp / f"{name}.npy")
    np.savez(tmp / "targets.npz", scene=np.asarray(scene_of, np.int32), **{k: np.stack(v) for k, v in tg.items()})
    write_json(tmp / "meta.json", {"first": first, "scenes": n, "samples": rows,
                                   "seconds": round(time.perf_counter() - t0, 1), "config": cfg.__dict__})
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return str(folder)


def render_data(cfg: DataConfig, work: Path, *, workers: int | None = None, progress: bool = True) -> list[Path]:
    """Every shard of ``cfg`` under ``work`` (rendered where missing; one process per CPU)."""
    if cfg.classes not in FAMILIES:
        raise ValueError(f"unknown pose-class family {cfg.classes!r}; choose from {', '.join(FAMILIES)}")
    family = "" if cfg.classes == "demo" else f"-{cfg.classes}"      # the demo family's shards kept their names
    shards = []
    for first in range(0, cfg.scenes, SHARD_SCENES):
        n = min(SHARD_SCENES, cfg.scenes - first)
        shards.append((first, n, Path(work) / f"shard-{cfg.seed}-{cfg.size}-{cfg.people_max}-{cfg.image_size}"
                                              f"{family}-{first:07d}-{n}"))
    todo = [(cfg, first, n, str(folder)) for first, n, folder in shards if not (folder / "meta.json").is_file()]
    if todo:
        workers = workers or min(len(todo), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        with tqdm(total=len(todo), desc="pretraining renders", unit="shard", disable=not progress) as bar:
            if workers > 1:
                with multiprocessing.get_context("fork").Pool(workers) as pool:
                    for _ in pool.imap_unordered(_render_shard, todo):
                        bar.update(1)
            else:
                for t in todo:
                    _render_shard(t)
                    bar.update(1)
    return [folder for _, _, folder in shards]


class Crops:
    """The rendered shards: uint8 crops and masks (memory-mapped) and their targets.
    Validation is the last ``val_fraction`` of the scenes (scenes are i.i.d.)."""

    def __init__(self, shards: list[Path], val_fraction: float = 0.02,
                 memory_format: torch.memory_format = torch.channels_last):
        self.memory_format = memory_format          # of the batches (the network's: engine.memory_format)
        self.crops = [np.load(s / "crops.npy", mmap_mode="r") for s in shards]
        self.masks = [np.load(s / "masks.npy", mmap_mode="r") for s in shards]
        tgs = [np.load(s / "targets.npz") for s in shards]
        self.t = {k: torch.from_numpy(np.concatenate([t[k] for t in tgs]).astype(
            np.int64 if k in ("vis", "label") else np.float32)) for k in TARGETS}
        scene = np.concatenate([t["scene"] for t in tgs])
        sizes = [len(c) for c in self.crops]
        self.offsets = np.cumsum([0] + sizes)
        self.shard_of = np.repeat(np.arange(len(sizes)), sizes)
        cut = np.quantile(scene, 1 - val_fraction) if val_fraction > 0 else scene.max() + 1
        self.train_rows = np.flatnonzero(scene < cut)
        self.val_rows = np.flatnonzero(scene >= cut)

    def __len__(self) -> int:
        return len(self.shard_of)

    def _gather(self, arrays, rows: np.ndarray, shape) -> np.ndarray:
        out = np.empty((len(rows),) + shape, np.uint8)
        for s in np.unique(self.shard_of[rows]):
            sel = np.flatnonzero(self.shard_of[rows] == s)
            out[sel] = arrays[s][rows[sel] - self.offsets[s]]
        return out

    def batch(self, rows: np.ndarray, *, flip: torch.Tensor | None = None, swap: float = 0.0,
              noise: float = 0.0, gen: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """(images (B, 3, S, S) ImageNet-normalised, channels-last; targets) for ``rows``.
        ``flip`` (B,) mirrors those samples, pixels and targets (left and right swapped);
        ``swap`` is the share of samples pasted with their soft mask onto another sample's
        background (the person, not the room, is what the targets are about); ``noise``
        adds Gaussian pixel noise to every sample, its std drawn per sample uniformly in
        [0, noise] of the 0-255 range, then clipped to that range."""
        rows = np.asarray(rows)
        s = self.crops[0].shape[1]
        x = torch.from_numpy(self._gather(self.crops, rows, (s, s, 3))).permute(0, 3, 1, 2).float()
        tg = {k: v[rows].clone() for k, v in self.t.items()}
        if swap > 0:
            ok = torch.rand(len(rows), generator=gen) < swap
            if ok.any():
                m = torch.from_numpy(self._gather(self.masks, rows, (s, s))).float()[:, None] / 255
                donor = torch.randperm(len(rows), generator=gen)
                room = remove_person(x[donor], m[donor])
                x = torch.where(ok.view(-1, 1, 1, 1), m * x + (1 - m) * room, x)
        if flip is not None and flip.any():
            x[flip] = x[flip].flip(-1)
            for k in ("cam3d", "canon3d", "kp2d", "vis"):
                tg[k][flip] = tg[k][flip][:, FLIP]
            for k in ("cam3d", "canon3d"):                              # x -> -x in both frames
                tg[k][flip, :, 0] *= -1
            kp = tg["kp2d"]
            kp[flip, :, 0] = torch.where(tg["vis"][flip] > 0, 1.0 - kp[flip, :, 0], 0.0)
        if noise > 0:
            sigma = torch.rand(len(rows), 1, 1, 1, generator=gen) * (noise * 255)
            x = (x + sigma * torch.randn(x.shape, generator=gen)).clamp_(0, 255)
        x = ((x - _MEAN_255) / _STD_255).contiguous(memory_format=self.memory_format)
        return x, tg


def remove_person(x: torch.Tensor, mask: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """The room behind the person: ``x`` (B, 3, S, S) with the pixels under ``mask``
    (B, 1, S, S) in [0, 1] filled from the surrounding background (normalised convolution
    on a ``cell``-times coarser grid). A donor background keeps no second body for the
    pasted person's targets to be confused with, nor for a saliency map to land on."""
    keep = 1 - mask
    s = x.shape[-1]
    num = F.avg_pool2d(x * keep, cell, ceil_mode=True)
    den = F.avg_pool2d(keep, cell, ceil_mode=True)
    for _ in range(3):                            # spread into cells the person covers whole
        num = torch.where(den > 1e-3, num, F.avg_pool2d(num, 3, 1, 1, count_include_pad=False))
        den = torch.where(den > 1e-3, den, F.avg_pool2d(den, 3, 1, 1, count_include_pad=False))
    mean = (x * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp_min(1)
    fill = torch.where(den > 1e-3, num / den.clamp_min(1e-3), mean)
    fill = F.interpolate(fill, size=(s, s), mode="bilinear", align_corners=False)
    return x * keep + fill * mask


def data_summary(shards: list[Path]) -> dict:
    metas = [json.loads((s / "meta.json").read_text()) for s in shards]
    return {"scenes": sum(m["scenes"] for m in metas), "samples": sum(m["samples"] for m in metas),
            "render_seconds": round(sum(m["seconds"] for m in metas), 1)}
