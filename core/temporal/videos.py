"""One video of a sequence dataset: the ``.npz`` format (``load_video`` / ``save_video``).

One video = one ``.npz`` file (``np.savez``; never pickled objects), keypoint order
``core.keypoints.TEMPORAL25``. It is what ``python -m core synth sequences`` writes and the
format for a user's own estimator output; the arrays are documented in
``docs/ARCHITECTURE.md`` ("Sequence datasets") and checked by ``load_video``:

==============  =================  ==========================================================
array           shape / dtype      meaning
==============  =================  ==========================================================
heatmaps        (T, 25, H, W)      the estimator's raw output per frame (float16/32; negative
                float              values allowed, preprocessing clips them). T >= 5.
boxes           (T, 4) float       the estimator's predicted person box per frame, xyxy in
                                   image pixels; the heatmaps cover exactly this box
                                   (top-down), see ``core.heatmaps`` for the mapping.
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
frame_paths     (T,) str           optional: image file per frame (relative to the file,
                                   or absolute).
estimator       () str             optional: what made the heatmaps, e.g. "simulated".
heatmap_affine  (T, 2, 3) float    optional: heatmap pixel (u, v) -> image pixel (x, y), for
                                   an estimator whose crop is rotated (BlazePose): x, y =
                                   A @ (u, v, 1), pixel centres at integer u, v. When given
                                   it replaces the box mapping; ``boxes`` is then the
                                   person's box for display.
found           (T,) bool          optional: frames where the estimator found a person
                                   (default all). The heatmaps of the others are zeros and
                                   their box/affine repeat the nearest found frame's.
==============  =================  ==========================================================
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.heatmaps import box_affines
from core.io import atomic_write
from core.keypoints import TEMPORAL25

K = len(TEMPORAL25)
WINDOW = 5  # k: frames per window of the temporal models


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
    first_frame: int = 0              # 0-based position of heatmaps[0] in the original video
    group: str | None = None          # recording it belongs to; splits never cut a group
    estimator: str | None = None      # what made the heatmaps ("simulated", "blazepose ..."), if known
    heatmap_affine: np.ndarray | None = None   # (T, 2, 3) heatmap px -> image px; None = box mapping
    found: np.ndarray | None = None   # (T,) bool, frames where the estimator found a person

    @property
    def num_frames(self) -> int:
        return int(self.heatmaps.shape[0])

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return int(self.heatmaps.shape[2]), int(self.heatmaps.shape[3])

    def frames(self, start: int, stop: int, *, id: str | None = None) -> "Video":
        """Frames ``start:stop`` as a video of their own (arrays are views)."""
        sl = slice(start, stop)
        part = lambda a: None if a is None else a[sl]   # noqa: E731
        return replace(self, id=id or f"{self.id}[{start}:{stop}]", heatmaps=self.heatmaps[sl],
                       boxes=self.boxes[sl], keypoints=part(self.keypoints), frame_paths=part(self.frame_paths),
                       heatmap_affine=part(self.heatmap_affine), found=part(self.found),
                       first_frame=self.first_frame + start)

    def affines(self) -> np.ndarray:
        """(T, 2, 3) heatmap pixel -> image pixel, for every frame (from the boxes when the
        video has no ``heatmap_affine``)."""
        if self.heatmap_affine is not None:
            return self.heatmap_affine
        return box_affines(self.boxes, self.heatmap_size)


def check(cond: bool, path, problem: str) -> None:
    """DataError(path, problem) unless ``cond``: the readers' one-line validation."""
    if not cond:
        raise DataError(path, problem)


