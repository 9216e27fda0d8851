"""``python -m core estimate``: a user's video (or a folder of frames) through BlazePose,
written as a sequence dataset without ground truth (frames + heatmaps), ready for
``python -m core refine`` and the dashboard's Sequences page. The conversion of
BlazePose's output is ``core.temporal.blazepose_videos``.

The video is checked, not trusted (``core.estimator.video``): a cut or damaged file is
refused, or with ``allow_truncated`` its frames before the damage are used and the
problem is printed and recorded in index.json (``warnings``). Re-estimating into a
dataset folder keeps the files estimate did not write there (notes), and refuses while
it holds refine's ``refined-*.csv`` / ``.npz``: those results were made from the frames
being replaced, so they are neither deleted nor left beside a dataset they do not
describe (``core.temporal.sequences.write_dataset``).
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from core.errors import DataError
from core.estimator.video import open_frames
from core.temporal.blazepose_videos import NATIVE, estimate_frames, heatmap_side_ok, saved, video_from_poses
from core.temporal.sequences import _safe_name, check_out, discard_staging, staging_folder, write_dataset
from core.temporal.videos import WINDOW


def estimate_video_file(*, out: str | Path, video: str | Path | None = None, frames: str | Path | None = None,
                        fps: float | None = None, heatmap: int = NATIVE, progress: bool = True,
                        allow_truncated: bool = False) -> Path:
    """``python -m core estimate``: BlazePose on a video file or a folder of frames,
    written to ``out`` as a sequence dataset (``index.json`` + ``videos/<name>.npz`` +
    the frames as JPEG in ``videos/<name>/``), without ground truth.

    Nothing is left behind on error: the dataset is built in a temporary folder beside
    ``out`` and renamed into place at the end. A file that is not a video, a cut or
    damaged one (unless ``allow_truncated``), a video without frames, or one in which
    nobody is found is one DataError naming the file; so is an ``out`` holding results
    refined from the dataset there (checked first, see the module docstring)."""
    if (video is None) == (frames is None):
        raise DataError(None, "give one of --video FILE or --frames DIR")
    src_path = Path(video if video is not None else frames)
    if not heatmap_side_ok(heatmap):
        raise DataError(src_path, f"--heatmap must be {NATIVE}, 32 or 16 for BlazePose's {NATIVE}-px heatmaps")
    check_out(out)                                   # refused before any work
    source = open_frames(src_path, fps=fps, allow_truncated=allow_truncated)   # DataError for what cannot be read
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
        discard_staging(tmp)
        raise
    warnings = [f"{w}; kept the {n} frames before the damage (--allow-truncated)" for w in source.warnings]
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr, flush=True)
    meta = {"estimated_from": str(src_path.resolve()), "fps": source.fps}
    if warnings:
        meta.update(declared_frames=source.frame_count, warnings=warnings)
    index = write_dataset(out, [v], staged=tmp, meta=meta)
    if progress:
        print(f"wrote {index.parent}: {v.num_frames} frames of {src_path.name}, a person found in "
              f"{int(v.found.sum())}, in {time.perf_counter() - t0:.1f} s"
              + (f" ({len(warnings)} warning(s), recorded in index.json)" if warnings else ""))
    return index.parent

