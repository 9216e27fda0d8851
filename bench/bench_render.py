"""Synthetic image rendering speed, one process, sizes side by side.

    .venv/bin/python bench/bench_render.py [--n 300] [--sizes 224,320] [--people-max 3]

For each size, renders ``n`` scenes exactly as ``write_image_dataset`` does (scene
sampling, drawing, PNG encoding; the file write is left out, it is the disk's speed)
and prints images/s by wall clock and by this process's CPU time, the projected time
for 1,000 images, and where the time goes. CPU time is the figure to trust on a shared
machine: wall time also counts the moments other processes hold the core. Then the
whole ``write_image_dataset`` with one process per CPU (wall clock, files written), and
forward-kinematics rates. Results are also written to ``bench/results/bench_render.json``.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tempfile

from core.io import write_json  # noqa: E402
from core.synthetic import body as B
from core.synthetic import poses
from core.synthetic.images import PNG_COMPRESS_LEVEL, SPLIT_CODE, ImageSpec, render_image, write_image_dataset  # noqa: E402
from core.synthetic.render import render_scene  # noqa: E402
from core.synthetic.scene import sample_scene  # noqa: E402


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def bench_size(size: int, n: int, people_max: int, seed: int = 0) -> dict:
    # Warm-up (imports, numpy caches) outside the measurement.
    render_image(seed, "train", 10**6, size=size, people_max=people_max)
    w0, c0 = _clock()
    for i in range(n):
        render_image(seed, "train", i, size=size, people_max=people_max)
    w1, c1 = _clock()
    # The same work in stages, to see where the time goes (CPU seconds).
    stages = {"sample_scene": 0.0, "render_scene": 0.0, "png": 0.0}
    for i in range(n):
        rng = np.random.default_rng([seed, SPLIT_CODE["train"], i])
        t0 = time.process_time()
        scene = sample_scene(rng, size=size, people_max=people_max)
        t1 = time.process_time()
        res = render_scene(scene, rng=rng)
        t2 = time.process_time()
        res.image.save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        t3 = time.process_time()
        stages["sample_scene"] += t1 - t0
        stages["render_scene"] += t2 - t1
        stages["png"] += t3 - t2
    return {
        "size": size, "n": n, "people_max": people_max,
        "images_per_s_wall": round(n / (w1 - w0), 1),
        "images_per_s_cpu": round(n / (c1 - c0), 1),
        "seconds_per_1000_wall": round(1000 * (w1 - w0) / n, 1),
        "seconds_per_1000_cpu": round(1000 * (c1 - c0) / n, 1),
        "ms_per_image_cpu": {k: round(1000 * v / n, 2) for k, v in stages.items()},
    }


def bench_pool(size: int, n: int, people_max: int) -> dict:
    """write_image_dataset end to end (files included) with one process per CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = write_image_dataset(Path(tmp) / "ds", ImageSpec(n_train=n, n_test=0 if n > 1 else 1, seed=0,
                                                                  size=size, people_max=people_max), progress=False)
        wall = time.perf_counter() - t0
    return {"size": size, "n": n, "workers": summary["workers"], "images_per_s_wall": round(n / wall, 1)}


def bench_kinematics(n: int = 2000) -> dict:
    """Forward kinematics calls/s (one pose per call, and frames/s batched), and
    sample_pose calls/s (with the two-support levelling of plank-like poses)."""
    rng = np.random.default_rng(0)
    shape = B.sample_shape(rng)
    angles = rng.uniform(-1, 1, (n, len(B.ALL_JOINTS), 3))
    t0 = time.process_time()
    for p in angles:
        B.joint_positions(shape, p)
    t1 = time.process_time()
    B.joint_positions(shape, angles)
    t2 = time.process_time()
    classes = poses.CLASS_NAMES
    for i in range(n // 4):
        poses.sample_pose(classes[i % len(classes)], rng, shape=shape)
    t3 = time.process_time()
    return {"fk_calls_per_s": round(n / (t1 - t0)), "fk_batched_frames_per_s": round(n / max(t2 - t1, 1e-9)),
            "sample_pose_calls_per_s": round((n // 4) / (t3 - t2))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="images per size")
    ap.add_argument("--sizes", default="224,320")
    ap.add_argument("--people-max", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_render.json")
    args = ap.parse_args()
    rows = [bench_size(int(s), args.n, args.people_max) for s in args.sizes.split(",")]
    print(f"{'size':>5} {'img/s wall':>11} {'img/s cpu':>10} {'1000 img wall s':>16} "
          f"{'1000 img cpu s':>15}  cpu ms/img: sample / render / png")
    for r in rows:
        st = r["ms_per_image_cpu"]
        print(f"{r['size']:>5} {r['images_per_s_wall']:>11} {r['images_per_s_cpu']:>10} "
              f"{r['seconds_per_1000_wall']:>16} {r['seconds_per_1000_cpu']:>15}  "
              f"{st['sample_scene']} / {st['render_scene']} / {st['png']}")
    pool = bench_pool(int(args.sizes.split(",")[0]), args.n, args.people_max)
    print(f"write_image_dataset, {pool['workers']} processes, {pool['size']} px: "
          f"{pool['images_per_s_wall']} images/s wall (PNG files written)")
    kin = bench_kinematics()
    print(f"forward kinematics: {kin['fk_calls_per_s']} calls/s one pose at a time, "
          f"{kin['fk_batched_frames_per_s']} frames/s batched; "
          f"sample_pose: {kin['sample_pose_calls_per_s']} calls/s (cpu time)")
    write_json(args.out, {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"load average {os.getloadavg()[0]:.2f} at the end",
        "python": platform.python_version(), "results": rows, "pool": pool, "kinematics": kin,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
