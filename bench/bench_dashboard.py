"""Dashboard page speed with a large run: every page's script run, caches warm (AppTest).

Builds, in a temporary folder, a classifier run with 10,000 test predictions (15
classes, images shared by many rows), a second classifier run for the confusion page's
difference view, and a temporal run with 10,000 frame x keypoint rows, all written
in the run-folder format (docs/ARCHITECTURE.md). Then, for each page, it runs the
page once to fill the caches and times ``--repeat`` further script runs (median and
max). Target: under 1 s per page.

The saliency page is left out: it needs a trained model; bench/bench_saliency.py times
it.

    .venv/bin/python bench/bench_dashboard.py [--rows 10000] [--repeat 5]

Prints a table and writes bench/results/dashboard-<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from core import runs as R  # noqa: E402
from core.io import write_json  # noqa: E402
from core.keypoints import TEMPORAL25  # noqa: E402

CLASSES = ["bicep_curl", "bird_dog", "bridge", "crunch", "downward_dog", "jumping_jack", "lunge",
           "overhead_press", "plank", "pushup", "side_plank", "squat", "superman", "tree", "warrior2"]
PAGES = ["home", "runs", "samples", "confusion", "pck", "sequences"]


def write_images(root: Path, n: int, rng) -> list[list[float]]:
    (root / "test").mkdir(parents=True)
    boxes = []
    for i in range(n):
        img = Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(120, 230, 3)))
        x, y, w, h = (int(v) for v in (*rng.integers(10, 80, 2), *rng.integers(60, 130, 2)))
        ImageDraw.Draw(img).rectangle([x, y, x + w, y + h], fill=(60, 60, 160))
        img.save(root / "test" / f"{i}.rgb.png")
        boxes.append([float(x), float(y), float(w), float(h)])
    return boxes


def classifier_run(runs_dir: Path, data_root: Path, name: str, rows: int, boxes, acc: float,
                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    C, n_img = len(CLASSES), len(boxes)
    label = rng.integers(0, C, rows)
    pred = np.where(rng.random(rows) < acc, label, rng.integers(0, C, rows))
    logits = rng.normal(size=(rows, C))
    logits[np.arange(rows), pred] += 4
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    img = np.arange(rows) % n_img
    kp = np.zeros((rows, 17, 3))
    b = np.asarray(boxes)[img]
    kp[..., 0] = b[:, None, 0] + rng.random((rows, 17)) * b[:, None, 2]
    kp[..., 1] = b[:, None, 1] + rng.random((rows, 17)) * b[:, None, 3]
    kp[..., 2] = 2
    df = pd.DataFrame({
        "sample_id": [f"{i}:{j}" for i, j in zip(img, np.arange(rows) // n_img)],
        "image_path": [f"test/{i}.rgb.png" for i in img], "image_id": img,
        "person_index": np.arange(rows) // n_img, "label": label,
        "label_name": np.asarray(CLASSES)[label], "pred": pred, "pred_name": np.asarray(CLASSES)[pred],
        "confidence": p.max(1).astype(np.float32), "correct": pred == label,
        "bbox": list(b), "keypoints": list(kp.reshape(rows, 51)),
    })
    for j, c in enumerate(CLASSES):
        df[f"prob_{c}"] = p[:, j].astype(np.float32)
    run = R.create_run_dir(runs_dir, name)
    write_json(run / R.RUN_JSON, {
        "kind": "classifier", "name": name, "config": {"model": {}, "train": {}},
        "data": {"root": str(data_root), "sources": [], "fingerprint": "bench", "classes": CLASSES,
                 "num_train": 50_000, "num_val": 5_000, "num_test": rows, "skipped": {}},
        "backbone": {"source": "imagenet", "weights": "IMAGENET1K_V2", "sha256": None,
                     "stored": None, "warning": None},
        "seed": seed, "device": "cuda", "started_at": f"2026-01-01T00:00:0{seed}+00:00"})
    R.write_table(run / R.HISTORY_CSV, pd.DataFrame({
        "epoch": range(1, 11), "train_loss": np.linspace(2, .2, 10), "train_acc": np.linspace(.2, .95, 10),
        "val_loss": np.linspace(2.1, .3, 10), "val_acc": np.linspace(.2, acc, 10), "lr": 1e-3,
        "seconds": 30.0}))
    R.write_table(run / R.PREDICTIONS, df)
    write_json(run / R.METRICS_JSON, {"headline": "test_acc", "test_acc": float(df.correct.mean()),
                          "test_loss": 0.4, "val_acc": acc, "val_loss": 0.3,
                          "num_test": rows, "best_epoch": 10})


def temporal_run(runs_dir: Path, data_root: Path, arch: str, rows: int, seed: int) -> None:
    """Per frame x keypoint rows in the temporal predictions contract (videos of 100 frames)."""
    rng = np.random.default_rng(seed)
    K = len(TEMPORAL25)
    frames_total = max(1, rows // K)
    frame = np.arange(frames_total)
    video = np.char.add("video", (frame // 100).astype(str))
    f = np.repeat(frame % 100, K)
    k = np.tile(np.arange(K), frames_total)
    gt = rng.uniform(4, 60, (frames_total * K, 2))
    inp = gt + rng.normal(0, 3, gt.shape)
    pred = gt + rng.normal(0, 1.5, gt.shape)
    vis = rng.random(len(k)) > 0.05
    norm = np.full(len(k), 48.0)
    err = np.where(vis, np.linalg.norm(pred - gt, axis=1), np.nan)
    df = pd.DataFrame({
        "video": np.repeat(video, K), "frame": f, "keypoint": k,
        "keypoint_name": np.asarray(TEMPORAL25)[k], "gt_x": gt[:, 0], "gt_y": gt[:, 1],
        "visible": vis, "input_x": inp[:, 0], "input_y": inp[:, 1], "pred_x": pred[:, 0],
        "pred_y": pred[:, 1], "norm": norm, "error_px": err,
        "input_error_px": np.where(vis, np.linalg.norm(inp - gt, axis=1), np.nan)})
    pck = pd.DataFrame({"keypoint": list(TEMPORAL25)})
    for a in (0.05, 0.1, 0.2):
        d_pred = df.assign(ok=df.error_px <= a * df.norm)[df.visible].groupby("keypoint")["ok"].mean()
        d_inp = df.assign(ok=df.input_error_px <= a * df.norm)[df.visible].groupby("keypoint")["ok"].mean()
        pck[f"pck@{a}"] = d_pred.to_numpy()
        pck[f"identity_pck@{a}"] = d_inp.to_numpy()
    pck["n_visible"] = df[df.visible].groupby("keypoint").size().to_numpy()
    pck = pd.concat([pck, pd.DataFrame([{"keypoint": "threshold_px", "pck@0.05": 2.4,
                                         "pck@0.1": 4.8, "pck@0.2": 9.6}])], ignore_index=True)
    run = R.create_run_dir(runs_dir, arch)
    write_json(run / R.RUN_JSON, {
        "kind": "temporal", "name": arch, "config": {"model": {"arch": arch}, "train": {}},
        "data": {"root": str(data_root), "sources": [], "fingerprint": "bench",
                 "keypoints": list(TEMPORAL25), "num_train": 100, "num_val": 20,
                 "num_test": int(frames_total // 100) or 1, "skipped": {}},
        "seed": seed, "device": "cuda", "started_at": f"2026-01-01T00:01:0{seed}+00:00"})
    R.write_table(run / R.HISTORY_CSV, pd.DataFrame({
        "epoch": [1, 2, 3], "train_loss": [.5, .4, .3], "train_pck": [.3, .4, .5],
        "val_loss": [.6, .5, .4], "val_pck": [.3, .4, .45], "lr": 1e-4, "seconds": 5.0}))
    R.write_table(run / R.PREDICTIONS, df)
    R.write_table(run / R.PCK_CSV, pck)
    write_json(run / R.METRICS_JSON, {"headline": "test_pck@0.05", "test_pck@0.05": float(pck["pck@0.05"][:K].mean()),
                          "test_pck@0.1": float(pck["pck@0.1"][:K].mean()),
                          "test_pck@0.2": float(pck["pck@0.2"][:K].mean()),
                          "identity_pck@0.05": float(pck["identity_pck@0.05"][:K].mean()),
                          "identity_pck@0.1": float(pck["identity_pck@0.1"][:K].mean()),
                          "identity_pck@0.2": float(pck["identity_pck@0.2"][:K].mean()),
                          "val_pck@0.05": 0.45, "num_test_windows": frames_total // 5,
                          "best_epoch": 3})


def time_pages(repeat: int) -> list[dict]:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=300)
    at.run()
    out = []
    for page in PAGES:
        if page != "home":
            at.switch_page(f"pages/{page}.py")
        t0 = time.perf_counter()
        at.run()                                   # cold: fills st.cache_data / images
        cold = time.perf_counter() - t0
        errors = [str(e.value)[:200] for e in at.exception]
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        out.append({"page": page, "cold_s": cold, "warm_median_s": statistics.median(times),
                    "warm_max_s": max(times), "exceptions": errors,
                    "st_errors": [str(e.value)[:200] for e in at.error],
                    "images": len(at.image)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000, help="test predictions per run")
    ap.add_argument("--images", type=int, default=300, help="distinct scene images on disk")
    ap.add_argument("--repeat", type=int, default=5, help="timed warm runs per page")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        boxes = write_images(tmp / "data", args.images, rng)
        runs_dir = tmp / "runs"
        classifier_run(runs_dir, tmp / "data", "model2", args.rows, boxes, 0.6, 1)
        classifier_run(runs_dir, tmp / "data", "model4", args.rows, boxes, 0.9, 2)
        temporal_run(runs_dir, tmp / "seq", "identity", args.rows, 3)
        temporal_run(runs_dir, tmp / "seq", "conv3d", args.rows, 4)
        print(f"built runs with {args.rows} predictions each in {time.perf_counter() - t0:.1f} s")
        os.environ["POSELAB_RUNS"] = str(runs_dir)
        results = time_pages(args.repeat)

    print(f"\n{'page':<12} {'cold s':>8} {'warm median s':>14} {'warm max s':>11}  images  note")
    for r in results:
        note = ("EXCEPTION " + r["exceptions"][0]) if r["exceptions"] else (
            ("st.error: " + r["st_errors"][0]) if r["st_errors"] else
            "ok" if r["warm_median_s"] < 1.0 else "over the 1 s target")
        print(f"{r['page']:<12} {r['cold_s']:>8.3f} {r['warm_median_s']:>14.3f} "
              f"{r['warm_max_s']:>11.3f}  {r['images']:>6}  {note}")
    try:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "cpu"
    record = {
        "benchmark": "dashboard page script runs (AppTest, caches warm)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "device": device},
        "rows": args.rows, "repeat": args.repeat, "target_s": 1.0, "pages": results,
        "note": "saliency page excluded (needs a trained model): see bench/bench_saliency.py",
    }
    out = REPO / "bench" / "results" / f"dashboard-{device}-{dt.date.today():%Y-%m-%d}.json"
    write_json(out, record)
    print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