def npz_arrays(path: str | Path) -> tuple[str, ...]:
    """The names of the arrays in an .npz (reads its zip directory, no array data);
    an unreadable file -> DataError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return tuple(z.files)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(path, f"not a readable .npz of plain arrays ({exc})") from None


def load_video(path: str | Path, *, min_frames: int = WINDOW) -> Video:
    """Read and validate one video .npz; any problem -> DataError naming the file."""
    # The .npz contract checked array by array, top to bottom, each check one line naming the
    # problem.
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(path, f"not a readable .npz of plain arrays ({exc})") from None
    for name in ("heatmaps", "boxes"):
        check(name in arrays, path, f"missing array '{name}' (has: {', '.join(sorted(arrays)) or 'none'})")
    hm = arrays["heatmaps"]
    check(hm.ndim == 4 and hm.shape[1] == K, path,
           f"heatmaps must be (T, {K}, H, W) in TEMPORAL25 order, got {hm.shape}")
    check(hm.dtype.kind == "f", path, f"heatmaps must be float, got {hm.dtype}")
    t, _, h, w = hm.shape
    check(h >= 4 and w >= 4, path, f"heatmaps of {h}x{w} pixels are too small")
    check(t >= min_frames, path, f"video has {t} frames, shorter than a window of {min_frames}")
    if hm.dtype == np.float64:
        hm = hm.astype(np.float32)
    check(bool(np.isfinite(hm).all()), path, "heatmaps contain NaN or infinite values")
    boxes = arrays["boxes"]
    check(boxes.shape == (t, 4), path, f"boxes must be ({t}, 4) to match {t} heatmap frames, got {boxes.shape}")
    boxes = boxes.astype(np.float32)
    check(bool(np.isfinite(boxes).all()), path, "boxes contain NaN or infinite values")
    check(bool(((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()), path,
           "boxes must be xyxy with x1 > x0 and y1 > y0")

    keypoints = None
    if "keypoints" in arrays:
        kp = arrays["keypoints"]
        check(kp.shape == (t, K, 3), path, f"keypoints must be ({t}, {K}, 3), got {kp.shape}")
        kp = kp.astype(np.float32).copy()
        vis = np.nan_to_num(kp[..., 2], nan=0.0)
        check(bool(np.isin(vis, (0, 1, 2)).all()), path, "keypoint visibility must be 0, 1 or 2")
        check(not bool(np.isnan(kp[..., :2])[vis > 0].any()), path,
               "keypoints have NaN coordinates where visibility > 0")
        missing = vis == 0
        kp[..., :2][missing] = 0.0
        kp[..., 2] = vis
        keypoints = kp
    joint_mask = np.ones(K, bool)
    if "joint_mask" in arrays:
        jm = arrays["joint_mask"]
        check(jm.shape == (K,), path, f"joint_mask must be ({K},), got {jm.shape}")
        joint_mask = jm.astype(bool)
    if "image_size" in arrays:
        size = arrays["image_size"].reshape(-1)
        check(size.shape == (2,) and bool((size > 0).all()), path, "image_size must be (2,) positive w, h")
        image_size = (int(size[0]), int(size[1]))
    else:
        image_size = (int(np.ceil(boxes[:, 2].max())), int(np.ceil(boxes[:, 3].max())))
    frame_paths = None
    if "frame_paths" in arrays:
        fp = arrays["frame_paths"]
        check(fp.shape == (t,) and fp.dtype.kind == "U", path, f"frame_paths must be ({t},) strings")
        frame_paths = tuple(str(p) for p in fp)
    estimator = None
    if "estimator" in arrays:
        est = arrays["estimator"]
        check(est.shape == () and est.dtype.kind == "U", path, "estimator must be one string")
        estimator = str(est)
    affine = None
    if "heatmap_affine" in arrays:
        affine = arrays["heatmap_affine"].astype(np.float64)
        check(affine.shape == (t, 2, 3), path, f"heatmap_affine must be ({t}, 2, 3), got {affine.shape}")
        check(bool(np.isfinite(affine).all()), path, "heatmap_affine contains NaN or infinite values")
        det = affine[:, 0, 0] * affine[:, 1, 1] - affine[:, 0, 1] * affine[:, 1, 0]
        check(bool((np.abs(det) > 1e-9).all()), path, "heatmap_affine has a frame that maps to a line")
    found = None
    if "found" in arrays:
        found = arrays["found"]
        check(found.shape == (t,) and found.dtype == bool, path, f"found must be ({t},) bool")
    return Video(id=path.stem, heatmaps=hm, boxes=boxes, keypoints=keypoints, joint_mask=joint_mask,
                 image_size=image_size, frame_paths=frame_paths, path=path.resolve(), estimator=estimator,
                 heatmap_affine=affine, found=found)


def save_video(path: str | Path, video: Video) -> None:
    """Write a video as .npz, atomically (the documented format, readable by ``load_video``)."""
    arrays = {"heatmaps": video.heatmaps, "boxes": video.boxes.astype(np.float32),
              "joint_mask": video.joint_mask.astype(bool),
              "image_size": np.asarray(video.image_size, dtype=np.int32)}
    if video.keypoints is not None:
        arrays["keypoints"] = video.keypoints.astype(np.float32)
    if video.frame_paths is not None:
        arrays["frame_paths"] = np.asarray(video.frame_paths, dtype=str)
    if video.estimator:
        arrays["estimator"] = np.asarray(video.estimator, dtype=str)
    if video.heatmap_affine is not None:
        arrays["heatmap_affine"] = np.asarray(video.heatmap_affine, dtype=np.float32)
    if video.found is not None:
        arrays["found"] = np.asarray(video.found, dtype=bool)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
