"""The feature cache: the classifier's main speed lever (docs/ARCHITECTURE.md, "Caches").

Every paper preset trains only what sits after ResNet-50's pooled 2048-d features. With
the backbone frozen, in eval mode, and no augmentation, those features are a fixed
function of the image, so they are computed once per sample and every epoch of every
preset trains ``forward_head`` on them -- the same maths as running the frozen backbone
each time, minus ~99% of the compute.

Cache file: ``<runs_dir>/_cache/features/<data fingerprint>-<backbone id>-<image size>.safetensors``
holding, row-aligned, ``features`` (M, 2048) float32, ``keypoints`` (M, 17, 3) and
``labels`` (M,), with the sample ids in the metadata. Rows are looked up by sample id,
so one file serves every split, seed and preset of that dataset + backbone; samples not
in it yet are computed and added.

Several processes may train on one dataset at once (two grids, a grid and the dashboard's
demo). Adding rows therefore takes an exclusive lock on ``<file>.lock``, reads the file
again, appends only the rows it still lacks and replaces the file atomically: no process
ever drops rows another one wrote, and readers never see a half-written file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from core import distributed as D
from core import engine
from core.io import file_lock
from core.runs import save_weights

CACHE_DIR = "_cache/features"


@dataclass
class FeatureSet(Dataset):
    """Cached features as a Dataset: items look like PoseDataset's with ``features``
    in place of ``image``, so the same training loop serves both."""
    features: torch.Tensor    # (N, 2048) float32
    keypoints: torch.Tensor   # (N, 17, 3) float32: x/W, y/H in the crop, visible mask
    labels: torch.Tensor      # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.features[i], "keypoints": self.keypoints[i],
                "label": self.labels[i], "index": i}

    def get_batch(self, indices: np.ndarray, device: torch.device | str = "cpu") -> dict:
        """Rows ``indices`` as one batch (the trainer's ``Batches`` gathers with it)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return {"features": self.features[idx], "keypoints": self.keypoints[idx],
                "label": self.labels[idx], "index": idx}

    def with_keypoints(self, keypoints: torch.Tensor) -> "FeatureSet":
        """The same rows with other keypoints (N, 17, 3) (estimated instead of annotated)."""
        return FeatureSet(self.features, keypoints.float(), self.labels)

    def rows(self, start: int, stop: int) -> "FeatureSet":
        return FeatureSet(self.features[start:stop], self.keypoints[start:stop], self.labels[start:stop])

    def cat(self, other: "FeatureSet") -> "FeatureSet":
        return FeatureSet(torch.cat([self.features, other.features]),
                          torch.cat([self.keypoints, other.keypoints]), torch.cat([self.labels, other.labels]))


def feature_cache_path(runs_dir: str | Path, fingerprint: str, backbone_id: str, image_size: int,
                       decoder: str = "pil", device: torch.device | str = "cpu") -> Path:
    """One file per (data, backbone, crop size, decoder, precision): features computed
    under CUDA's bf16 autocast differ from float32 CPU ones, so they never share a file
    (a cache extended on the other device would mix precisions row by row)."""
    tag = "" if decoder == "pil" else f"-{decoder}"       # see core.classification.image_cache.cache_stem
    if torch.device(device).type == "cuda":
        tag += "-bf16"
    return Path(runs_dir) / CACHE_DIR / f"{fingerprint}-{backbone_id}-{image_size}{tag}.safetensors"


def sample_key(sample) -> str:
    """A sample's stable id: the reader's ``sample_id`` (image id + person index)."""
    return str(sample.sample_id)


