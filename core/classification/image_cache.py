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

import copy
import functools
import json
import multiprocessing as mp
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from tqdm.auto import tqdm

from core import distributed as D
from core.classification.crops import crop_box, load_crop, model_keypoints
from core.errors import DataError
from core.images import IMAGENET_MEAN, IMAGENET_MEAN_RGB8, IMAGENET_STD, open_image
from core.io import write_json
from core.runs import RunInfo

CACHE_DIR = "_cache/images"
CHUNK = 64                 # samples per pool task: big enough to amortise IPC, small for balance


DECODERS = ("pil", "torchvision")


def cache_stem(fingerprint: str, image_size: int, margin: float, decoder: str = "pil") -> str:
    # Has dots ("m0.15"): add extensions with f-strings, never Path.with_suffix.
    # The decoder is part of the key: torchvision's pixels differ from PIL's by a level or two.
    tag = "" if decoder == "pil" else f"-{decoder}"
    return f"{fingerprint}-{int(image_size)}px-m{margin:g}{tag}"


def image_cache_dir(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / CACHE_DIR


# ----------------------------------------------------------------------------- decoding

def decode_crop(sample, image_size: int, margin: float, scene=None) -> np.ndarray:
    """One sample as PoseDataset sees it before normalisation: (S, S, 3) uint8."""

    crop = load_crop(sample, margin, image=scene)
    if crop.size != (image_size, image_size):      # same call as images.image_to_tensor
        crop = crop.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(crop, dtype=np.uint8)


# Fork-inherited by pool workers: the samples and the output file (no pickling of either).
_JOB: dict = {}


def _decode_chunk(bounds: tuple[int, int]) -> tuple[int, str | None]:
    """Worker: decode samples [lo, hi) straight into the memory-mapped output file."""
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
    chosen = list(samples[: n or len(samples)])
    t0 = time.perf_counter()
    last_path, scene = None, None
    for s in chosen:
        if s.image_path != last_path:
            scene, last_path = open_image(s.image_path), s.image_path
        decode_crop(s, image_size, margin, scene)
    return len(chosen) / max(time.perf_counter() - t0, 1e-9)


# ----------------------------------------------------------------------------- torchvision / nvJPEG
# torchvision.io.decode_jpeg decodes a whole list of JPEG files in one call, on the GPU
# (nvJPEG) when device is CUDA: thousands of render-sized images/s against tens per CPU
# core with PIL. Crop, padding and resize then run on the same device. The pixels are
# not bit-equal to PIL's (another IDCT, and torch's antialiased bilinear instead of
# PIL's fixed-point one): within a few levels, ~1 on average (tested on CPU), so these
# caches carry their own key. PNG (InfiniteForm's format) has no GPU decoder: PIL.

JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(3) == JPEG_MAGIC
    except OSError:
        return False


def _decode_jpegs(paths: Sequence[str], device: torch.device) -> list[torch.Tensor]:
    """(3, H, W) uint8 RGB per file (EXIF orientation applied, like ``open_image``), on
    ``device``; DataError names the first file that cannot be decoded."""
    with warnings.catch_warnings():
        # torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they
        # are what the pinned torchvision ships (nvJPEG included) until TorchCodec is pinned.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        return _decode_jpegs_unwarned(paths, device)


def _decode_jpegs_unwarned(paths: Sequence[str], device: torch.device) -> list[torch.Tensor]:
    datas, orientations = [], []
    for p in paths:
        try:
            datas.append(read_file(str(p)))
        except RuntimeError as e:
            raise DataError(p, f"cannot be read ({e})") from None
        orientations.append(exif_orientation(p))
    if device.type == "cuda":
        # nvJPEG writes through its own stream: let queued kernels finish with memory the
        # caching allocator may hand to the decoder (pytorch/vision#9606).
        torch.cuda.current_stream(device).synchronize()

    def one(p, d):
        try:
            return decode_jpeg(d, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as e:
            if device.type != "cpu":   # nvJPEG rejects some files libjpeg reads (CMYK, ...)
                try:
                    return decode_jpeg(d, mode=ImageReadMode.RGB).to(device)
                except RuntimeError:
                    pass
            raise DataError(p, f"JPEG cannot be decoded ({str(e).splitlines()[0]})") from None

    try:
        images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:                          # one bad file fails the batch: one by one
        images = [one(p, d) for p, d in zip(paths, datas)]
    # EXIF orientation by hand: decode_jpeg applies it on the CPU only (not with nvJPEG),
    # so the same code orients on every device (and the CPU tests check the GPU's path)
    return [orient(img, o) for img, o in zip(images, orientations)]


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1-8) of an image file, 1 when absent; header only."""
    try:
        with Image.open(path) as im:
            o = int(im.getexif().get(0x0112, 1))
    except Exception:            # no or broken EXIF: the decoder reports real problems
        return 1
    return o if 1 <= o <= 8 else 1


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) as displayed for EXIF ``orientation`` (what PIL's exif_transpose does)."""
    return {
        1: lambda t: t,
        2: lambda t: t.flip(-1),                                   # mirrored
        3: lambda t: t.flip(-2, -1),                               # rotated 180
        4: lambda t: t.flip(-2),                                   # upside down, mirrored
        5: lambda t: t.transpose(-2, -1),                          # transposed
        6: lambda t: torch.rot90(t, k=-1, dims=(-2, -1)),          # turn clockwise
        7: lambda t: t.transpose(-2, -1).flip(-2, -1),             # transverse
        8: lambda t: torch.rot90(t, k=1, dims=(-2, -1)),           # turn counter-clockwise
    }[orientation](image)


def crop_resize_tensor(image: torch.Tensor, box: tuple[int, int, int, int], image_size: int) -> torch.Tensor:
    """``crop_padded`` + bilinear resize of a (3, H, W) uint8 tensor on its device ->
    (S, S, 3) uint8. The box may run past the borders: padded with the ImageNet mean."""
    x0, y0, x1, y1 = box
    _, h, w = image.shape
    canvas = image.new_empty((3, y1 - y0, x1 - x0))
    for c, v in enumerate(IMAGENET_MEAN_RGB8):     # fill_ with a Python number: no host sync
        canvas[c].fill_(v)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 > ix0 and iy1 > iy0:
        canvas[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[:, iy0:iy1, ix0:ix1]
    if canvas.shape[1:] != (image_size, image_size):
        x = torch.nn.functional.interpolate(canvas[None].float(), size=(image_size, image_size),
                                            mode="bilinear", antialias=True, align_corners=False)
        canvas = x[0].round_().clamp_(0, 255).to(torch.uint8)
    return canvas.permute(1, 2, 0)


def _build_torchvision(samples: Sequence, out: np.ndarray, *, image_size: int, margin: float,
                       device: torch.device, batch: int, bar) -> None:
    """Fill ``out`` (N, S, S, 3) with every sample's crop, decoding ``batch`` scenes per call."""
    rows: dict[str, list[int]] = {}                  # scene -> its samples, first-seen order
    for i, s in enumerate(samples):
        rows.setdefault(str(s.image_path), []).append(i)
    paths = list(rows)
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        images = _decode_jpegs(chunk, device)
        done, crops = [], []
        for path, img in zip(chunk, images):
            for i in rows[path]:
                s = samples[i]
                if (img.shape[2], img.shape[1]) != tuple(s.image_size):
                    raise DataError(path, f"image is {img.shape[2]}x{img.shape[1]} pixels but the "
                                          f"annotation says {s.image_size[0]}x{s.image_size[1]}")
                crops.append(crop_resize_tensor(img, crop_box(s.bbox, s.image_size, margin), image_size))
                done.append(i)
        del images
        if done:       # one device -> host copy per batch, not one (synchronising) per crop
            out[np.asarray(done)] = torch.stack(crops).cpu().numpy()
        bar.update(len(done))


# ----------------------------------------------------------------------------- the cache

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
    def load(cls, cache_dir: str | Path, *, fingerprint: str, image_size: int, margin: float,
             decoder: str = "pil") -> "ImageCache | None":
        """The cache of this key, or None when it is missing or damaged (then rebuild)."""
        stem = Path(cache_dir) / cache_stem(fingerprint, image_size, margin, decoder)
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

    def row_of(self, sample_id) -> int | None:
        """Row of one sample id, or None when it is not in this cache."""
        return self._row.get(str(sample_id))

    def crop(self, sample_id) -> np.ndarray | None:
        """(S, S, 3) uint8 crop of one sample (a copy), or None when not cached."""
        i = self.row_of(sample_id)
        return None if i is None else np.array(self.images[i])

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


@functools.lru_cache(maxsize=16)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: a fresh torch.tensor(..., device=cuda) per batch is a blocking
    # copy that would undo the pinned, non-blocking transfer of the batch
    return (torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device),
            torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device))


