"""Time every saliency method side by side on one model and one image.

    python bench/bench_saliency.py [--size 224] [--preset model4] [--repeat 5] [--device cpu]

A PoseClassifier (ResNet-50, random weights: the time does not depend on their values)
in eval mode, one ImageNet-normalised image (+ keypoints for keypoint presets). Each
method runs once to warm up, then ``--repeat`` times; the median and min wall time in ms
go to stdout and to ``bench/results/saliency-<device>-<date>.json``, with the process CPU
time per call and the load average: on a shared machine the wall time measures the
neighbours as much as the method, while CPU time / threads estimates the wall time of an
idle machine (upper-bounded by it when the threads scale). The issue's target:
vanilla gradient under 1 s on CPU at 224 px. Options are the dashboard's defaults
(``core.classification.saliency.METHODS[m].defaults``), i.e. what a user waits for on the Saliency page.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.classification import saliency as sal  # noqa: E402
from core.classification.model import build_classifier, get_preset  # noqa: E402
from core.io import write_json  # noqa: E402


def _time(f, repeat: int, sync: bool) -> dict:
    f()                                                             # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        f()
        if sync:
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"median_ms": 1000 * statistics.median(wall), "min_ms": 1000 * min(wall),
            "cpu_median_ms": 1000 * statistics.median(cpu)}


def bench(size: int, preset: str, repeat: int, device: str, methods: list[str]) -> dict:
    torch.manual_seed(0)
    model = build_classifier(get_preset(preset, num_classes=15)).to(device).eval()
    image = torch.randn(3, size, size)
    kp = torch.rand(17, 3) if model.cfg.use_keypoints else None
    sync = device.startswith("cuda")
    args = (image[None].to(device),) + (() if kp is None else (kp[None].to(device),))

    def forward():
        with torch.no_grad():
            model(*args)

    # A plain forward for scale: every method costs a multiple of it.
    rows = {"forward (reference)": _time(forward, repeat, sync)}
    for m in methods:
        rows[m] = {**_time(lambda: sal.compute_saliency(model, image, kp, 0, m), repeat, sync),
                   "options": sal.METHODS[m].defaults}
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--preset", default="model4")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default=",".join(sal.METHODS))
    p.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/...)")
    a = p.parse_args()
    methods = [m for m in a.methods.split(",") if m]
    dev_name = (torch.cuda.get_device_name(0) if a.device.startswith("cuda")
                else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"saliency benchmark: {a.preset} at {a.size} px on {a.device} ({dev_name}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {a.repeat}")
    load0 = os.getloadavg()[0]
    rows = bench(a.size, a.preset, a.repeat, a.device, methods)
    load1 = os.getloadavg()[0]
    threads = torch.get_num_threads()
    print(f"\n{'method':<22} {'wall median':>12} {'wall min':>10} {'cpu/threads':>12}")
    for m, r in rows.items():
        print(f"{m:<22} {r['median_ms']:10.0f}ms {r['min_ms']:8.0f}ms {r['cpu_median_ms'] / threads:10.0f}ms")
    print(f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores "
          "(wall times are inflated when it exceeds the core count)")
    grad = rows.get("gradient")
    if grad is not None:
        print(f"vanilla gradient: wall {grad['median_ms']:.0f} ms, cpu/threads "
              f"{grad['cpu_median_ms'] / threads:.0f} ms (target < 1000 ms on CPU at 224 px)")
    out = a.out or ROOT / "bench" / "results" / \
        f"saliency-{a.device.split(':')[0]}-{dt.date.today().isoformat()}.json"
    write_json(out, {"benchmark": "saliency", "preset": a.preset, "size": a.size,
                     "device": a.device, "device_name": dev_name, "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "repeat": a.repeat,
                     "load_average": [round(load0, 2), round(load1, 2)], "cpu_count": os.cpu_count(),
                     "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "methods": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
