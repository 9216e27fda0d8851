"""Readers of public datasets that have ground truth but no estimator output: Penn Action
and BRACE, as their downloads unpack. Their videos get heatmaps from the simulated
estimator (``core.synthetic.estimator``), deterministically per seed.

Layouts read:

* Penn Action: ``labels/NNNN.mat`` (``x``, ``y``, ``visibility`` (T, 13) required;
  ``bbox``, ``dimensions``, ``nframes``, ``train`` used when present) and, when present,
  ``frames/NNNN/*.jpg`` beside ``labels/`` (one image per row of ``x``, sorted by name;
  recorded as ``Video.frame_paths``, absolute).
* BRACE: ``dataset/<year>/<video_id>/<video_id>_<start>-<end>_<movement>.json`` (one
  segment: frame id ``"<video_id>/img-NNNNNN.png"`` -> ``{"box": [x, y, w, h, score],
  "keypoints": 17 x [x, y, score]}``, COCO-17 order) and, when present,
  ``manual_keypoints/<year>/<video_id>/img-NNNNNN.npz`` (array ``coco_joints2d``,
  17 x 3, the third column unused). ``annotations/`` is not needed.

Conventions (the first three rest on assumptions no public loader states; tests pin each):

* Pixels. Penn Action's ``x``, ``y`` and ``bbox`` are 1-based (MATLAB): 1 is subtracted.
  Its ``bbox`` is x1, y1, x2, y2 (a row count other than T, as a few files have, is
  ignored: the box then comes from the keypoints). BRACE's pixels are 0-based; its
  boxes are x, y, w, h and become xyxy.
* Penn's first joint is the head *top*. TEMPORAL25 has no such point, and putting it
  in the nose slot would mix two different points once Penn and BRACE are trained
  together, so it is not read: Penn videos annotate 12 joints and the nose slot holds
  only BRACE's noses. COCO's eyes have no TEMPORAL25 twin either: BRACE annotates 15.
* Frame numbers. ``Video.first_frame`` is 0-based everywhere: the position of
  heatmaps[0] in the original video, whose image is number ``first_frame + 1`` in both
  datasets' 1-based names (Penn's ``%06d.jpg``, BRACE's ffmpeg ``img-%06d``). A BRACE
  video id ``<segment>@<n>`` keeps BRACE's own frame number n, as in its file names.
* Frame bounds. Every keypoint with x < 0, y < 0, x >= W or y >= H is not visible
  (visibility 0, x = y = 0, as in the .npz format), with ``image_size`` (W, H) from
  Penn's ``dimensions``, else its first frame image, else the keypoints' extent (then
  only negative coordinates are outside); BRACE's videos are 1920x1080.
* Broken frames. A frame whose visible keypoints (two or more) span zero width or
  height is masked whole (every joint not visible); BRACE's own loader drops these.
  The frame stays, so the time axis is continuous for the temporal windows; BRACE's box
  for it is dropped too, so the simulated crop follows the nearest good frame.
* BRACE manual keypoints are the better ground truth: they replace the segment's
  (interpolated) keypoints of the same YouTube video and frame number (both count
  ``img-NNNNNN`` the same way). A file that matches no segment frame is skipped.
* Splits. Penn's ``train`` flag (1 = train, -1 = test) becomes the video's split. A
  gap in a BRACE segment's frame numbers starts a new video; runs shorter than a window
  are skipped; all segments of one YouTube video share a ``group``, so a split never
  puts one dancer's recording on both sides.

``read_penn_action`` / ``read_brace`` read many files and return what they did as counts
(reason -> number, the constants below), which ``load_sequences`` reports in
``SequenceIndex.skipped``; ``load_penn_action`` / ``load_brace`` read one file.
"""
from __future__ import annotations

import hashlib
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

import numpy as np
import scipy.io
from tqdm.auto import tqdm

from core.errors import DataError
from core.estimator.blazepose import BlazePose
from core.images import open_image, read_image_size
from core.io import read_json
from core.keypoints import COCO17, TEMPORAL25
from core.synthetic.estimator import simulate_estimator
from core.temporal.blazepose_videos import estimate_frames, heatmap_side_ok, video_from_poses
from core.temporal.videos import WINDOW, K, Video, check