def normalize_uint8(u8: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """(B, S, S, 3) or (S, S, 3) uint8 -> (B, 3, S, S) / (3, S, S) float32, ImageNet-normalised,
    in the same order of operations as ``images.image_to_tensor`` (x / 255, - mean, / std)."""
    mean, std = _mean_std(u8.device)
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

    def with_keypoints(self, keypoints: torch.Tensor) -> "CachedPoseDataset":
        """The same crops with other keypoints (N, 17, 3) (estimated instead of annotated)."""
        out = copy.copy(self)
        out.keypoints = keypoints.float()
        return out

    def get_batch(self, indices: np.ndarray, device: torch.device | str) -> dict:
        """Items ``indices`` as one batch: one fancy-indexed read of the memory-mapped crops;
        uint8 crosses to the device (pinned on CUDA) and is normalised there, channels-last.
        Nothing is decoded: that happened once, when the cache was built."""
        device = torch.device(device)
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        u8 = self.cache.uint8_batch(self.rows[idx.numpy()])                  # (B, S, S, 3)
        if device.type == "cuda":
            u8 = u8.pin_memory()
        return {"image": normalize_uint8(u8.to(device, non_blocking=True), channels_last=True),
                "label": self.labels[idx], "keypoints": self.keypoints[idx], "index": idx}




# ----------------------------------------------------------------------------- building

def resolve_decoder(samples: Sequence, decoder: str, device: torch.device | str | None) -> str:
    """"pil", or "torchvision" when asked for (or "auto" on a CUDA device) and every image
    is a JPEG; otherwise says why it falls back to PIL."""
    if decoder not in (*DECODERS, "auto"):
        raise DataError(None, f"unknown image decoder {decoder!r}; choose from auto, {', '.join(DECODERS)}")
    if decoder == "pil":
        return "pil"
    if decoder == "auto" and (device is None or torch.device(device).type != "cuda"):
        return "pil"
    paths = list(dict.fromkeys(str(s.image_path) for s in samples))
    other = [p for p in paths if not is_jpeg(p)]
    if other:
        if decoder == "auto":                # PNG data (InfiniteForm's format): nothing to say
            return "pil"
        print(f"image cache: the torchvision (GPU) decoder reads JPEG only; {len(other)} of {len(paths)} "
              f"images are not (e.g. {other[0]}): decoding with PIL on every core", flush=True)
        return "pil"
    return "torchvision"


def build_image_cache(samples: Sequence, *, fingerprint: str, image_size: int, margin: float,
                      cache_dir: str | Path, workers: int | None = None, progress: bool = True,
                      stats: dict | None = None, decoder: str = "pil",
                      device: torch.device | str | None = None, decode_batch: int = 64) -> ImageCache:
    """The cache of (fingerprint, image_size, margin, decoder) for ``samples``: loaded when
    it exists and covers them, else built (all of ``samples``, in their order).

    ``decoder``: "pil" (default: a fork pool of ``workers`` processes, default every core
    this process may use; pixels exactly PoseDataset's), "torchvision" (JPEG files
    decoded ``decode_batch`` at a time by ``torchvision.io.decode_jpeg`` on ``device``:
    nvJPEG on CUDA), or "auto" (torchvision on CUDA when every file is a JPEG).
    ``stats`` (a dict) receives {"built": bool, "seconds", "images_per_s", "workers", "decoder"}.
    Raises DataError naming the first image that cannot be decoded; nothing is left behind.
    """
    # Load-or-build in one piece: the temp file, its cleanup on any error and the final rename must
    # share one try block.
    cache_dir = Path(cache_dir)
    samples = list(samples)

    def existing(dec: str) -> ImageCache | None:
        found = ImageCache.load(cache_dir, fingerprint=fingerprint, image_size=image_size, margin=margin,
                                decoder=dec)
        if found is None or not found.covers(samples):
            return None
        if stats is not None:
            stats.update(built=False, seconds=0.0, images_per_s=float("nan"), workers=0, decoder=dec)
        return found

    # A named decoder's existing cache needs no look at the files (resolve_decoder reads
    # every file's first bytes, and a grid asks for its cache several times).
    found = existing(decoder) if decoder in DECODERS else None
    if found is not None:
        return found
    decoder = resolve_decoder(samples, decoder, device)
    found = existing(decoder)
    if found is not None:
        return found
    ids = [str(s.sample_id) for s in samples]
    if len(set(ids)) != len(ids):
        raise DataError(None, "image cache: duplicate sample ids in the samples given")
    stem = cache_dir / cache_stem(fingerprint, image_size, margin, decoder)
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
        if decoder == "torchvision":
            workers = 0                               # the decoder batches; no pool
            dev = torch.device(device or "cpu")
            with tqdm(total=n, desc=f"image cache (decode_jpeg on {dev})", disable=not progress,
                      leave=False) as bar:
                out = np.load(tmp, mmap_mode="r+")
                try:
                    _build_torchvision(samples, out, image_size=image_size, margin=margin, device=dev,
                                       batch=decode_batch, bar=bar)
                finally:
                    del out
        else:
            with tqdm(total=n, desc=f"image cache ({workers} proc)", disable=not progress,
                      leave=False) as bar:
                _build_pil(samples, tmp, image_size=image_size, margin=margin, workers=workers,
                           chunk=chunk, bar=bar)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, stem.parent / f"{stem.name}.npy")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json(stem.parent / f"{stem.name}.json", {"sample_ids": ids, "image_size": int(image_size),
                                           "margin": float(margin), "fingerprint": fingerprint,
                                           "shape": [n, image_size, image_size, 3], "decoder": decoder})
    seconds = time.perf_counter() - t0
    if stats is not None:
        stats.update(built=True, seconds=seconds, images_per_s=n / max(seconds, 1e-9), workers=workers,
                     decoder=decoder)
    out = ImageCache.load(cache_dir, fingerprint=fingerprint, image_size=image_size, margin=margin,
                          decoder=decoder)
    assert out is not None
    return out


