"""BlazePose estimator (``core.estimator``) on this CPU: speed and accuracy on rendered people.

    .venv/bin/python bench/bench_estimator.py [--clips 10] [--frames 10] [--images 80] [--threads 2]

* **Clips**: ``--clips`` single-person exercise clips of ``--frames`` frames (320 x 320):
  the renderer's room, person and camera fixed, the body moving through the exercise's
  phases. Each clip goes through ``estimate_video`` twice, tracking (detector on the
  first frame and when the person is lost) and detector-every-frame; frames/s by wall
  clock (best of 3 runs) and CPU seconds per frame. The same clips upscaled into
  1280 x 720 frames give the speed on a typical user video.
* **Images**: ``--images`` random single-person scenes (256 x 256, all 15 classes, a
  quarter of them framed so tightly that limbs leave the picture), ``estimate_image``.
* **Accuracy**: PCK@0.05 / 0.1 / 0.2 against the renderer's keypoints (those inside the
  frame, visible or occluded), normaliser = the long side of the box around them, for
  TEMPORAL25 (BlazePose's 25) and COCO17; from the landmarks, and from each heatmap's
  argmax mapped to the image through the frame's affine (``heatmap_to_image``). A frame
  where nobody was found counts every keypoint as a miss. ``pooled``: over all counted
  (frame, keypoint) pairs; ``keypoint_mean``: the mean of the per-keypoint PCKs.

Results go to ``bench/results/estimator-cpu-<date>.json`` with the device, the load
average (other jobs on a shared machine slow the wall clock; CPU time is steadier) and
the model version.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.estimator import geometry as G  # noqa: E402
from core.estimator.blazepose import COCO17_FROM_BLAZEPOSE, BlazePose, temporal25_from_blazepose  # noqa: E402
from core.io import write_json  # noqa: E402
from core.keypoints import COCO17_FROM_BODY, TEMPORAL25_FROM_BODY  # noqa: E402
from core.metrics import PCK_THRESHOLDS, pck  # noqa: E402
from core.synthetic import body as B  # noqa: E402
from core.synthetic.poses import sample_pose  # noqa: E402
from core.synthetic.render import render_scene
from core.synthetic.scene import sample_scene  # noqa: E402

CLIP_CLASSES = ("squat", "jumping_jack", "lunge", "overhead_press", "bicep_curl", "warrior2", "tree",
                "pushup", "bird_dog", "crunch")


def render_clip(seed: int, frames: int, cls: str, size: int = 320):
    """(T, H, W, 3) uint8 frames and (T, len(BODY_JOINTS), 3) renderer keypoints."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, size=size, people_max=1, classes=(cls,))
    person = scene.people[0]
    person_seed = int(rng.integers(2 ** 31))
    images, truth = [], []
    for t in range(frames):
        s = sample_pose(cls, np.random.default_rng(person_seed), phase=t / frames,
                          variation=person.variation, shape=person.shape)
        joints = B.pose_body(person.shape, s.pose, s.root_rotation, (0.0, 0.0), person.heading)
        scene.people[0] = dataclasses.replace(person, joints=joints)
        res = render_scene(scene, rng=np.random.default_rng([seed, t]))
        images.append(np.asarray(res.image))
        truth.append(res.people[0].keypoints)
    return np.stack(images), np.stack(truth)


def to_720p(frame: np.ndarray) -> np.ndarray:
    """A square frame scaled to 720 x 720 in the middle of a grey 1280 x 720 frame."""
    out = np.full((720, 1280, 3), 100, np.uint8)
    out[:, 280:1000] = np.asarray(Image.fromarray(frame).resize((720, 720), Image.Resampling.BILINEAR))
    return out


def scores(landmarks33: np.ndarray, peaks25: np.ndarray, truth: np.ndarray) -> dict:
    """PCKs of (N, 33, 3) landmarks and (N, 25, 2) heatmap peaks vs (N, J, 3) truth."""
    out = {}
    sets = {"temporal25": (TEMPORAL25_FROM_BODY, temporal25_from_blazepose(landmarks33)[..., :2], peaks25),
            "coco17": (COCO17_FROM_BODY, landmarks33[:, COCO17_FROM_BLAZEPOSE, :2], None)}
    for name, (idx, lm, peaks) in sets.items():
        gt = truth[:, idx]
        vis = gt[..., 2] > 0
        pts = np.where(vis[..., None], gt[..., :2], np.nan)
        norm = np.nanmax(np.nanmax(pts, 1) - np.nanmin(pts, 1), -1)            # (N,)
        for src, pred in (("landmarks", lm), ("heatmap_argmax", peaks)):
            if pred is None:
                continue
            per_kp = pck(pred, gt[..., :2], vis, norm)                          # (A, K)
            d = np.linalg.norm(pred - gt[..., :2], axis=-1) / norm[:, None]
            d = np.where(np.isfinite(d), d, np.inf)[vis]
            out[f"{name}/{src}"] = {
                "pooled": [round(float((d <= a).mean()), 4) for a in PCK_THRESHOLDS],
                "keypoint_mean": [round(float(v), 4) for v in np.nanmean(per_kp, 1)],
            }
    return out


def stack_outputs(poses_list) -> tuple[np.ndarray, np.ndarray]:
    lm = np.concatenate([v.landmarks for v in poses_list])
    peaks = np.concatenate([G.heatmap_to_image(G.heatmap_argmax(v.heatmaps), v.heatmap_affine)
                            for v in poses_list])
    return lm, peaks


