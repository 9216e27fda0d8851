"""The preprocessed image cache: every sample's crop decoded ONCE into a memory-mapped
uint8 array at the model's input size.

Why: decoding and resizing render-sized PNG/JPEG files is the slowest step of the whole
data path (tens of images/s per core), while a uint8 (N, S, S, 3) array read through the
page cache feeds a GPU at tens of thousands of images/s. So the decode runs once, on all
cores (a fork pool, chunks of consecutive samples so a multi-person scene is decoded once
per chunk), and feature extraction, training and evaluation read the array afterwards.

Pixels are exactly PoseDataset's: the same ``load_crop`` (crop box, padding colour) and
the same PIL bilinear resize, kept as uint8 -- which is what PIL produces anyway, so the
normalised float tensors equal PoseDataset's up to float rounding of the normalisation.

On disk, under ``<runs_dir>/_cache/images/``::

    <fingerprint>-<size>px-m<margin>.npy    (N, S, S, 3) uint8, numpy format (np.load(mmap_mode="r"))
    <fingerprint>-<size>px-m<margin>.json   {"sample_ids": [...], "image_size", "margin", "fingerprint", "shape"}

The .npy is written under a temp name and renamed, then the JSON; a cache is valid only
when both exist and agree, so a killed build is a miss, never a half-read array.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from core.errors import DataError
from core.io import write_json

CACHE_DIR = "_cache/images"
CHUNK = 64                 # samples per pool task: big enough to amortise IPC, small for balance


def cache_stem(fingerprint: str, image_size: int, margin: float) -> str:
    # Has dots ("m0.15"): add extensions with f-strings, never Path.with_suffix.
    return f"{fingerprint}-{int(image_size)}px-m{margin:g}"


def image_cache_dir(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / CACHE_DIR


# ----------------------------------------------------------------------------- decoding

def decode_crop(sample, image_size: int, margin: float, scene=None) -> np.ndarray:
    """One sample as PoseDataset sees it before normalisation: (S, S, 3) uint8."""
    from PIL import Image

    from core.data.infiniteform import load_crop
    crop = load_crop(sample, margin, image=scene)
    if crop.size != (image_size, image_size):      # same call as images.image_to_tensor
        crop = crop.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(crop, dtype=np.uint8)


# Fork-inherited by pool workers: the samples and the output file (no pickling of either).
_JOB: dict = {}


def _decode_chunk(bounds: tuple[int, int]) -> tuple[int, str | None]:
    """Worker: decode samples [lo, hi) straight into the memory-mapped output file."""
    from core.data.images import open_image
    lo, hi = bounds
    samples, size, margin = _JOB["samples"], _JOB["image_size"], _JOB["margin"]
    out = np.load(_JOB["tmp"], mmap_mode="r+")
    last_path, scene = None, None
    try:
        for i in range(lo, hi):
            s = samples[i]
            if s.image_path != last_path:           # people of one scene are neighbours
                scene, last_path = open_image(s.image_path), s.image_path
            out[i] = decode_crop(s, size, margin, scene)
        # No flush here: msync per chunk would write the file back many times; the pages
        # are shared through the page cache and the parent fsyncs once before the rename.
    except DataError as e:                          # DataError does not pickle: send its text
        return hi - lo, str(e)
    finally:
        del out
    return hi - lo, None


def decode_rate(samples: Sequence, *, image_size: int, margin: float = 0.15, n: int | None = None) -> float:
    """One core's decode + crop + resize rate, samples/s, over the first ``n`` samples
    (what a cache build on k cores should approach k times)."""
    from core.data.images import open_image
    chosen = list(samples[: n or len(samples)])
    t0 = time.perf_counter()
    last_path, scene = None, None
    for s in chosen:
        if s.image_path != last_path:
            scene, last_path = open_image(s.image_path), s.image_path
        decode_crop(s, image_size, margin, scene)
    return len(chosen) / max(time.perf_counter() - t0, 1e-9)


# ----------------------------------------------------------------------------- the cache

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageCache:
    """A built cache: ``images`` is the read-only memmap (N, S, S, 3) uint8."""
    path: Path                                  # the .npy file
    sample_ids: list[str]
    image_size: int
    margin: float
    fingerprint: str
    images: np.ndarray = field(repr=False)
    _row: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._row = {k: i for i, k in enumerate(self.sample_ids)}

    def __len__(self) -> int:
        return len(self.sample_ids)

    @classmethod
    def load(cls, cache_dir: str | Path, *, fingerprint: str, image_size: int, margin: float
             ) -> "ImageCache | None":
        """The cache of this key, or None when it is missing or damaged (then rebuild)."""
        stem = Path(cache_dir) / cache_stem(fingerprint, image_size, margin)
        npy, idx = stem.parent / f"{stem.name}.npy", stem.parent / f"{stem.name}.json"
        if not (npy.is_file() and idx.is_file()):
            return None
        try:
            meta = json.loads(idx.read_text())
            arr = np.load(npy, mmap_mode="r")
        except (OSError, ValueError):
            return None
        ids = meta.get("sample_ids")
        if (not isinstance(ids, list) or arr.dtype != np.uint8
                or arr.shape != (len(ids), image_size, image_size, 3)
                or meta.get("fingerprint") != fingerprint):
            return None
        return cls(npy, [str(i) for i in ids], int(image_size), float(margin), fingerprint, arr)

    def rows(self, samples: Sequence) -> np.ndarray:
        """Row of each sample (by ``sample_id``); KeyError names a sample not cached."""
        return np.array([self._row[str(s.sample_id)] for s in samples], dtype=np.int64)

    def covers(self, samples: Sequence) -> bool:
        return all(str(s.sample_id) in self._row for s in samples)

    def uint8_batch(self, rows: np.ndarray) -> torch.Tensor:
        """(B, S, S, 3) uint8 CPU tensor of these rows (sorted reads are sequential on disk)."""
        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(rows)]))

    def batches(self, rows: Sequence[int], batch_size: int, device: torch.device | str,
                *, channels_last: bool | None = None) -> Iterator[torch.Tensor]:
        """ImageNet-normalised (B, 3, S, S) float32 batches of ``rows``, in order.

        The fast path on a GPU: uint8 crosses the bus (4x less than float32, pinned for an
        asynchronous copy) and is converted and normalised on the device.
        """
        device = torch.device(device)
        rows = np.asarray(rows, dtype=np.int64)
        cl = device.type == "cuda" if channels_last is None else channels_last
        for start in range(0, len(rows), batch_size):
            u8 = self.uint8_batch(rows[start:start + batch_size])               # (B, S, S, 3)
            if device.type == "cuda":
                u8 = u8.pin_memory()
            yield normalize_uint8(u8.to(device, non_blocking=True), channels_last=cl)

    def dataset(self, samples: Sequence) -> "CachedPoseDataset":
        return CachedPoseDataset(self, samples)


def normalize_uint8(u8: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """(B, S, S, 3) or (S, S, 3) uint8 -> (B, 3, S, S) / (3, S, S) float32, ImageNet-normalised,
    in the same order of operations as ``images.image_to_tensor`` (x / 255, - mean, / std)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=u8.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=u8.device)
    x = (u8.float() / 255.0 - mean) / std                                       # (..., S, S, 3)
    x = x.movedim(-1, -3)                                                       # (..., 3, S, S)
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)   # already NHWC in memory: free
    return x.contiguous()