def image_cache_of_run(run_path: str | Path, info: RunInfo) -> ImageCache | None:
    """The image cache a classifier run's features were computed from, when it is still in
    the run's runs folder (``<runs>/_cache/images``), else None. Its rows are exactly the
    model's input pixels, so the dashboard reads crops from it instead of decoding scenes."""
    train = info.config.get("train") or {}
    fingerprint = info.data.fingerprint
    decoder = info.image_decoder or "pil"
    if not fingerprint or decoder not in DECODERS:
        return None
    return ImageCache.load(image_cache_dir(Path(run_path).parent), fingerprint=str(fingerprint),
                           image_size=int(train.get("image_size", 224)),
                           margin=float(train.get("margin", 0.15)), decoder=decoder)


def _build_pil(samples: Sequence, tmp: Path, *, image_size: int, margin: float, workers: int,
               chunk: int, bar) -> None:
    """Fill the .npy at ``tmp`` with every sample's crop: PIL in a fork pool of ``workers``
    (in this process when 1), chunks of consecutive samples written in place."""
    n = len(samples)
    _JOB.update(samples=samples, image_size=image_size, margin=margin, tmp=str(tmp))
    chunks = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    pool = None
    try:
        if workers == 1:
            results = map(_decode_chunk, chunks)
        else:
            pool = mp.get_context("fork").Pool(workers)
            results = pool.imap_unordered(_decode_chunk, chunks)
        for count, error in results:
            if error is not None:
                raise DataError(None, f"image cache: {error}")
            bar.update(count)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _JOB.clear()


def cached_pose_dataset(samples: Sequence, *, all_samples: Sequence, fingerprint: str, image_size: int,
                        margin: float, runs_dir: str | Path, progress: bool = True, decoder: str = "pil",
                        device: torch.device | str | None = None) -> CachedPoseDataset:
    """``samples`` as a CachedPoseDataset, building the cache of ``all_samples`` (the whole
    dataset, so one build serves every split) when it is missing. Under torchrun rank 0
    builds it with every core while the other ranks wait, then they all read it."""
    with D.main_process_first():
        cache = build_image_cache(all_samples, fingerprint=fingerprint, image_size=image_size,
                                  margin=margin, cache_dir=image_cache_dir(runs_dir),
                                  progress=progress and D.is_main_process(), decoder=decoder,
                                  device=device)
    return cache.dataset(samples)