@torch.inference_mode()
def compute_features(model, dataset: Dataset, *, device: torch.device, batch_size: int = 64,
                     num_workers: int = 0, progress: bool = True, desc: str = "features",
                     on_progress: Callable[[float, str], None] | None = None) -> FeatureSet:
    """Run ``model.forward_features`` over ``dataset`` (PoseDataset items) once, in eval mode.
    ``on_progress(fraction, message)`` follows the pass (the demo's progress bar)."""
    was_training = model.training
    model.eval()
    if hasattr(dataset, "batches"):
        # core.classification.image_cache.CachedPoseDataset: uint8 crops normalised on the device (fast path)
        loader = dataset.batches(batch_size, device)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=device.type == "cuda")
    feats, kps, labels = [], [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False,
                      total=(len(dataset) + batch_size - 1) // batch_size):
        # the device's faster layout (engine.memory_format); the maths is the same
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=engine.memory_format(device))
        with engine.autocast(device):
            f = model.forward_features(images)                          # (B, 2048)
        feats.append(f.float())      # stays on the device: a .cpu() per batch would stall it
        kps.append(batch["keypoints"].float())
        labels.append(batch["label"].long())
        if on_progress is not None:
            done = sum(len(x) for x in labels)
            on_progress(done / len(dataset), f"features {done}/{len(dataset)}")
    model.train(was_training)
    if not feats:
        return FeatureSet(torch.zeros(0, 2048), torch.zeros(0, 17, 3), torch.zeros(0, dtype=torch.long))
    return FeatureSet(torch.cat(feats).cpu(), torch.cat(kps), torch.cat(labels))   # one copy


def cached_features(model, samples: Sequence, make_dataset: Callable[[Sequence], Dataset], *,
                    path: Path, device: torch.device, batch_size: int = 64, num_workers: int = 0,
                    progress: bool = True, on_progress: Callable[[float, str], None] | None = None,
                    ) -> FeatureSet:
    """FeatureSet for ``samples`` (in their order), computing only the ones not cached yet.

    ``make_dataset(samples)`` builds the eval-mode PoseDataset (no augmentation) for the
    samples to compute. ``model`` must be the backbone these features belong to (the
    cache path carries its id).
    """
    keys = [sample_key(s) for s in samples]
    cached_keys, cached = _read(path)
    row = {k: i for i, k in enumerate(cached_keys)}
    todo = [s for s, k in zip(samples, keys) if k not in row]
    if todo:
        # Under torchrun each rank computes its contiguous shard and the shards are gathered
        # in rank order, so every rank holds the full set (one process: the whole list).
        lo, hi = D.shard_range(len(todo))
        part = compute_features(model, make_dataset(todo[lo:hi]), device=device, batch_size=batch_size,
                                num_workers=num_workers, progress=progress,
                                desc=f"features ({hi - lo} new)", on_progress=on_progress)
        new = FeatureSet(*(D.all_gather_cat(t) for t in (part.features, part.keypoints, part.labels)))
        if D.is_main_process():
            cached_keys, cached = _add(path, [sample_key(s) for s in todo], new)
        else:
            cached_keys, cached = cached_keys + [sample_key(s) for s in todo], (
                new if cached is None else cached.cat(new))
        row = {k: i for i, k in enumerate(cached_keys)}
    idx = torch.tensor([row[k] for k in keys], dtype=torch.long)
    return FeatureSet(cached.features[idx], cached.keypoints[idx], cached.labels[idx])


def _add(path: Path, keys: list[str], new: FeatureSet) -> tuple[list[str], FeatureSet]:
    """Add rows to the cache file under the lock; returns every row the file now holds
    (including rows other processes added meanwhile)."""
    with file_lock(path):
        have_keys, have = _read(path)
        seen = set(have_keys)
        keep = [i for i, k in enumerate(keys) if k not in seen]
        if keep:
            idx = torch.tensor(keep, dtype=torch.long)
            fresh = FeatureSet(new.features[idx], new.keypoints[idx], new.labels[idx])
            have_keys = have_keys + [keys[i] for i in keep]
            have = fresh if have is None else have.cat(fresh)
            _write(path, have_keys, have)
    return have_keys, have


def _read(path: Path) -> tuple[list[str], FeatureSet | None]:
    """A cache file, or nothing: an unreadable cache is a miss (it is rebuilt), not an error."""
    if not path.is_file():
        return [], None
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = json.loads(f.metadata()["sample_ids"])
            fs = FeatureSet(f.get_tensor("features"), f.get_tensor("keypoints"), f.get_tensor("labels"))
    except Exception:
        return [], None
    if not (len(keys) == len(fs.features) == len(fs.keypoints) == len(fs.labels)):
        return [], None
    return keys, fs


def _write(path: Path, keys: list[str], fs: FeatureSet) -> None:
    save_weights(path, {"features": fs.features, "keypoints": fs.keypoints, "labels": fs.labels},
                 metadata={"sample_ids": json.dumps(keys)})
