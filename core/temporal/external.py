"""Readers of public datasets that have ground truth but no estimator output: Penn Action
(``labels/NNNN.mat``) and BRACE (segment ``.json`` files). Their videos get heatmaps from
the simulated estimator (``core.synthetic.estimator``), deterministically per seed.

Conventions: Penn Action's pixels are 1-based (MATLAB) and shifted to 0-based; its 13
joints map into TEMPORAL25 (its head into the nose slot); BRACE's boxes are xywh and
become xyxy, its COCO-17 keypoints lose the eyes, segments of one YouTube video share a
``group`` so a split never cuts them apart.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import scipy.io

from core.errors import DataError
from core.io import read_json
from core.keypoints import COCO17, TEMPORAL25
from core.synthetic.estimator import simulate_estimator
from core.temporal.videos import WINDOW, K, Video, check

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
    hm, pred_boxes = simulate_estimator(kp, heatmap=heatmap, noise=noise, joint_mask=mask,
                                        boxes=boxes, seed=seed)
    kp = kp.copy()
    kp[..., 2] = np.where(mask[None], kp[..., 2], 0)
    return Video(id=vid, heatmaps=hm, boxes=pred_boxes, keypoints=kp.astype(np.float32),
                 joint_mask=mask, image_size=(int(image_size[0]), int(image_size[1])),
                 source=source, path=Path(path).resolve(), split=split, first_frame=first_frame,
                 estimator="simulated")


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
    path = Path(mat_path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except Exception as exc:  # scipy raises a zoo of types for a bad .mat
        raise DataError(path, f"not a readable MATLAB file ({exc})") from None
    for name in ("x", "y", "visibility"):
        check(name in mat, path, f"missing field '{name}' (Penn Action needs x, y, visibility)")
    x, y, v = (np.asarray(mat[n], dtype=np.float64) for n in ("x", "y", "visibility"))
    check(x.ndim == 2 and x.shape[1] == 13 and x.shape == y.shape == v.shape, path,
           f"x, y, visibility must all be (T, 13), got {x.shape}, {y.shape}, {v.shape}")
    t = x.shape[0]
    if "nframes" in mat:
        check(int(np.asarray(mat["nframes"]).reshape(-1)[0]) == t, path,
               f"nframes={int(np.asarray(mat['nframes']).reshape(-1)[0])} but x has {t} rows")
    check(t >= min_frames, path, f"video has {t} frames, shorter than a window of {min_frames}")
    check(bool(np.isfinite(x).all() and np.isfinite(y).all()), path, "x/y contain NaN")
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
    data = read_json(path)
    check(isinstance(data, dict) and data, path, "expected a non-empty object keyed by frame")
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
        check(kp.shape == (17, 3) and box.shape[0] >= 4, path,
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
