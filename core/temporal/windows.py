"""Per-frame arrays in heatmap pixels and windows of k frames: what the temporal models
train and are scored on.

``video_frames`` turns one video into model inputs (preprocessed heatmaps, ground-truth
keypoints and target heatmaps in heatmap pixels, visibility, the PCK normaliser);
``WindowDataset`` cuts every video into windows of k = 5 frames (stride 1 for training,
non-overlapping for validation and test; frames after the last whole test window are not
scored); ``WindowBatches`` is the loader the trainer uses.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from core import distributed as D
from core.heatmaps import (
    affine_scale,
    bbox_norm,
    clamp_to_heatmap,
    decode_heatmaps,
    gaussian_heatmaps,
    image_to_heatmap,
    normalize_heatmaps,
    to_heatmap,
)
from core.keypoints import TEMPORAL25
from core.metrics import PCK_THRESHOLDS, pooled_pck
from core.temporal.videos import WINDOW, K, Video


def identity_pck(videos: list[Video], thresholds=PCK_THRESHOLDS) -> dict[str, float]:
    """The estimator's own PCK (decoded input vs ground truth) over all frames, pooled
    over keypoints (``core.metrics.pooled_pck``): a quick check of the estimator's error."""
    frames = [video_frames(v) for v in videos if v.keypoints is not None]
    if not frames:
        return {str(a): float("nan") for a in thresholds}
    cat = {k: np.concatenate([f[k] for f in frames]) for k in ("input_keypoints", "keypoints", "visible", "norm")}
    pck = pooled_pck(cat["input_keypoints"], cat["keypoints"], cat["visible"], cat["norm"], thresholds)
    return {str(a): float(v) for a, v in zip(thresholds, pck)}


def video_frames(video: Video, *, norm: str = "bbox", sigma: float | None = None,
                 targets: bool = False) -> dict[str, np.ndarray]:
    """Per-frame arrays of one video in heatmap pixels, computed once and vectorised.

    Returns keypoints (T, K, 2) gt clamped to the map (outside-box points on the border,
    as the targets), visible (T, K) bool (gt visibility > 0 and joint_mask), norm (T,)
    PCK normaliser, input (T, K, H, W) float16 preprocessed input, input_keypoints
    (T, K, 2) decoded estimator peaks, and with ``targets`` target (T, K, H, W) float16.
    ``norm="bbox"``: max side of the visible gt keypoints' box (unclamped, the body's
    real size); ``"torso"``: left shoulder -> right hip, falling back to bbox in frames
    where either is not visible.
    """
    t = video.num_frames
    size = video.heatmap_size
    hm = torch.from_numpy(np.ascontiguousarray(video.heatmaps))
    inp = normalize_heatmaps(hm).half()  # (T, K, H, W), stored in half precision
    # decode what the models will see (the float16 maps), so the identity baseline and
    # an identity-like model decode to exactly the same points
    input_kp, _ = decode_heatmaps(inp.float())
    out = {"input": inp.numpy(), "input_keypoints": input_kp.numpy()}
    if video.keypoints is None:
        gt = np.zeros((t, K, 2), np.float32)
        visible = np.zeros((t, K), bool)
        n = np.zeros(t, np.float32)
    else:
        xy = video.keypoints[..., :2].astype(np.float32)
        visible = (video.keypoints[..., 2] > 0) & video.joint_mask[None]
        if video.heatmap_affine is None:
            raw = image_to_heatmap(xy, video.boxes, size)
            n = bbox_norm(raw, visible)
        else:   # a rotated crop: the box is measured in the image, so rotation cannot change it
            raw = to_heatmap(xy, video.heatmap_affine).astype(np.float32)
            n = bbox_norm(xy, visible) / affine_scale(video.heatmap_affine)
        if norm == "torso":
            ls, rh = TEMPORAL25.index("left_shoulder"), TEMPORAL25.index("right_hip")
            torso = np.linalg.norm(raw[:, ls] - raw[:, rh], axis=-1)
            n = np.where(visible[:, ls] & visible[:, rh], torso, n)
        elif norm != "bbox":
            raise ValueError(f"norm must be 'bbox' or 'torso', got {norm!r}")
        gt = clamp_to_heatmap(raw, size).astype(np.float32)
    out.update(keypoints=gt, visible=visible, norm=n.astype(np.float32))
    if targets:
        tg = gaussian_heatmaps(torch.from_numpy(gt), size, sigma, torch.from_numpy(visible))
        out["target"] = tg.half().numpy()
    return out


_FIELDS = ("input", "target", "keypoints", "visible", "norm", "input_keypoints")


_ITEM_NAME = {"input": "heatmaps"}  # item key of each per-frame field (others: same name)