class CachedPoseDataset(torch.utils.data.Dataset):
    """PoseDataset's items (eval mode, no augmentation) read from an ImageCache.

    ``batches(batch_size, device)`` yields whole collated batches with the images
    normalised on ``device`` -- what feature extraction uses instead of a DataLoader.
    """

    def __init__(self, cache: ImageCache, samples: Sequence):
        from core.data.infiniteform import model_keypoints
        self.cache = cache
        self.samples = list(samples)
        self.rows = cache.rows(self.samples)
        self.labels = torch.tensor([s.label for s in self.samples], dtype=torch.int64)
        kps = [model_keypoints(s, cache.margin) for s in self.samples]
        self.keypoints = torch.from_numpy(np.stack(kps)) if kps else torch.zeros(0, 17, 3)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        u8 = torch.from_numpy(np.array(self.cache.images[self.rows[index]]))   # (S, S, 3)
        return {"image": normalize_uint8(u8), "label": self.labels[index],
                "keypoints": self.keypoints[index], "index": index}

    def batches(self, batch_size: int, device: torch.device | str) -> Iterator[dict]:
        for start, images in zip(range(0, len(self), batch_size),
                                 self.cache.batches(self.rows, batch_size, device)):
            end = start + images.shape[0]
            yield {"image": images, "label": self.labels[start:end],
                   "keypoints": self.keypoints[start:end], "index": torch.arange(start, end)}


