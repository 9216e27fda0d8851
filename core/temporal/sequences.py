"""Heatmap sequences for temporal refinement: the .npz format, datasets, splits, windows.

One video = one ``.npz`` file (``np.savez``; never pickled objects), keypoint order
``core.keypoints.TEMPORAL25``. It is both what ``python -m core synth sequences`` writes
and the format for a user's own estimator output:

==============  =================  ==========================================================
array           shape / dtype      meaning
==============  =================  ==========================================================
heatmaps        (T, 25, H, W)      the estimator's raw output per frame (float16/32; negative
                float              values allowed, preprocessing clips them). T >= 5.
boxes           (T, 4) float       the estimator's predicted person box per frame, xyxy in
                                   image pixels; the heatmaps cover exactly this box
                                   (top-down), see ``core.temporal.heatmaps`` for the pixel mapping.
keypoints       (T, 25, 3) float   optional ground truth in image pixels: x, y, visibility
                                   (0 = missing/outside the frame, 1 = occluded, 2 =
                                   visible). NaN x/y are allowed only where visibility is
                                   0 (treated as missing). Without it the video can be
                                   refined and viewed but not scored.
joint_mask      (25,) bool         optional: the joints this dataset annotates (default all).
                                   Masked joints are excluded from loss and PCK, never
                                   treated as zero.
image_size      (2,) int           optional: frame width, height (default: the extent of
                                   the boxes).
frame_paths     (T,) str           optional: image file per frame (relative to the file).
==============  =================  ==========================================================

A *dataset folder* is ``DIR/index.json`` + ``DIR/videos/<id>.npz``; index.json holds
``{"format": "poselab-sequences", "videos": [{"id", "file", "split"?, "source"?,
"group"?, "first_frame"?}, ...]}`` (``split`` in train/val/test is respected when
present; videos sharing a ``group`` are never split apart). ``load_sequences`` accepts that
folder or its index.json, a single ``.npz`` (then cut in time into 60/20/20 parts, the
only way one video can be trained and tested), or a folder of Penn Action ``.mat`` files
or BRACE segment ``.json`` files, or both (the study's pre-training mix; see
``load_penn_action`` / ``load_brace``; other JSON files of a BRACE download are skipped
and counted in ``skipped``): those have
ground truth but no estimator output, so ``core.synthetic.estimator`` simulates it on load,
deterministically per seed; ``convert_dataset`` writes the result as a dataset folder
once, so it is not re-simulated at every run.

Splits are 60/20/20 *by video* (no video in two splits), a seeded permutation of the
sorted ids, so they are deterministic; pieces of one recording (a BRACE YouTube video's
segments) share a ``group`` and stay together. Windows of ``k = 5`` frames: stride 1 for
training, non-overlapping (stride k) for validation and test; frames after the last
whole test window (T mod k of them) are not scored.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from core.errors import DataError
from core.temporal.heatmaps import (bbox_norm, clamp_to_heatmap, decode_heatmaps,
                           gaussian_heatmaps, image_to_heatmap, normalize_heatmaps)
from core.io import atomic_write, fingerprint_files, write_json
from core.keypoints import COCO17, TEMPORAL25

K = len(TEMPORAL25)
WINDOW = 5  # k: frames per window (DESIGN.md §6)
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("train", "val", "test")
INDEX = "index.json"
FORMAT = "poselab-sequences"


@dataclass
class Video:
    """One video's estimator output and (optional) ground truth, as in the .npz."""
    id: str
    heatmaps: np.ndarray              # (T, 25, H, W) float16/32 raw estimator output
    boxes: np.ndarray                 # (T, 4) float32 predicted boxes, xyxy image px
    keypoints: np.ndarray | None      # (T, 25, 3) float32 ground truth x, y, vis; None = unscored
    joint_mask: np.ndarray            # (25,) bool: joints the dataset annotates
    image_size: tuple[int, int]       # frame (width, height) in pixels
    frame_paths: tuple[str, ...] | None = None
    source: str = "npz"               # "synthetic", "npz", "penn_action", "brace"
    path: Path | None = None          # the file it came from
    split: str | None = None          # split requested by the index/dataset, if any
    first_frame: int = 0              # frame number of heatmaps[0] in the original video
    group: str | None = None          # recording it belongs to; splits never cut a group

    @property
    def num_frames(self) -> int:
        return int(self.heatmaps.shape[0])

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return int(self.heatmaps.shape[2]), int(self.heatmaps.shape[3])