class WindowDataset(Dataset):
    """Windows of k frames over videos, for the temporal models.

    Item: dict of tensors
      heatmaps        (k, 25, H, W) float32  preprocessed estimator output (sum 255 or 0)
      target          (k, 25, H, W) float32  gt Gaussians, same scale (zero where not visible)
      keypoints       (k, 25, 2) float32     gt in heatmap px (clamped to the map)
      visible         (k, 25) bool           gt visibility > 0 and joint in joint_mask
      norm            (k,) float32           PCK normaliser per frame (heatmap px)
      input_keypoints (k, 25, 2) float32     decoded estimator peaks (the identity baseline)
      video, start    int                    index into ``videos`` and first frame
    Stride: 1 when ``training`` else k (val/test windows do not overlap); an explicit
    ``stride`` wins. Everything is precomputed once, all videos' frames in one array
    (float16 maps, halving the memory), so ``__getitem__`` is slicing only.

    ``get_batch(indices)`` gathers many windows in one indexing op (B leading); after
    ``to(device)`` the frames live on that device and batches are gathered there: on a
    GPU this removes the DataLoader from the loop (thousands of windows per second),
    which per-item collation on the CPU cannot feed.
    """

    def __init__(self, videos: list[Video], *, k: int = WINDOW, stride: int | None = None,
                 training: bool = False, norm: str = "bbox", sigma: float | None = None):
        self.videos = list(videos)
        self.k = k
        self.stride = stride if stride is not None else (1 if training else k)
        if self.stride < 1:
            raise ValueError("stride must be >= 1")
        per_video = [video_frames(v, norm=norm, sigma=sigma, targets=True) for v in self.videos]
        if per_video:
            self._flat = {f: np.concatenate([p[f] for p in per_video]) for f in _FIELDS}
        else:
            self._flat = {f: np.zeros((0,)) for f in _FIELDS}
        offsets = np.cumsum([0] + [v.num_frames for v in self.videos])
        # per-video views into the flat arrays (no copy), for callers that want a video
        self.frames = [{f: self._flat[f][a:b] for f in _FIELDS} for a, b in zip(offsets[:-1], offsets[1:])]
        self.windows = [(vi, s) for vi, v in enumerate(self.videos)
                        for s in range(0, v.num_frames - k + 1, self.stride)]
        self._first = np.array([offsets[vi] + s for vi, s in self.windows], dtype=np.int64)
        self.device = torch.device("cpu")
        self._on_device: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        vi, s = self.windows[i]
        a = int(self._first[i])
        sl = slice(a, a + self.k)
        f = self._flat
        # numpy's single-threaded cast: DataLoader workers should not each spin up
        # torch's thread pool for a 100-kB copy (measured 8x slower on a busy CPU)
        item = {_ITEM_NAME.get(n, n): torch.from_numpy(np.ascontiguousarray(f[n][sl], dtype=_dtype(f[n])))
                for n in _FIELDS}
        item.update(video=vi, start=s)
        return item

    @property
    def nbytes(self) -> int:
        """Bytes ``to(device)`` would place on the device."""
        return int(sum(a.nbytes for a in self._flat.values()))

    def to(self, device: str | torch.device) -> "WindowDataset":
        """Keep the frame arrays on ``device`` (float16 maps) for ``get_batch``."""
        self.device = torch.device(device)
        if self.device.type == "cpu":
            self._on_device = None
        else:
            self._on_device = {n: torch.from_numpy(a).to(self.device) for n, a in self._flat.items()}
        return self

    def get_batch(self, indices) -> dict:
        """Windows ``indices`` (B,) stacked like a DataLoader batch, on ``self.device``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        frames = self._first[idx][:, None] + np.arange(self.k)  # (B, k)
        if self._on_device is None:
            out = {_ITEM_NAME.get(n, n): torch.from_numpy(self._flat[n][frames].astype(_dtype(self._flat[n])))
                   for n in _FIELDS}
        else:
            fi = torch.from_numpy(frames).to(self.device)
            out = {_ITEM_NAME.get(n, n): (t[fi].float() if t.is_floating_point() else t[fi])
                   for n, t in self._on_device.items()}
        vids = np.array([self.windows[i][0] for i in idx])
        starts = np.array([self.windows[i][1] for i in idx])
        out.update(video=torch.from_numpy(vids), start=torch.from_numpy(starts))
        return out

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False):
        """Iterate ``get_batch`` over all windows (seeded shuffle), like a DataLoader."""
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for a in range(0, stop, batch_size):
            yield self.get_batch(order[a:a + batch_size])


def _dtype(a: np.ndarray):
    return np.float32 if a.dtype.kind == "f" else a.dtype


def make_window_datasets(index, *, k: int = 5, train_stride: int = 1) -> dict:
    """WindowDatasets of the three splits (val/test non-overlapping). Building one
    precomputes targets and decoded peaks per video, so the grid builds them once."""
    return {
        "train": WindowDataset(index.splits["train"], k=k, stride=train_stride),
        "val": WindowDataset(index.splits["val"], k=k, stride=k),
        "test": WindowDataset(index.splits["test"], k=k, stride=k),
    }


class WindowBatches:
    """Re-iterable batches of a WindowDataset, the loader the trainer uses.

    ``WindowDataset.get_batch`` gathers a whole batch in one indexing op (and, after
    ``ds.to("cuda")``, on the GPU), which per-item DataLoader collation cannot match:
    the data half measured ~4x more windows/s on CPU, and thousands/s on a GPU. The order
    is ``core.distributed.GlobalBatches``: ``set_epoch`` reseeds the shuffle (so epoch e
    always sees the same order, resumed or not), and under torchrun each rank yields its
    slice of the single-process batches; a padding share is one window with no visible
    keypoint and ``samples`` = 0, so it adds nothing. Evaluation batches (``shuffle``
    False) are ``sharded`` under torchrun and gathered in rank order by ``evaluate``.
    """

    def __init__(self, ds, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 rank: int | None = None, world: int | None = None):
        self.ds = ds
        self.order = D.GlobalBatches(len(ds), batch_size, shuffle=shuffle, seed=seed, rank_=rank, world=world)

    @property
    def sharded(self) -> bool:
        return self.order.sharded

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        for idx, padding in self.order:
            batch = self.ds.get_batch(idx)
            if padding:                 # DDP needs every rank in every step
                batch["visible"] = torch.zeros_like(batch["visible"])
                batch["samples"] = 0
            yield batch
