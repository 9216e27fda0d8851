"""Synthetic sequence datasets: the animated body of ``core.synthetic.motion`` through an
estimator, written as a dataset folder (``python -m core synth sequences``)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.errors import DataError
from core.synthetic.estimator import simulate_estimator
from core.synthetic.motion import animate, movement_for
from core.temporal.sequences import _check_out, write_dataset
from core.temporal.videos import WINDOW, K, Video
from core.temporal.windows import identity_pck


def write_sequence_dataset(out: str | Path, *, videos: int = 40, frames: int = 60, seed: int = 0,
                           heatmap: int = 64, noise: float = 1.0, progress: bool = True) -> dict:
    """Synthetic videos (``core.synthetic.motion``) + simulated estimator -> a dataset folder.

    Deterministic for a seed. Returns a summary dict (also printed): counts per
    movement, frames, heatmap size, seconds and the estimator's identity PCK.
    """
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
                          joint_mask=np.ones(K, bool), image_size=clip.image_size, source="synthetic",
                          estimator="simulated"))
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