# ----------------------------------------------------------------------------- building

def build_image_cache(samples: Sequence, *, fingerprint: str, image_size: int, margin: float,
                      cache_dir: str | Path, workers: int | None = None, progress: bool = True,
                      stats: dict | None = None) -> ImageCache:
    """The cache of (fingerprint, image_size, margin) for ``samples``: loaded when it
    exists and covers them, else built (all of ``samples``, in their order).

    ``workers``: decode processes (default: every core this process may use). ``stats``
    (a dict) receives {"built": bool, "seconds", "images_per_s", "workers"}.
    Raises DataError naming the first image that cannot be decoded; nothing is left behind.
    """
    cache_dir = Path(cache_dir)
    samples = list(samples)
    found = ImageCache.load(cache_dir, fingerprint=fingerprint, image_size=image_size, margin=margin)
    if found is not None and found.covers(samples):
        if stats is not None:
            stats.update(built=False, seconds=0.0, images_per_s=float("nan"), workers=0)
        return found
    ids = [str(s.sample_id) for s in samples]
    if len(set(ids)) != len(ids):
        raise DataError(None, "image cache: duplicate sample ids in the samples given")
    stem = cache_dir / cache_stem(fingerprint, image_size, margin)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{stem.name}.{os.getpid()}.tmp.npy"
    n = len(samples)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # Chunks: at most CHUNK, and at least ~4 per worker so a small set still uses every core.
    chunk = max(1, min(CHUNK, -(-n // (4 * max(workers, 1)))))
    workers = max(1, min(workers, -(-n // chunk)))
    t0 = time.perf_counter()
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, image_size, image_size, 3))
    del arr                                          # workers reopen it; header is written
    try:
        _JOB.update(samples=samples, image_size=image_size, margin=margin, tmp=str(tmp))
        chunks = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=f"image cache ({workers} proc)", disable=not progress, leave=False)
        if workers == 1:
            results = map(_decode_chunk, chunks)
            pool = None
        else:
            pool = mp.get_context("fork").Pool(workers)
            results = pool.imap_unordered(_decode_chunk, chunks)
        try:
            for count, error in results:
                if error is not None:
                    raise DataError(None, f"image cache: {error}")
                bar.update(count)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, stem.parent / f"{stem.name}.npy")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _JOB.clear()
    write_json(stem.parent / f"{stem.name}.json", {"sample_ids": ids, "image_size": int(image_size),
                                           "margin": float(margin), "fingerprint": fingerprint,
                                           "shape": [n, image_size, image_size, 3]})
    seconds = time.perf_counter() - t0
    if stats is not None:
        stats.update(built=True, seconds=seconds, images_per_s=n / max(seconds, 1e-9), workers=workers)
    out = ImageCache.load(cache_dir, fingerprint=fingerprint, image_size=image_size, margin=margin)
    assert out is not None
    return out


def cached_pose_dataset(samples: Sequence, *, all_samples: Sequence, fingerprint: str, image_size: int,
                        margin: float, runs_dir: str | Path, progress: bool = True) -> CachedPoseDataset:
    """``samples`` as a CachedPoseDataset, building the cache of ``all_samples`` (the whole
    dataset, so one build serves every split) when it is missing. Under torchrun rank 0
    builds it with every core while the other ranks wait, then they all read it."""
    from core import distributed as D
    with D.main_process_first():
        cache = build_image_cache(all_samples, fingerprint=fingerprint, image_size=image_size,
                                  margin=margin, cache_dir=image_cache_dir(runs_dir),
                                  progress=progress and D.is_main_process())
    return cache.dataset(samples)