def timed_runs(bp: BlazePose, clips: list[np.ndarray], tracking: bool, repeats: int = 3):
    """Best-of-``repeats`` wall time and its CPU time over all clips; the last outputs."""
    best = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        outs = [bp.estimate_video(c, tracking=tracking, progress=False) for c in clips]
        w, c = time.perf_counter() - w0, time.process_time() - c0
        if best is None or w < best[0]:
            best = (w, c)
    n = sum(len(c) for c in clips)
    return {"frames": n, "frames_per_s_wall": round(n / best[0], 1),
            "cpu_ms_per_frame": round(1000 * best[1] / n, 2)}, outs


def stage_times(bp: BlazePose, frame: np.ndarray, n: int = 30) -> dict:
    """ms per call (wall, median of n) of the pieces of one frame."""
    roi = bp.estimate_image(frame, max_people=1)[0].roi
    def med(f):
        f()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return round(1000 * float(np.median(ts)), 2)
    h, w = frame.shape[:2]
    letterbox, crop = G.letterbox_affine(w, h), G.roi_affine(roi, 256)
    return {"detect": med(lambda: bp.detect(frame)),
            "detector_letterbox_warp": med(lambda: G.sample_affine(frame, letterbox, 224, "zero")),
            "landmarks_in_roi": med(lambda: bp.landmarks_in_roi(frame, roi)),
            "landmark_crop_warp": med(lambda: G.sample_affine(frame, crop, 256, "replicate"))}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--images", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    load_start = os.getloadavg()
    bp = BlazePose(num_threads=args.threads)
    t0 = time.perf_counter()
    clips, truths = [], []
    for i in range(args.clips):
        f, t = render_clip(100 + i, args.frames, CLIP_CLASSES[i % len(CLIP_CLASSES)])
        clips.append(f)
        truths.append(t)
    truth = np.concatenate(truths)
    render_s = time.perf_counter() - t0

    result: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "device": f"{platform.machine()} CPU, {os.cpu_count()} cores ({cpu_name()})",
                    "num_threads": args.threads, "model_version": bp.version,
                    "clips": {"n": args.clips, "frames_each": args.frames, "size": [320, 320],
                              "classes": [CLIP_CLASSES[i % len(CLIP_CLASSES)] for i in range(args.clips)],
                              "render_s": round(render_s, 1)}}
    for mode, tracking in (("tracking", True), ("detector_every_frame", False)):
        speed, outs = timed_runs(bp, clips, tracking)
        lm, peaks = stack_outputs(outs)
        found = np.concatenate([v.found for v in outs])
        det = np.concatenate([v.from_detector for v in outs])
        result[mode] = {"speed_320": speed, "found_rate": round(float(found.mean()), 4),
                        "detector_runs_share": round(float(det.mean()), 4), "pck": scores(lm, peaks, truth)}
        print(f"{mode:>22}: {speed['frames_per_s_wall']:6.1f} frames/s (320x320), "
              f"{speed['cpu_ms_per_frame']} CPU ms/frame, found {found.mean():.1%}")
    hd = [np.stack([to_720p(f) for f in c]) for c in clips]
    for mode, tracking in (("tracking", True), ("detector_every_frame", False)):
        speed, _ = timed_runs(bp, hd, tracking)
        result[mode]["speed_1280x720"] = speed
        print(f"{mode:>22}: {speed['frames_per_s_wall']:6.1f} frames/s (1280x720)")
    result["stage_ms_320"] = stage_times(bp, clips[0][0])
    result["stage_ms_1280x720"] = stage_times(bp, hd[0][0])

    # single images: random scenes, the detector + one landmark pass each
    imgs, itruth = [], []
    for i in range(args.images):
        rng = np.random.default_rng([11, i])
        scene = sample_scene(rng, size=256, people_max=1)
        res = render_scene(scene, rng=rng)
        imgs.append(np.asarray(res.image))
        itruth.append(res.people[0].keypoints)
    lm = np.full((len(imgs), 33, 3), np.nan, np.float32)
    peaks = np.full((len(imgs), 25, 2), np.nan)
    t = time.perf_counter()
    for i, im in enumerate(imgs):
        poses = bp.estimate_image(im, max_people=1)
        if poses:
            lm[i] = poses[0].landmarks
            peaks[i] = G.heatmap_to_image(G.heatmap_argmax(poses[0].heatmaps), poses[0].heatmap_affine)
    result["images"] = {"n": len(imgs), "size": [256, 256],
                        "images_per_s_wall": round(len(imgs) / (time.perf_counter() - t), 1),
                        "found_rate": round(float(np.isfinite(lm[:, 0, 0]).mean()), 4),
                        "pck": scores(lm, peaks, np.stack(itruth))}
    result["load_average_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    for name in ("tracking", "detector_every_frame", "images"):
        p = result[name]["pck"]
        print(f"{name:>22}: T25 landmarks {p['temporal25/landmarks']['pooled']}, "
              f"argmax {p['temporal25/heatmap_argmax']['pooled']}, COCO17 {p['coco17/landmarks']['pooled']}")
    out = args.out or Path(__file__).parent / "results" / f"estimator-cpu-{datetime.now().date()}.json"
    write_json(out, result)
    print("wrote", out)


if __name__ == "__main__":
    main()
