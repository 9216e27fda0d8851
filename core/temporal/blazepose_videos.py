"""BlazePose's output as sequence videos: the real estimator the temporal models refine.

``video_from_poses`` turns ``core.estimator.blazepose.VideoPoses`` into a ``Video`` of the
sequence format: the 25 TEMPORAL25 heatmaps (BlazePose's logits turned into per-pixel
probabilities, optionally average-pooled to a smaller side), the heatmap -> image affine of every frame (BlazePose's crop is rotated,
so the axis-aligned box mapping cannot describe it), the person's box, and ``found``.
Frames where nobody was found keep zero heatmaps (the models see nothing there, and the
identity baseline counts them as misses); their box and affine repeat the nearest found
frame's, so the ground truth can still be placed in heatmap pixels.

Why probabilities: BlazePose's heatmap output is logits (MediaPipe's own refinement applies a
sigmoid to it), and most of a map is negative; a weak keypoint's whole map can be. The
sequence format's preprocessing sets negatives to 0, so raw logits left many maps of found
frames empty, and an empty map carries no location. ``sigmoid`` keeps every map positive
with its peak where it was (argmax is unchanged), and average pooling of probabilities
keeps their mass, which pooling logits does not. ``HEATMAPS_VERSION`` names this
conversion; it enters the estimator string of every video, so datasets made before it
are told apart (and the demo makes its videos again).

Coordinate conventions: the estimator's heatmap coordinates put the centre of heatmap
pixel u at u + 0.5 (``core.estimator.geometry``); the sequence format's at u. The affines
stored here take the sequence format's (``core.temporal.videos``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from core.estimator.blazepose import BlazePose, VideoPoses
from core.heatmaps import pool_heatmaps
from core.temporal.videos import K, Video

NATIVE = 64                 # BlazePose's heatmap side
HEATMAPS_VERSION = 2        # 2: sigmoid(logits) before pooling (1 stored the logits)
JPEG_QUALITY = 90


def probabilities(logits: np.ndarray) -> np.ndarray:
    """BlazePose's heatmap logits -> per-pixel probabilities (float32, in (0, 1))."""
    x = np.asarray(logits, np.float32)
    with np.errstate(over="ignore"):          # exp(60) overflows to inf: 1 / inf = 0
        return 1.0 / (1.0 + np.exp(-x))


def heatmap_side_ok(side: int) -> bool:
    return side in (NATIVE // 4, NATIVE // 2, NATIVE)


def index_affines(affines: np.ndarray) -> np.ndarray:
    """(T, 2, 3) estimator heatmap coordinates -> image, as the sequence format's (pixel
    centres at integers): A(u + 0.5)."""
    a = np.array(affines, np.float64)
    a[..., 2] = a[..., 2] + 0.5 * (a[..., 0] + a[..., 1])
    return a


def _fill(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) where ``found``; elsewhere the nearest found frame's (the
    earlier one on a tie). ``found`` must hold at least one True."""
    idx = np.flatnonzero(found)
    t = np.arange(len(found))
    pos = np.clip(np.searchsorted(idx, t), 0, len(idx) - 1)
    prev = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    nxt = idx[pos]
    nearest = np.where(np.abs(t - prev) <= np.abs(nxt - t), prev, nxt)
    return values[nearest]


def video_from_poses(poses: VideoPoses, *, vid: str, heatmap: int = NATIVE, keypoints: np.ndarray | None = None,
                     frame_paths: Iterable[str] | None = None, source: str = "blazepose") -> Video | None:
    """A sequence ``Video`` of BlazePose's output (see the module docstring), or None
    when nobody was found in any frame. ``keypoints`` (T, 25, 3): ground truth, if any."""
    found = np.asarray(poses.found, bool)
    if not found.any():
        return None
    if not heatmap_side_ok(heatmap):
        raise ValueError(f"BlazePose heatmaps are {NATIVE} px: --heatmap must be {NATIVE}, 32 or 16")
    affines = _fill(index_affines(poses.heatmap_affine), found)
    maps, affines = pool_heatmaps(probabilities(poses.heatmaps), affines, NATIVE // heatmap)
    maps[~found] = 0.0
    boxes = _fill(np.asarray(poses.box, np.float32), found)
    return Video(id=vid, heatmaps=maps.astype(np.float16), boxes=boxes.astype(np.float32),
                 keypoints=None if keypoints is None else np.asarray(keypoints, np.float32),
                 joint_mask=np.ones(K, bool), image_size=tuple(int(v) for v in poses.image_size),
                 frame_paths=None if frame_paths is None else tuple(frame_paths), source=source,
                 estimator=f"blazepose {poses.model_version}, heatmaps v{HEATMAPS_VERSION}", heatmap_affine=affines.astype(np.float32),
                 found=found)


def saved(frames: Iterable[np.ndarray], folder: Path) -> Iterator[np.ndarray]:
    """The frames, each written as ``folder/NNNNNN.jpg`` on its way through (a long video
    is never held in memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:06d}.jpg", quality=JPEG_QUALITY)
        yield f


def estimate_frames(frames: Iterable[np.ndarray], *, estimator: BlazePose | None = None,
                    total: int | None = None, progress: bool = False) -> VideoPoses | None:
    """BlazePose over a stream of frames (tracking one person); None for no frames.
    Heatmaps are kept as float16 per frame (205 kB), so a 10,000-frame video fits."""
    estimator = estimator or BlazePose()
    size: list[tuple[int, int]] = []

    def sized() -> Iterator[np.ndarray]:
        for f in frames:
            if not size:
                size.append((f.shape[1], f.shape[0]))
            yield f
    poses = []
    for pose in estimator.iter_video(sized(), total=total, progress=progress):
        pose.heatmaps = pose.heatmaps.astype(np.float16)
        poses.append(pose)
    return VideoPoses.stack(poses, size[0], estimator.version) if poses else None
