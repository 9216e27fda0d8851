"""Synthetic sequence datasets (``python -m core synth sequences``): the animated body of
``core.synthetic.motion`` through an estimator, written as a dataset folder.

Two estimators:

* ``blazepose`` (the default): every frame is rendered (``core.synthetic.videos``: one
  room, one person's look and a camera path per video), saved as a JPEG beside the video's
  ``.npz`` (``frame_paths``), and run through BlazePose (``core.temporal.estimate``); the
  ground truth is what the renderer drew. One process per CPU renders and estimates whole
  videos; the output does not depend on how many.
* ``simulated``: no frames; heatmaps from the noise model of ``core.synthetic.estimator``
  on the clip's projected joints. Fast, with error modes under control (``--noise``): for
  tests and experiments.

Deterministic for a seed: video i draws everything from ``default_rng([seed, i])``.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.errors import DataError
from core.estimator.blazepose import BlazePose
from core.synthetic.estimator import simulate_estimator
from core.synthetic.motion import IMAGE_SIZE, animate, movement_for
from core.synthetic.videos import render_clip
from core.temporal.blazepose_videos import estimate_frames, heatmap_side_ok, saved, video_from_poses
from core.temporal.sequences import discard_staging, staging_folder, write_dataset
from core.temporal.videos import WINDOW, K, Video
from core.temporal.windows import identity_pck

ESTIMATORS = ("blazepose", "simulated")
_WORKER: dict = {}          # the per-process estimator (LiteRT interpreters are made after the fork)


def _simulated_video(seed: int, i: int, frames: int, heatmap: int, noise: float,
                     image_size: tuple[int, int]) -> Video:
    rng = np.random.default_rng([seed, i])
    movement = movement_for(i)
    clip = animate(movement, frames, rng, image_size=image_size)
    hm, boxes = simulate_estimator(clip.keypoints, heatmap=heatmap, noise=noise, seed=rng)
    return Video(id=f"{i:04d}_{movement}", heatmaps=hm, boxes=boxes, keypoints=clip.keypoints.astype(np.float32),
                 joint_mask=np.ones(K, bool), image_size=clip.image_size, source="synthetic",
                 estimator="simulated")


def _rendered_video(task: tuple) -> tuple[str, Video | None]:
    """One video rendered into ``staged/videos/<id>/`` and run through BlazePose."""
    seed, i, frames, heatmap, image_size, staged = task
    rng = np.random.default_rng([seed, i])
    movement = movement_for(i)
    vid = f"{i:04d}_{movement}"
    clip = animate(movement, frames, rng, image_size=image_size)
    truth: list[np.ndarray] = []

    def images():
        for f in render_clip(clip, rng):
            truth.append(f.keypoints)
            yield f.image
    if "estimator" not in _WORKER:
        _WORKER["estimator"] = BlazePose(num_threads=1)
    poses = estimate_frames(saved(images(), Path(staged) / "videos" / vid), estimator=_WORKER["estimator"])
    video = video_from_poses(poses, vid=vid, heatmap=heatmap, keypoints=np.stack(truth), source="synthetic",
                             frame_paths=[f"{vid}/{t:06d}.jpg" for t in range(frames)])
    return vid, video


@dataclass(frozen=True)
class SequenceSpec:
    """What ``python -m core synth sequences`` writes (the output is a pure function of it)."""
    videos: int = 40                       # clips; video i draws from default_rng([seed, i])
    frames: int = 60                       # frames per clip
    seed: int = 0
    heatmap: int = 64                      # heatmap side (BlazePose: 64, or 32 / 16 pooled from it)
    noise: float = 1.0                     # the simulated estimator's error scale (blazepose: unused)
    estimator: str = "blazepose"           # "blazepose" (frames rendered) or "simulated" (no frames)
    image_size: tuple[int, int] = IMAGE_SIZE   # rendered frame size (W, H)


def write_sequence_dataset(out: str | Path, spec: SequenceSpec = SequenceSpec(), *, workers: int | None = None,
                           progress: bool = True, on_progress=None) -> dict:
    """Synthetic videos through ``spec.estimator`` -> a dataset folder (see the module docstring).

    Returns a summary dict (also printed): counts per movement, frames, heatmap size,
    seconds, the estimator's identity PCK, and videos skipped because BlazePose found
    nobody in any frame. ``on_progress(fraction)`` follows the videos (the demo's bar)."""
    # One piece: the staging folder, the worker pool and the final rename share one cleanup path.
    videos, frames, seed, heatmap, noise = spec.videos, spec.frames, spec.seed, spec.heatmap, spec.noise
    estimator, image_size = spec.estimator, spec.image_size
    if estimator not in ESTIMATORS:
        raise DataError(out, f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if videos < 1 or frames < WINDOW:
        raise DataError(out, f"need at least 1 video of at least {WINDOW} frames (got {videos} x {frames})")
    if heatmap < 8 or (estimator == "blazepose" and not heatmap_side_ok(heatmap)):
        raise DataError(out, f"heatmap size {heatmap} does not fit the {estimator} estimator "
                             f"({'16, 32 or 64' if estimator == 'blazepose' else '>= 8'})")
    t0 = time.perf_counter()
    staged = staging_folder(out)        # fails at once on an `out` that is not a dataset
    made: list[Video] = []
    skipped = 0
    pool = None
    try:
        if estimator == "simulated":
            results = (((v := _simulated_video(seed, i, frames, heatmap, noise, image_size)).id, v)
                       for i in range(videos))
        else:
            tasks = [(seed, i, frames, heatmap, tuple(image_size), str(staged)) for i in range(videos)]
            n = workers or min(videos, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count() or 1)
            pool = multiprocessing.get_context("fork").Pool(n) if n > 1 else None
            results = pool.imap(_rendered_video, tasks) if pool else map(_rendered_video, tasks)
        for done, (vid, video) in enumerate(tqdm(results, total=videos, desc="synth sequences", unit="video",
                                                 disable=not progress, file=sys.stderr), 1):
            if video is None:
                skipped += 1
                shutil.rmtree(staged / "videos" / vid, ignore_errors=True)
            else:
                made.append(video)
            if on_progress is not None:
                on_progress(done / videos)
        if not made:
            raise DataError(out, "the estimator found nobody in any frame of any video")
    except BaseException:
        discard_staging(staged)
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    pck = identity_pck(made)
    settings = {"videos": videos, "frames": frames, "seed": seed, "heatmap": heatmap, "estimator": estimator,
                "image_size": list(image_size), **({"noise": noise} if estimator == "simulated" else {})}
    index = write_dataset(out, made, meta={"generator": settings}, staged=staged)
    counts: dict[str, int] = {}
    for v in made:
        counts[v.id.split("_", 1)[1]] = counts.get(v.id.split("_", 1)[1], 0) + 1
    found = float(np.mean([v.found.mean() if v.found is not None else 1.0 for v in made]))
    summary = {"out": str(index.parent), **settings, "movements": counts, "identity_pck": pck,
               "frames_with_a_person": round(found, 4), "videos_skipped_nobody_found": skipped,
               "seconds": round(time.perf_counter() - t0, 2)}
    if progress:
        print(f"wrote {len(made)} videos x {frames} frames ({heatmap}px heatmaps, {estimator} estimator) to "
              f"{index.parent} in {summary['seconds']} s; estimator PCK@0.05/0.1/0.2 = "
              + "/".join(f"{pck[a]:.3f}" for a in ("0.05", "0.1", "0.2"))
              + (f"; a person found in {found:.1%} of the frames" if estimator == "blazepose" else "")
              + (f"; {skipped} video(s) skipped: nobody found" if skipped else ""))
    return summary