BRACE_IMAGE_SIZE = (1920, 1080)  # BRACE README: all coordinates are pixels of 1920x1080


BRACE_MANUAL_ARRAY = "coco_joints2d"  # what tells a BRACE manual keypoints .npz apart


# What the readers masked, replaced or skipped (keys of SequenceIndex.skipped).
OUTSIDE_FRAME = "keypoints outside the frame (set not visible)"
BROKEN_FRAME = "frames whose keypoints span zero width or height (all joints set not visible)"
MANUAL_USED = "BRACE frames with manual keypoints (used as ground truth)"
MANUAL_UNMATCHED = "BRACE manual keypoint files with no segment frame (skipped)"
SHORT_RUN = "BRACE runs of frames shorter than a window (skipped)"
PENN_FRAMES_MISMATCH = "Penn Action frame folders whose image count differs from the labels (not recorded)"


# Penn Action's 13 joints, in its order; the head top has no TEMPORAL25 twin (not read).
PENN_JOINTS = ("head_top", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
               "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
               "left_ankle", "right_ankle")


PENN_TO_TEMPORAL = {i: TEMPORAL25.index(n) for i, n in enumerate(PENN_JOINTS) if n in TEMPORAL25}


# COCO-17 -> TEMPORAL25 (eyes have no TEMPORAL25 twin and are dropped).
COCO_TO_TEMPORAL = {i: TEMPORAL25.index(n) for i, n in enumerate(COCO17) if n in TEMPORAL25}


_FRAME_IMAGES = (".jpg", ".jpeg", ".png")


class Read(NamedTuple):
    """What a reader returns: its videos, the files it read, and what it did."""
    videos: list[Video]
    files: list[Path]       # annotation files read (provenance and fingerprint)
    counts: Counter         # reason -> count (the constants above)


def _counts(by_reason: dict[str, int]) -> Counter:
    return Counter({r: int(n) for r, n in by_reason.items() if n})


def _mask_from(indices) -> np.ndarray:
    m = np.zeros(K, bool)
    m[list(indices)] = True
    return m


def _mask_unusable(kp: np.ndarray, image_size) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Broken frames and keypoints outside the frame -> visibility 0 and x = y = 0.

    kp (T, K, 3) image px. Returns the masked copy, broken (T,) bool and the counts;
    keypoints outside the frame are counted in frames that are not broken."""
    kp = kp.copy()
    vis = kp[..., 2] > 0
    lo = np.where(vis[..., None], kp[..., :2], np.inf).min(1)   # (T, 2)
    hi = np.where(vis[..., None], kp[..., :2], -np.inf).max(1)
    broken = (vis.sum(1) >= 2) & (hi - lo == 0).any(-1)
    vis[broken] = False
    w, h = image_size
    x, y = kp[..., 0], kp[..., 1]
    outside = vis & ((x < 0) | (y < 0) | (x >= w) | (y >= h))
    vis &= ~outside
    kp[~vis] = 0.0
    return kp, broken, _counts({BROKEN_FRAME: broken.sum(), OUTSIDE_FRAME: outside.sum()})


def _simulated_video(vid: str, kp: np.ndarray, mask: np.ndarray, image_size, *, boxes, heatmap,
                     noise, seed, source, path, split=None, first_frame=0, frame_paths=None) -> Video:
    hm, pred_boxes = simulate_estimator(kp, heatmap=heatmap, noise=noise, joint_mask=mask,
                                        boxes=boxes, seed=seed)
    kp = kp.copy()
    kp[:, ~mask] = 0.0  # joints the dataset lacks: not visible, at the origin
    return Video(id=vid, heatmaps=hm, boxes=pred_boxes, keypoints=kp.astype(np.float32),
                 joint_mask=mask, image_size=(int(image_size[0]), int(image_size[1])),
                 frame_paths=frame_paths, source=source, path=Path(path).resolve(), split=split,
                 first_frame=first_frame, estimator="simulated")


def _stable_seed(seed: int, name: str) -> int:
    # Python's hash() is salted per process; a fixed digest keeps videos reproducible.
    return int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:15], 16)


# ----------------------------------------------------------------------------- Penn Action

def _load_mat(path: Path) -> dict:
    try:
        return scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except Exception as exc:  # scipy raises a zoo of types for a bad .mat
        raise DataError(path, f"not a readable MATLAB file ({exc})") from None


def _penn_joints(mat: dict, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, visibility (T, 13), validated."""
    for name in ("x", "y", "visibility"):
        check(name in mat, path, f"missing field '{name}' (Penn Action needs x, y, visibility)")
    x, y, v = (np.asarray(mat[n], dtype=np.float64) for n in ("x", "y", "visibility"))
    check(x.ndim == 2 and x.shape[1] == 13 and x.shape == y.shape == v.shape, path,
          f"x, y, visibility must all be (T, 13), got {x.shape}, {y.shape}, {v.shape}")
    if "nframes" in mat:
        n = int(np.asarray(mat["nframes"]).reshape(-1)[0])
        check(n == len(x), path, f"nframes={n} but x has {len(x)} rows")
    check(bool(np.isfinite(x).all() and np.isfinite(y).all()), path, "x/y contain NaN")
    return x, y, v