@dataclass
class SequenceIndex:
    """What ``load_sequences`` returns: videos split by video, plus provenance."""
    root: Path                        # absolute dataset folder
    sources: list[str]                # annotation/index files read
    keypoints: tuple[str, ...]        # keypoint names (TEMPORAL25)
    joint_mask: np.ndarray            # (25,) bool: joints any video annotates
    splits: dict[str, list[Video]]    # "train", "val", "test"
    fingerprint: str                  # changes when any source file changes
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def heatmap_size(self) -> tuple[int, int]:
        for videos in self.splits.values():
            if videos:
                return videos[0].heatmap_size
        raise DataError(self.root, "no videos")


# ============================================================================ .npz I/O

def _check(cond: bool, path, problem: str) -> None:
    if not cond:
        raise DataError(path, problem)


def load_video(path: str | Path, *, min_frames: int = WINDOW) -> Video:
    """Read and validate one video .npz; any problem -> DataError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(path, f"not a readable .npz of plain arrays ({exc})") from None
    for name in ("heatmaps", "boxes"):
        _check(name in arrays, path, f"missing array '{name}' (has: {', '.join(sorted(arrays)) or 'none'})")
    hm = arrays["heatmaps"]
    _check(hm.ndim == 4 and hm.shape[1] == K, path,
           f"heatmaps must be (T, {K}, H, W) in TEMPORAL25 order, got {hm.shape}")
    _check(hm.dtype.kind == "f", path, f"heatmaps must be float, got {hm.dtype}")
    t, _, h, w = hm.shape
    _check(h >= 4 and w >= 4, path, f"heatmaps of {h}x{w} pixels are too small")
    _check(t >= min_frames, path, f"video has {t} frames, shorter than a window of {min_frames}")
    if hm.dtype == np.float64:
        hm = hm.astype(np.float32)
    _check(bool(np.isfinite(hm).all()), path, "heatmaps contain NaN or infinite values")
    boxes = arrays["boxes"]
    _check(boxes.shape == (t, 4), path, f"boxes must be ({t}, 4) to match {t} heatmap frames, got {boxes.shape}")
    boxes = boxes.astype(np.float32)
    _check(bool(np.isfinite(boxes).all()), path, "boxes contain NaN or infinite values")
    _check(bool(((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()), path,
           "boxes must be xyxy with x1 > x0 and y1 > y0")

    keypoints = None
    if "keypoints" in arrays:
        kp = arrays["keypoints"]
        _check(kp.shape == (t, K, 3), path, f"keypoints must be ({t}, {K}, 3), got {kp.shape}")
        kp = kp.astype(np.float32).copy()
        vis = np.nan_to_num(kp[..., 2], nan=0.0)
        _check(bool(np.isin(vis, (0, 1, 2)).all()), path, "keypoint visibility must be 0, 1 or 2")
        _check(not bool(np.isnan(kp[..., :2])[vis > 0].any()), path,
               "keypoints have NaN coordinates where visibility > 0")
        missing = vis == 0
        kp[..., :2][missing] = 0.0
        kp[..., 2] = vis
        keypoints = kp
    joint_mask = np.ones(K, bool)
    if "joint_mask" in arrays:
        jm = arrays["joint_mask"]
        _check(jm.shape == (K,), path, f"joint_mask must be ({K},), got {jm.shape}")
        joint_mask = jm.astype(bool)
    if "image_size" in arrays:
        size = arrays["image_size"].reshape(-1)
        _check(size.shape == (2,) and bool((size > 0).all()), path, "image_size must be (2,) positive w, h")
        image_size = (int(size[0]), int(size[1]))
    else:
        image_size = (int(np.ceil(boxes[:, 2].max())), int(np.ceil(boxes[:, 3].max())))
    frame_paths = None
    if "frame_paths" in arrays:
        fp = arrays["frame_paths"]
        _check(fp.shape == (t,) and fp.dtype.kind == "U", path, f"frame_paths must be ({t},) strings")
        frame_paths = tuple(str(p) for p in fp)
    return Video(id=path.stem, heatmaps=hm, boxes=boxes, keypoints=keypoints, joint_mask=joint_mask,
                 image_size=image_size, frame_paths=frame_paths, path=path.resolve())


def save_video(path: str | Path, video: Video) -> None:
    """Write a video as .npz, atomically (the documented format, readable by ``load_video``)."""
    arrays = {"heatmaps": video.heatmaps, "boxes": video.boxes.astype(np.float32),
              "joint_mask": video.joint_mask.astype(bool),
              "image_size": np.asarray(video.image_size, dtype=np.int32)}
    if video.keypoints is not None:
        arrays["keypoints"] = video.keypoints.astype(np.float32)
    if video.frame_paths is not None:
        arrays["frame_paths"] = np.asarray(video.frame_paths, dtype=str)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


# ============================================================================ Penn Action / BRACE

# Penn Action's 13 joints, in its order, and where each goes in TEMPORAL25 (head -> nose).
PENN_JOINTS = ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
               "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
               "left_ankle", "right_ankle")
PENN_TO_TEMPORAL = np.array([TEMPORAL25.index("nose" if j == "head" else j) for j in PENN_JOINTS])
# COCO-17 -> TEMPORAL25 (eyes have no TEMPORAL25 twin and are dropped).
COCO_TO_TEMPORAL = {i: TEMPORAL25.index(n) for i, n in enumerate(COCO17) if n in TEMPORAL25}


def _mask_from(indices) -> np.ndarray:
    m = np.zeros(K, bool)
    m[list(indices)] = True
    return m


def _simulated_video(vid: str, kp: np.ndarray, mask: np.ndarray, image_size, *, boxes, heatmap,
                     noise, seed, source, path, split=None, first_frame=0) -> Video:
    from core.synthetic.estimator import simulate_estimator
    hm, pred_boxes = simulate_estimator(kp, heatmap=heatmap, noise=noise, joint_mask=mask,
                                        boxes=boxes, seed=seed)
    kp = kp.copy()
    kp[..., 2] = np.where(mask[None], kp[..., 2], 0)
    return Video(id=vid, heatmaps=hm, boxes=pred_boxes, keypoints=kp.astype(np.float32),
                 joint_mask=mask, image_size=(int(image_size[0]), int(image_size[1])),
                 source=source, path=Path(path).resolve(), split=split, first_frame=first_frame)


def _stable_seed(seed: int, name: str) -> int:
    # Python's hash() is salted per process; a fixed digest keeps videos reproducible.
    return int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:15], 16)


def load_penn_action(mat_path: str | Path, *, heatmap: int = 64, noise: float = 1.0, seed: int = 0,
                     min_frames: int = WINDOW) -> Video:
    """One Penn Action video (``labels/NNNN.mat``) with a simulated estimator's heatmaps.

    Reads ``x``, ``y``, ``visibility`` (T, 13) (required), ``bbox`` (T, 4) xyxy and
    ``dimensions`` (h, w, T) (optional; a bbox with the wrong row count, as a few files
    have, is ignored and the box comes from the keypoints), ``train`` (1 = train,
    -1 = test; kept as the video's split). Coordinates are 1-based MATLAB pixels: 1 is
    subtracted. The 13 joints map into TEMPORAL25; the other 12 are masked.
    """
    import scipy.io
    path = Path(mat_path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except Exception as exc:  # scipy raises a zoo of types for a bad .mat
        raise DataError(path, f"not a readable MATLAB file ({exc})") from None
    for name in ("x", "y", "visibility"):
        _check(name in mat, path, f"missing field '{name}' (Penn Action needs x, y, visibility)")
    x, y, v = (np.asarray(mat[n], dtype=np.float64) for n in ("x", "y", "visibility"))
    _check(x.ndim == 2 and x.shape[1] == 13 and x.shape == y.shape == v.shape, path,
           f"x, y, visibility must all be (T, 13), got {x.shape}, {y.shape}, {v.shape}")
    t = x.shape[0]
    if "nframes" in mat:
        _check(int(np.asarray(mat["nframes"]).reshape(-1)[0]) == t, path,
               f"nframes={int(np.asarray(mat['nframes']).reshape(-1)[0])} but x has {t} rows")
    _check(t >= min_frames, path, f"video has {t} frames, shorter than a window of {min_frames}")
    _check(bool(np.isfinite(x).all() and np.isfinite(y).all()), path, "x/y contain NaN")
    kp = np.zeros((t, K, 3))
    kp[:, PENN_TO_TEMPORAL, 0] = x - 1.0  # MATLAB 1-based -> 0-based pixels
    kp[:, PENN_TO_TEMPORAL, 1] = y - 1.0
    kp[:, PENN_TO_TEMPORAL, 2] = np.where(v > 0, 2, 0)
    boxes = None
    if "bbox" in mat and np.asarray(mat["bbox"]).shape == (t, 4):
        boxes = np.asarray(mat["bbox"], dtype=np.float64) - 1.0
    if "dimensions" in mat:
        dims = np.asarray(mat["dimensions"]).reshape(-1)
        image_size = (int(dims[1]), int(dims[0]))
    else:
        image_size = (int(np.ceil(x.max())), int(np.ceil(y.max())))
    split = None
    if "train" in mat:
        split = "train" if int(np.asarray(mat["train"]).reshape(-1)[0]) == 1 else "test"
    return _simulated_video(path.stem, kp, _mask_from(PENN_TO_TEMPORAL), image_size, boxes=boxes,
                            heatmap=heatmap, noise=noise, seed=_stable_seed(seed, path.stem),
                            source="penn_action", path=path, split=split)


def _brace_frame(key: str, path: Path) -> int:
    # keys look like "video_id/img-000123.png"; plain integers are accepted too
    stem = key.rsplit("/", 1)[-1].split(".")[0].removeprefix("img-")
    try:
        return int(stem)
    except ValueError:
        raise DataError(path, f"frame key {key!r} has no frame number") from None


def load_brace(json_path: str | Path, *, heatmap: int = 64, noise: float = 1.0, seed: int = 0,
               image_size: tuple[int, int] = (1920, 1080), min_frames: int = WINDOW) -> list[Video]:
    """One BRACE segment JSON -> videos with a simulated estimator's heatmaps.

    The file maps frame ids (``"<video_id>/img-000123.png"``) to ``{"box": [x, y, w, h,
    score], "keypoints": 17 x [x, y, score]}`` in COCO-17 order, pixels of a 1920x1080
    frame. COCO's eyes are dropped; the 14 other joints map into TEMPORAL25 and the rest
    are masked. A gap in the frame numbers starts a new video (``<stem>@<first frame>``),
    and runs shorter than a window are skipped.
    """
    path = Path(json_path)
    data = _load_json(path)
    _check(isinstance(data, dict) and data, path, "expected a non-empty object keyed by frame")
    frames = sorted((_brace_frame(key, path), val) for key, val in data.items())
    coco_idx = np.array(list(COCO_TO_TEMPORAL))
    tmp_idx = np.array(list(COCO_TO_TEMPORAL.values()))
    numbers, kps, boxes = [], [], []
    for number, val in frames:
        try:
            kp = np.asarray(val["keypoints"], dtype=np.float64)
            box = np.asarray(val["box"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            raise DataError(path, f"frame {number}: needs 'keypoints' (17 x 3) and 'box' (x, y, w, h, score)") from None
        _check(kp.shape == (17, 3) and box.shape[0] >= 4, path,
               f"frame {number}: keypoints must be 17 x 3 and box x, y, w, h[, score]")
        full = np.zeros((K, 3))
        full[tmp_idx, :2] = kp[coco_idx, :2]
        full[tmp_idx, 2] = np.where(np.isfinite(kp[coco_idx, :2]).all(-1), 2, 0)
        full[..., :2] = np.nan_to_num(full[..., :2])
        numbers.append(number)
        kps.append(full)
        boxes.append([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    numbers = np.array(numbers)
    kps, boxes = np.stack(kps), np.array(boxes)
    breaks = np.flatnonzero(np.diff(numbers) != 1) + 1
    videos = []
    mask = _mask_from(tmp_idx)
    # "<video_id>_<start>-<end>_<movement>": every segment of one YouTube video shares
    # a group, so the split never puts the same dancer and recording on both sides.
    parts = path.stem.rsplit("_", 2)
    group = parts[0] if len(parts) == 3 and "-" in parts[1] else path.stem
    for part in np.split(np.arange(len(numbers)), breaks):
        if len(part) < min_frames:
            continue
        first = int(numbers[part[0]])
        vid = path.stem if len(breaks) == 0 else f"{path.stem}@{first}"
        videos.append(_simulated_video(vid, kps[part], mask, image_size, boxes=boxes[part],
                                       heatmap=heatmap, noise=noise, seed=_stable_seed(seed, vid),
                                       source="brace", path=path, first_frame=first))
        videos[-1].group = group
    return videos


# ============================================================================ datasets

def _cut(groups: list[str], seed: int, fractions: tuple[float, ...]) -> list[list[str]]:
    """Seeded permutation of sorted group names cut by ``fractions``; with at least as
    many groups as parts, every part after the first gets at least one."""
    names = sorted(groups)
    perm = np.random.default_rng(seed).permutation(len(names))
    sizes = [int(round(len(names) * f / sum(fractions))) for f in fractions[1:]]
    if len(names) >= len(fractions):
        sizes = [max(n, 1) for n in sizes]
    sizes = [len(names) - sum(sizes)] + sizes
    bounds = np.cumsum([0] + sizes)
    return [[names[i] for i in sorted(perm[a:b])] for a, b in zip(bounds[:-1], bounds[1:])]


def split_videos(videos: list[Video], seed: int = 0,
                 fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, list[Video]]:
    """60/20/20 by video, deterministic for a seed; a video's own ``split`` wins.

    The unit is the video's ``group`` (default its id): the pieces of one recording
    (BRACE segments of one YouTube video, the parts of a segment cut at a gap) share a
    group and so a split. Groups without a split are permuted (seeded, from sorted
    names) and cut by the fractions; with >= 3 groups, val and test get at least one.
    When some videos say "train" and none say "val" (Penn Action: train/test only), val
    is carved from the "train" groups in the proportion val : (train + val) = 0.2 : 0.8.
    """
    out: dict[str, list[Video]] = {s: [] for s in SPLITS}
    for v in videos:
        if v.split is not None and v.split not in out:
            raise DataError(v.path, f"split {v.split!r} is not one of train, val, test")

    def group(v: Video) -> str:
        return v.group or v.id

    fixed = {s: {group(v) for v in videos if v.split == s} for s in SPLITS}
    free = {group(v) for v in videos if v.split is None} - set().union(*fixed.values())
    if fixed["train"] and not fixed["val"]:
        train, val = _cut(list(fixed["train"]), seed, fractions[:2])
        fixed["train"], fixed["val"] = set(train), set(val)
    where = {g: s for s in SPLITS for g in fixed[s]}
    for s, names in zip(SPLITS, _cut(list(free), seed, fractions)):
        where.update((g, s) for g in names)
    for v in sorted(videos, key=lambda v: (group(v), v.first_frame, v.id)):
        out[where[group(v)]].append(v)
    return out


def _split_in_time(video: Video, k: int) -> dict[str, list[Video]]:
    """One video only: contiguous 60/20/20 parts (each >= k frames) as train/val/test."""
    t = video.num_frames
    if t < 3 * k:
        return {"train": [], "val": [], "test": [video]}
    n_val = max(k, int(round(t * SPLIT_FRACTIONS[1])))
    n_test = max(k, int(round(t * SPLIT_FRACTIONS[2])))
    n_train = t - n_val - n_test
    if n_train < k:
        return {"train": [], "val": [], "test": [video]}
    out = {}
    start = 0
    for s, n in zip(SPLITS, (n_train, n_val, n_test)):
        sl = slice(start, start + n)
        out[s] = [Video(id=f"{video.id}[{start}:{start + n}]", heatmaps=video.heatmaps[sl],
                        boxes=video.boxes[sl],
                        keypoints=None if video.keypoints is None else video.keypoints[sl],
                        joint_mask=video.joint_mask, image_size=video.image_size,
                        frame_paths=None if video.frame_paths is None else video.frame_paths[sl],
                        source=video.source, path=video.path, first_frame=video.first_frame + start)]
        start += n
    return out


def _load_json(path: Path):
    """Parsed JSON of ``path``; a missing or malformed file is a DataError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None


def _read_index(index: Path) -> tuple[list[Video], list[Path]]:
    data = _load_json(index)
    _check(isinstance(data, dict) and isinstance(data.get("videos"), list), index,
           "expected an object with a 'videos' list")
    videos, files = [], [index]
    seen = set()
    for i, entry in enumerate(data["videos"]):
        _check(isinstance(entry, dict) and "file" in entry, index, f"videos[{i}] needs a 'file'")
        file = (index.parent / entry["file"]).resolve()
        _check(file.is_relative_to(index.parent.resolve()), index, f"videos[{i}]: file {entry['file']!r} is outside the dataset folder")
        _check(file.is_file(), index, f"videos[{i}]: file {entry['file']!r} not found")
        v = load_video(file)
        v.id = str(entry.get("id", file.stem))
        _check(v.id not in seen, index, f"video id {v.id!r} appears twice")
        seen.add(v.id)
        v.split = entry.get("split")
        _check(v.split in (None, *SPLITS), index, f"videos[{i}]: split {v.split!r} is not train/val/test")
        v.source = str(entry.get("source", "npz"))
        v.group = entry.get("group")
        v.first_frame = int(entry.get("first_frame", 0))
        videos.append(v)
        files.append(file)
    _check(bool(videos), index, "lists no videos")
    return videos, files


def load_sequences(path: str | Path, *, seed: int = 0, heatmap: int = 64, noise: float = 1.0
                   ) -> SequenceIndex:
    """A sequence dataset, split by video. ``path``: a dataset folder or its index.json,
    one .npz, or a folder (searched recursively) / single file of Penn Action .mat or
    BRACE .json; for those the estimator is simulated at ``heatmap`` px and ``noise``
    (deterministic for ``seed``). ``seed`` also drives the split."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(path, "no such file or folder")
    skipped: dict[str, int] = {}
    single = False
    extra = ""
    if path.is_dir() and (path / INDEX).is_file():
        path = path / INDEX
    if path.is_file() and path.suffix == ".json" and _is_index(path):
        videos, files = _read_index(path)
        root = path.parent
    elif path.is_file() and path.suffix == ".npz":
        videos, files, root, single = [load_video(path)], [path], path.parent, True
    elif path.is_file() and path.suffix == ".mat":
        videos, files, root = [load_penn_action(path, heatmap=heatmap, noise=noise, seed=seed)], [path], path.parent
        videos[0].split, single, extra = None, True, f"{heatmap}/{noise}"
    elif path.is_file() and path.suffix == ".json":
        videos, files, root = load_brace(path, heatmap=heatmap, noise=noise, seed=seed), [path], path.parent
        extra = f"{heatmap}/{noise}"
    elif path.is_dir():
        root = path
        mats, jsons, npzs = (sorted(path.rglob(f"*.{e}")) for e in ("mat", "json", "npz"))
        if npzs and not mats:  # a folder of one's own .npz (a stray .json is not data)
            videos, files = [load_video(p) for p in npzs], npzs
            for v, p in zip(videos, npzs):
                v.id = str(p.relative_to(path).with_suffix(""))
        elif mats or jsons:  # Penn Action and/or BRACE, e.g. the study's pre-training mix
            videos = [load_penn_action(p, heatmap=heatmap, noise=noise, seed=seed) for p in mats]
            files = list(mats)
            for p in jsons:
                if not _is_brace(p):
                    skipped["json file that is not a BRACE segment"] = skipped.get(
                        "json file that is not a BRACE segment", 0) + 1
                    continue
                got = load_brace(p, heatmap=heatmap, noise=noise, seed=seed)
                if not got:
                    skipped["segment shorter than a window"] = skipped.get("segment shorter than a window", 0) + 1
                videos += got
                files.append(p)
            extra = f"{heatmap}/{noise}"
        else:
            raise DataError(path, f"no {INDEX}, .npz, Penn Action .mat or BRACE .json files found")
    else:
        raise DataError(path, "expected a dataset folder, index.json, .npz, .mat or BRACE .json")
    if not videos:
        raise DataError(path, "no video has enough frames for a window")
    ids = [v.id for v in videos]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    _check(not dup, path, f"video id {dup[0]!r} appears twice; video ids must be unique" if dup else "")
    sizes = {v.heatmap_size for v in videos}
    _check(len(sizes) == 1, path, f"videos have different heatmap sizes {sorted(sizes)}")
    splits = _split_in_time(videos[0], WINDOW) if single else split_videos(videos, seed)
    mask = np.zeros(K, bool)
    for v in videos:
        mask |= v.joint_mask
    fp = fingerprint_files([Path(f).resolve() for f in files], root.resolve())
    if extra:  # simulated heatmaps depend on the simulation settings too
        fp = hashlib.sha256(f"{fp}/{extra}/{seed}".encode()).hexdigest()[:16]
    return SequenceIndex(root=root.resolve(), sources=[str(Path(f).resolve()) for f in files],
                         keypoints=TEMPORAL25, joint_mask=mask, splits=splits, fingerprint=fp,
                         skipped=skipped)


def _is_brace(path: Path) -> bool:
    """A BRACE segment is an object keyed by frame ids ("<video>/img-000123.png"); other
    JSON files in a BRACE download (audio_beats.json, shot_boundaries.json) are not.
    Only the first key is looked at: a malformed segment still fails loudly in load_brace."""
    try:
        with open(path, "rb") as f:
            head = f.read(256).decode("utf-8", "replace").lstrip()
    except OSError:
        return False
    if not head.startswith("{"):
        return True  # not an object at all: let load_brace name the problem
    key = head[1:].lstrip()
    return not key.startswith('"') or "img-" in key.split('"')[1] or key.split('"')[1].isdigit()


def _is_index(path: Path) -> bool:
    if path.name == INDEX:
        return True
    try:  # a BRACE segment is keyed by frame; an index has "videos"
        with open(path, "rb") as f:
            head = f.read(4096)
        return b'"videos"' in head and b'"format"' in head
    except OSError:
        return False


def write_dataset(out: str | Path, videos: list[Video], *, meta: dict | None = None) -> Path:
    """Write videos as a dataset folder (``videos/<id>.npz`` + index.json), atomically.

    Built in a temporary sibling folder and renamed into place, so an interrupted write
    leaves any previous dataset at ``out`` untouched. Returns the index.json path.
    """
    out = _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        entries = []
        for v in videos:
            fname = f"videos/{_safe_name(v.id)}.npz"
            save_video(tmp / fname, v)
            entry = {"id": v.id, "file": fname, "source": v.source, "num_frames": v.num_frames}
            if v.split:
                entry["split"] = v.split
            if v.group:
                entry["group"] = v.group
            if v.first_frame:
                entry["first_frame"] = v.first_frame
            entries.append(entry)
        size = videos[0].heatmap_size if videos else None
        write_json(tmp / INDEX, {"format": FORMAT, "version": 1, "keypoints": list(TEMPORAL25),
                                 "heatmap_size": size, **(meta or {}), "videos": entries})
        if out.exists():
            old = out.with_name(f".{out.name}.old-{time.time_ns()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / INDEX


def _check_out(out: str | Path) -> Path:
    """Where a dataset may be (re)written: a new/empty folder or an existing dataset."""
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or (not (out / INDEX).is_file() and any(out.iterdir()))):
        raise DataError(out, "exists and is not a sequence dataset; refusing to overwrite it")
    return out


def _safe_name(vid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in vid)


def convert_dataset(src: str | Path, out: str | Path, *, heatmap: int = 64, noise: float = 1.0,
                    seed: int = 0) -> Path:
    """Penn Action / BRACE (or any ``load_sequences`` input) -> a dataset folder of .npz,
    so the simulated estimator runs once. Splits are recorded in index.json."""
    index = load_sequences(src, seed=seed, heatmap=heatmap, noise=noise)
    videos = []
    for s in SPLITS:
        for v in index.splits[s]:
            v.split = s
            videos.append(v)
    return write_dataset(out, videos, meta={"converted_from": str(index.root), "noise": noise, "seed": seed})


# ============================================================================ synthetic

def write_sequence_dataset(out: str | Path, *, videos: int = 40, frames: int = 60, seed: int = 0,
                           heatmap: int = 64, noise: float = 1.0, progress: bool = True) -> dict:
    """Synthetic videos (``core.synthetic.motion``) + simulated estimator -> a dataset folder.

    Deterministic for a seed. Returns a summary dict (also printed): counts per
    movement, frames, heatmap size, seconds and the estimator's identity PCK.
    """
    from tqdm import tqdm

    from core.synthetic.estimator import simulate_estimator
    from core.synthetic.motion import animate, movement_for

    if videos < 1 or frames < WINDOW:
        raise DataError(out, f"need at least 1 video of at least {WINDOW} frames (got {videos} x {frames})")
    if heatmap < 8:
        raise DataError(out, f"heatmap size {heatmap} is too small (>= 8)")
    _check_out(out)  # fail before minutes of synthesis, not after
    t0 = time.perf_counter()
    made: list[Video] = []
    counts: dict[str, int] = {}
    for i in tqdm(range(videos), desc="synth sequences", unit="video", disable=not progress,
                  file=sys.stderr):
        rng = np.random.default_rng([seed, i])
        movement = movement_for(i)
        clip = animate(movement, frames, rng)
        hm, boxes = simulate_estimator(clip.keypoints, heatmap=heatmap, noise=noise, seed=rng)
        vid = f"{i:04d}_{movement}"
        counts[movement] = counts.get(movement, 0) + 1
        made.append(Video(id=vid, heatmaps=hm, boxes=boxes, keypoints=clip.keypoints.astype(np.float32),
                          joint_mask=np.ones(K, bool), image_size=clip.image_size, source="synthetic"))
    pck = identity_pck(made)
    meta = {"generator": {"videos": videos, "frames": frames, "seed": seed, "heatmap": heatmap,
                          "noise": noise}}
    index = write_dataset(out, made, meta=meta)
    summary = {"out": str(index.parent), "videos": videos, "frames": frames, "heatmap": heatmap,
               "noise": noise, "movements": counts, "identity_pck": pck,
               "seconds": round(time.perf_counter() - t0, 2)}
    if progress:
        print(f"wrote {videos} videos x {frames} frames ({heatmap}px heatmaps, noise {noise}) to "
              f"{index.parent} in {summary['seconds']} s; estimator PCK@0.05/0.1/0.2 = "
              + "/".join(f"{pck[a]:.3f}" for a in ("0.05", "0.1", "0.2")))
    return summary


def identity_pck(videos: list[Video], thresholds=(0.05, 0.1, 0.2)) -> dict[str, float]:
    """The estimator's own PCK (decoded input vs ground truth) over all frames, pooled
    over keypoints; a quick check of the simulated error level (DESIGN.md §7)."""
    hits = np.zeros(len(thresholds))
    total = 0
    for v in videos:
        if v.keypoints is None:
            continue
        f = video_frames(v)
        d = np.linalg.norm(f["input_keypoints"] - f["keypoints"], axis=-1)  # (T, K)
        vis = f["visible"]
        for i, a in enumerate(thresholds):
            hits[i] += ((d <= a * f["norm"][:, None]) & vis).sum()
        total += vis.sum()
    return {str(a): float(hits[i] / total) if total else float("nan") for i, a in enumerate(thresholds)}


# ============================================================================ windows

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
        raw = image_to_heatmap(video.keypoints[..., :2].astype(np.float32), video.boxes, size)
        visible = (video.keypoints[..., 2] > 0) & video.joint_mask[None]
        n = bbox_norm(raw, visible)
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
