"""Benchmark: the classifier grid trained on cached features vs. through the frozen backbone.

Both ways run in ONE process on the SAME data, each into a fresh runs folder (so the
cached way pays for its feature pass), and the ratio of wall times is printed and written
to ``bench/results/feature_cache-<device>-<date>.json``. The two ways give the same
results up to float noise (tests/test_train_classifier.py checks it); this only measures
time.

    python bench/bench_feature_cache.py                       # small synthetic set, CPU-friendly
    python bench/bench_feature_cache.py --train 2000 --test 500 --image-size 224 --device cuda

Figures on a shared 2-core CPU are noisy; the README records which machine each came from.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from core.classification.train import ClassifierJob, TrainConfig, train_classifier_grid
from core.engine import resolve_device
from core.io import write_json
from core.synthetic.images import ImageSpec, write_image_dataset

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def device_label(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="dataset (default: render a synthetic one)")
    p.add_argument("--train", type=int, default=60, help="scenes to render for training")
    p.add_argument("--test", type=int, default=20)
    p.add_argument("--scene-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=96, help="crop side fed to ResNet-50")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--presets", default="model1,model2,model3,model4,model5,model6")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    presets = [s for s in args.presets.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench-fc-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "data"
            write_image_dataset(data, ImageSpec(n_train=args.train, n_test=args.test, seed=0, size=args.scene_size,
                                                people_max=2), progress=False)
        job = ClassifierJob(data=data, runs_dir=tmp, presets=tuple(presets), device=str(device), progress=False,
                            weights="random")   # same backbone both ways, no download
        timings, results = {}, {}
        for way, cache in (("feature_cache", True), ("frozen_backbone", False)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
                                 feature_cache=cache)
            paths = train_classifier_grid(replace(job, runs_dir=tmp / way, recipe=recipe))
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[way] = time.perf_counter() - t0
            results[way] = {json.loads((q / "run.json").read_text())["name"]:
                            json.loads((q / "metrics.json").read_text())["test_acc"] for q in paths}
            print(f"{way:>16}: {timings[way]:8.1f} s  ({len(presets)} presets x {args.epochs} epochs)",
                  flush=True)
        n = json.loads((paths[0] / "run.json").read_text())["data"]
    ratio = timings["frozen_backbone"] / timings["feature_cache"]
    print(f"{'speed-up':>16}: {ratio:8.1f} x   (samples: train {n['num_train']}, val {n['num_val']}, "
          f"test {n['num_test']}; crop {args.image_size} px; {device_label(device)})")
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_label(device), "host": platform.node(), "cpu_count": os.cpu_count(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "samples": {k: n[k] for k in ("num_train", "num_val", "num_test")},
        "seconds": {k: round(v, 2) for k, v in timings.items()}, "speedup": round(ratio, 2),
        "test_acc": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"feature_cache-{device_label(device)}-{dt.date.today():%Y%m%d}.json"
    write_json(path, record)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