def _penn_frames(mat_path: Path, t: int) -> tuple[tuple[str, ...] | None, Counter]:
    """The images of ``frames/<stem>/`` beside ``labels/``, one per label row, or None
    (not that layout, or a folder whose image count differs: counted, as frames that
    cannot be matched to rows)."""
    folder = mat_path.parent.parent / "frames" / mat_path.stem
    if mat_path.parent.name != "labels" or not folder.is_dir():
        return None, Counter()
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in _FRAME_IMAGES)
    if len(images) != t:
        return None, _counts({PENN_FRAMES_MISMATCH: 1})
    return tuple(str(p.resolve()) for p in images), Counter()


def _penn_image_size(mat: dict, path: Path, frame_paths, x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(W, H): ``dimensions`` (h, w, T), else the first frame's header, else the extent
    of the (1-based) keypoints."""
    if "dimensions" in mat:
        dims = np.asarray(mat["dimensions"]).reshape(-1)
        check(dims.size >= 2 and bool((dims[:2] > 0).all()), path,
              f"dimensions must be (height, width, frames), got {dims.tolist()}")
        return int(dims[1]), int(dims[0])
    if frame_paths:
        return read_image_size(frame_paths[0])
    return max(1, int(np.ceil(x.max()))), max(1, int(np.ceil(y.max())))


def _penn_video(path: Path, *, heatmap: int, noise: float, seed: int, min_frames: int,
                estimator: BlazePose | None) -> tuple[Video | None, Counter]:
    mat = _load_mat(path)
    x, y, v = _penn_joints(mat, path)
    t = len(x)
    check(t >= min_frames, path, f"video has {t} frames, shorter than a window of {min_frames}")
    frame_paths, counts = _penn_frames(path, t)
    image_size = _penn_image_size(mat, path, frame_paths, x, y)
    src, dst = np.array(list(PENN_TO_TEMPORAL)), np.array(list(PENN_TO_TEMPORAL.values()))
    kp = np.zeros((t, K, 3))
    kp[:, dst, 0] = x[:, src] - 1.0  # MATLAB 1-based -> 0-based pixels
    kp[:, dst, 1] = y[:, src] - 1.0
    kp[:, dst, 2] = np.where(v[:, src] > 0, 2, 0)
    kp, _, masked = _mask_unusable(kp, image_size)
    boxes = None
    if "bbox" in mat and np.asarray(mat["bbox"]).shape == (t, 4):
        boxes = np.asarray(mat["bbox"], dtype=np.float64) - 1.0  # x1 y1 x2 y2, 1-based
    split = None
    if "train" in mat:
        split = "train" if int(np.asarray(mat["train"]).reshape(-1)[0]) == 1 else "test"
    if estimator is not None and frame_paths is not None:   # the study's setting: a real estimator
        video = _estimated_video(path, kp, _mask_from(dst), frame_paths, heatmap=heatmap, split=split,
                                 estimator=estimator)
        if video is None:
            return None, counts + masked + Counter({"Penn Action videos in which BlazePose found nobody": 1})
        return video, counts + masked
    video = _simulated_video(path.stem, kp, _mask_from(dst), image_size, boxes=boxes, heatmap=heatmap,
                             noise=noise, seed=_stable_seed(seed, path.stem), source="penn_action",
                             path=path, split=split, frame_paths=frame_paths)
    return video, counts + masked


def _estimated_video(path: Path, kp: np.ndarray, mask: np.ndarray, frame_paths: tuple[str, ...], *,
                     heatmap: int, split: str | None, estimator: BlazePose) -> Video | None:
    """A Penn Action video whose heatmaps come from BlazePose on its own frames."""
    frames = (np.asarray(open_image(f)) for f in frame_paths)
    poses = estimate_frames(frames, estimator=estimator, total=len(frame_paths))
    kp = kp.copy()
    kp[:, ~mask] = 0.0
    video = video_from_poses(poses, vid=path.stem, heatmap=heatmap, keypoints=kp, frame_paths=frame_paths,
                             source="penn_action")
    if video is not None:
        video.joint_mask, video.path, video.split = mask, path.resolve(), split
    return video


def read_penn_action(mat_paths: Iterable[str | Path], *, heatmap: int = 64, noise: float = 1.0, seed: int = 0,
                     min_frames: int = WINDOW, estimator: str = "auto") -> Read:
    """Penn Action videos (``labels/NNNN.mat``, conventions in the module docstring).

    ``estimator``: "auto" runs BlazePose on a video's frames when ``frames/NNNN/`` is there
    (about 20 ms a frame on a CPU: convert the dataset once with ``convert_dataset``) and
    simulates the heatmaps of a video without frames, saying so once; "simulated" always
    simulates (``heatmap`` and ``noise`` set the simulation)."""
    paths = [Path(p) for p in mat_paths]
    blazepose = None
    if estimator == "auto" and any(p.parent.parent.joinpath("frames", p.stem).is_dir() for p in paths):
        if not heatmap_side_ok(heatmap):
            raise DataError(paths[0], f"BlazePose heatmaps are 64 px: the heatmap size must be 64, 32 or 16, "
                                      f"not {heatmap}")
        blazepose = BlazePose()
    videos, files, counts = [], [], Counter()
    for p in tqdm(paths, desc="Penn Action", unit="video", disable=blazepose is None, leave=False):
        video, c = _penn_video(p, heatmap=heatmap, noise=noise, seed=seed, min_frames=min_frames,
                               estimator=blazepose)
        if video is not None:
            videos.append(video)
        files.append(p)
        counts += c
    simulated = [v for v in videos if v.estimator == "simulated"]
    if simulated and estimator == "auto":
        print(f"Penn Action: {len(simulated)} of {len(videos)} video(s) have no frames/ folder beside labels/: "
              "their heatmaps are simulated (core.synthetic.estimator), not BlazePose's", file=sys.stderr)
    return Read(videos, files, counts)


def load_penn_action(mat_path: str | Path, *, heatmap: int = 64, noise: float = 1.0, seed: int = 0,
                     min_frames: int = WINDOW, estimator: str = "simulated") -> Video:
    """One Penn Action video (``labels/NNNN.mat``) with a simulated estimator's heatmaps.

    Keypoints are 0-based image px in TEMPORAL25 (12 joints, the head top not read),
    masked outside the frame and in broken frames; ``split`` from ``train``;
    ``frame_paths`` from ``frames/NNNN/`` when it is there (module docstring).
    """
    read = read_penn_action([mat_path], heatmap=heatmap, noise=noise, seed=seed, min_frames=min_frames,
                            estimator=estimator)
    check(bool(read.videos), mat_path, "BlazePose found nobody in any frame")
    return read.videos[0]


# ----------------------------------------------------------------------------- BRACE

def _brace_frame(key: str, path: Path) -> int:
    # keys look like "video_id/img-000123.png"; plain integers are accepted too
    stem = key.rsplit("/", 1)[-1].split(".")[0].removeprefix("img-")
    try:
        return int(stem)
    except ValueError:
        raise DataError(path, f"frame key {key!r} has no frame number") from None


def _brace_group(path: Path) -> str:
    """The YouTube id of "<video_id>_<start>-<end>_<movement>" (ids may hold _ and -)."""
    parts = path.stem.rsplit("_", 2)
    return parts[0] if len(parts) == 3 and "-" in parts[1] else path.stem


def _brace_entries(data: dict, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A segment's frames sorted by number: numbers (T,), keypoints (T, K, 3) in image
    px with visibility 2 where finite, boxes (T, 4) xyxy (NaN where w or h <= 0)."""
    frames = sorted((_brace_frame(key, path), val) for key, val in data.items())
    coco, tmp = np.array(list(COCO_TO_TEMPORAL)), np.array(list(COCO_TO_TEMPORAL.values()))
    numbers, kps, boxes = [], np.zeros((len(frames), K, 3)), []
    for i, (number, val) in enumerate(frames):
        try:
            kp = np.asarray(val["keypoints"], dtype=np.float64)
            box = np.asarray(val["box"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            raise DataError(path, f"frame {number}: needs 'keypoints' (17 x 3) and 'box' (x, y, w, h, score)") from None
        check(kp.shape == (17, 3) and box.shape[0] >= 4, path,
              f"frame {number}: keypoints must be 17 x 3 and box x, y, w, h[, score]")
        kps[i, tmp] = _coco_to_temporal(kp[coco, :2])
        numbers.append(number)
        ok = box[2] > 0 and box[3] > 0
        boxes.append([box[0], box[1], box[0] + box[2], box[1] + box[3]] if ok else [np.nan] * 4)
    return np.array(numbers), kps, np.array(boxes)


def _coco_to_temporal(xy: np.ndarray) -> np.ndarray:
    """(J, 2) px -> (J, 3) x, y, visibility (2 where finite, else 0 at the origin)."""
    finite = np.isfinite(xy).all(-1)
    return np.concatenate([np.nan_to_num(xy), np.where(finite, 2.0, 0.0)[:, None]], -1)


def brace_manual_index(paths: Iterable[str | Path]) -> dict[str, dict[int, Path]]:
    """BRACE manual keypoint files by YouTube id (their folder) and frame number."""
    index: dict[str, dict[int, Path]] = {}
    for p in map(Path, paths):
        number = p.stem.removeprefix("img-")
        check(p.stem.startswith("img-") and number.isdigit(), p,
              "BRACE manual keypoints must be named img-NNNNNN.npz (the frame number)")
        index.setdefault(p.parent.name, {})[int(number)] = p
    return index


def load_brace_manual(path: str | Path) -> np.ndarray:
    """One BRACE manual keypoints file -> (17, 2) float64 image px, COCO-17 order."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            check(BRACE_MANUAL_ARRAY in z.files, path, f"missing array '{BRACE_MANUAL_ARRAY}' "
                  f"(has: {', '.join(sorted(z.files)) or 'none'})")
            arr = z[BRACE_MANUAL_ARRAY]
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(path, f"not a readable .npz of plain arrays ({exc})") from None
    check(arr.shape == (17, 3) and arr.dtype.kind in "fiu", path,
          f"{BRACE_MANUAL_ARRAY} must be (17, 3) numbers (COCO-17 x, y, unused), got {arr.shape} {arr.dtype}")
    return arr[:, :2].astype(np.float64)


def _brace_segment(path: Path, manual: Mapping[str, Mapping[int, Path]], *, heatmap: int, noise: float,
                   seed: int, image_size, min_frames: int) -> tuple[list[Video], Counter, set[Path]]:
    """One segment JSON -> its videos, counts and the manual keypoint files it used."""
    data = read_json(path)
    check(isinstance(data, dict) and data, path, "expected a non-empty object keyed by frame")
    numbers, kps, boxes = _brace_entries(data, path)
    first_key = min(data)
    youtube_id = first_key.split("/")[0] if "/" in first_key else _brace_group(path)
    mine = manual.get(youtube_id, {})
    used = np.array([n in mine for n in numbers], bool)
    coco, tmp = np.array(list(COCO_TO_TEMPORAL)), np.array(list(COCO_TO_TEMPORAL.values()))
    for i in np.flatnonzero(used):
        kps[i, tmp] = _coco_to_temporal(load_brace_manual(mine[numbers[i]])[coco])
    kps, broken, counts = _mask_unusable(kps, image_size)
    boxes[broken] = np.nan  # BRACE's box comes from its keypoints: broken with them
    mask = _mask_from(tmp)
    videos = []
    breaks = np.flatnonzero(np.diff(numbers) != 1) + 1
    for part in np.split(np.arange(len(numbers)), breaks):
        if len(part) < min_frames:
            counts[SHORT_RUN] += 1
            continue
        first = int(numbers[part[0]])
        vid = path.stem if len(breaks) == 0 else f"{path.stem}@{first}"
        videos.append(_simulated_video(vid, kps[part], mask, image_size, boxes=boxes[part],
                                       heatmap=heatmap, noise=noise, seed=_stable_seed(seed, vid),
                                       source="brace", path=path, first_frame=first - 1))
        videos[-1].group = _brace_group(path)
        counts[MANUAL_USED] += int(used[part].sum())
    return videos, +counts, {mine[n] for n in numbers[used]}


def read_brace(segments: Iterable[str | Path], manual: Iterable[str | Path] = (), *, heatmap: int = 64,
               noise: float = 1.0, seed: int = 0, image_size: tuple[int, int] = BRACE_IMAGE_SIZE,
               min_frames: int = WINDOW) -> Read:
    """BRACE segment JSONs, with manual keypoint .npz files where there are some
    (conventions in the module docstring). ``files``: the segments and the manual
    keypoint files used."""
    index = brace_manual_index(manual)
    videos, files, counts, used = [], [], Counter(), set()
    for p in map(Path, segments):
        got, c, u = _brace_segment(p, index, heatmap=heatmap, noise=noise, seed=seed, image_size=image_size,
                                   min_frames=min_frames)
        videos += got
        files.append(p)
        counts += c
        used |= u
    counts += _counts({MANUAL_UNMATCHED: sum(len(f) for f in index.values()) - len(used)})
    return Read(videos, files + sorted(used), counts)


def load_brace(json_path: str | Path, *, heatmap: int = 64, noise: float = 1.0, seed: int = 0,
               image_size: tuple[int, int] = BRACE_IMAGE_SIZE, min_frames: int = WINDOW) -> list[Video]:
    """One BRACE segment JSON -> videos with a simulated estimator's heatmaps.

    COCO's eyes are dropped, the 15 other joints map into TEMPORAL25 (the rest masked);
    keypoints outside the 1920x1080 frame and broken frames are masked; a gap in the
    frame numbers starts a new video (``<stem>@<BRACE frame number>``), runs shorter
    than a window are skipped (module docstring).
    """
    return read_brace([json_path], heatmap=heatmap, noise=noise, seed=seed, image_size=image_size,
                      min_frames=min_frames).videos


def is_brace_segment(path: str | Path) -> bool | None:
    """Whether a .json is a BRACE segment, from its first key: True for a frame id
    ("<video>/img-000123.png" or a number), False for another object (a BRACE download's
    audio_beats.json, shot_boundaries.json), None when it cannot tell (not an object,
    empty, unreadable): reading it as a segment then names the problem."""
    try:
        with open(path, "rb") as f:
            head = f.read(256).decode("utf-8", "replace").lstrip()
    except OSError:
        return None
    key = head[1:].lstrip()
    if not head.startswith("{") or not key.startswith('"'):
        return None
    key = key.split('"')[1]
    return "img-" in key or key.isdigit()
