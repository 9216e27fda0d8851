"""BlazePose's output as sequence videos: the real estimator the temporal models refine.

``video_from_poses`` turns ``core.estimator.blazepose.VideoPoses`` into a ``Video`` of the
sequence format: the 25 TEMPORAL25 heatmaps (raw logits, optionally average-pooled to a
smaller side), the heatmap -> image affine of every frame (BlazePose's crop is rotated,
so the axis-aligned box mapping cannot describe it), the person's box, and ``found``.
Frames where nobody was found keep zero heatmaps (the models see nothing there, and the
identity baseline counts them as misses); their box and affine repeat the nearest found
frame's, so the ground truth can still be placed in heatmap pixels.

``estimate_video_file`` is ``python -m core estimate``: a user's video (or a folder of
frames) through BlazePose, written as a sequence dataset without ground truth.

Coordinate conventions: the estimator's heatmap coordinates put the centre of heatmap
pixel u at u + 0.5 (``core.estimator.geometry``); the sequence format's at u. The affines
stored here take the sequence format's (``core.temporal.videos``).
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from core.errors import DataError
from core.estimator.blazepose import BlazePose, VideoPoses
from core.estimator.video import open_frames
from core.temporal.heatmaps import pool_heatmaps
from core.temporal.sequences import _safe_name, staging_folder, write_dataset
from core.temporal.videos import WINDOW, K, Video

NATIVE = 64                 # BlazePose's heatmap side
JPEG_QUALITY = 90


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
    maps, affines = pool_heatmaps(np.asarray(poses.heatmaps, np.float32), affines, NATIVE // heatmap)
    maps[~found] = 0.0
    boxes = _fill(np.asarray(poses.box, np.float32), found)
    return Video(id=vid, heatmaps=maps.astype(np.float16), boxes=boxes.astype(np.float32),
                 keypoints=None if keypoints is None else np.asarray(keypoints, np.float32),
                 joint_mask=np.ones(K, bool), image_size=tuple(int(v) for v in poses.image_size),
                 frame_paths=None if frame_paths is None else tuple(frame_paths), source=source,
                 estimator=f"blazepose {poses.model_version}", heatmap_affine=affines.astype(np.float32),
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


def estimate_video_file(*, out: str | Path, video: str | Path | None = None, frames: str | Path | None = None,
                        fps: float | None = None, heatmap: int = NATIVE, progress: bool = True) -> Path:
    """``python -m core estimate``: BlazePose on a video file or a folder of frames,
    written to ``out`` as a sequence dataset (``index.json`` + ``videos/<name>.npz`` +
    the frames as JPEG in ``videos/<name>/``), without ground truth.

    Nothing is left behind on error: the dataset is built in a temporary folder beside
    ``out`` and renamed into place at the end. A file that is not a video, a video without
    frames, or one in which nobody is found is one DataError naming the file."""
    if (video is None) == (frames is None):
        raise DataError(None, "give one of --video FILE or --frames DIR")
    src_path = Path(video if video is not None else frames)
    if not heatmap_side_ok(heatmap):
        raise DataError(src_path, f"--heatmap must be {NATIVE}, 32 or 16 for BlazePose's {NATIVE}-px heatmaps")
    source = open_frames(src_path, fps=fps)          # DataError for what cannot be read
    if source.frame_count is not None and source.frame_count < WINDOW:
        raise DataError(src_path, f"has {source.frame_count} frames; the temporal models need at least {WINDOW}")
    name = _safe_name(re.sub(r"\.[^.]+$", "", src_path.name) or "video")
    t0 = time.perf_counter()
    tmp = staging_folder(out)
    try:
        poses = estimate_frames(saved(source, tmp / "videos" / name), total=source.frame_count,
                                progress=progress)
        n = 0 if poses is None else len(poses)
        if n < WINDOW:
            raise DataError(src_path, f"has {n} frames; the temporal models need at least {WINDOW}")
        v = video_from_poses(poses, vid=name, heatmap=heatmap, source="user",
                             frame_paths=[f"{name}/{i:06d}.jpg" for i in range(n)])
        if v is None:
            raise DataError(src_path, f"BlazePose found nobody in any of its {n} frames")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index = write_dataset(out, [v], staged=tmp,
                          meta={"estimated_from": str(src_path.resolve()), "fps": source.fps})
    if progress:
        print(f"wrote {index.parent}: {v.num_frames} frames of {src_path.name}, a person found in "
              f"{int(v.found.sum())}, in {time.perf_counter() - t0:.1f} s")
    return index.parent
