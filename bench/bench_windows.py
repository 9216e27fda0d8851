"""Temporal data pipeline side by side: how fast windows reach a model.

    python bench/bench_windows.py [--videos 24 --frames 40 --heatmap 64 --batch-size 16]
                                  [--device auto|cpu|cuda]

Writes a synthetic sequence dataset to a temporary folder, then measures in one run:
synthesis (videos + simulated estimator), ``WindowDataset`` construction (preprocessing,
targets, decoding), and training windows per second through (a) a ``DataLoader`` over
per-item ``__getitem__`` (num_workers=0), (b) ``get_batch`` on the CPU, (c) ``get_batch``
after ``to(device)`` when a GPU is present (frames kept on the GPU). Prints a table and
writes bench/results/windows-<device>-<date>.json. Not a test: timings are noisy.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.temporal.sequences import load_sequences  # noqa: E402
from core.temporal.synth import SequenceSpec, write_sequence_dataset  # noqa: E402
from core.temporal.windows import WindowDataset


def windows_per_second(batches, n_windows: int, sync=lambda: None) -> float:
    t0 = time.perf_counter()
    for batch in batches:
        batch["heatmaps"].sum()  # touch the data so lazy paths cannot cheat
    sync()
    return n_windows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--heatmap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = write_sequence_dataset(Path(tmp) / "seq", SequenceSpec(videos=args.videos, frames=args.frames,
                                                                         seed=0, heatmap=args.heatmap, noise=1.0,
                                                                         estimator="simulated"), progress=False)
        rows["synthesis s"] = time.perf_counter() - t0
        index = load_sequences(Path(tmp) / "seq")
        t0 = time.perf_counter()
        ds = WindowDataset(index.splits["train"], training=True)
        rows["WindowDataset build s"] = time.perf_counter() - t0
        n = len(ds)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True)
        rows["DataLoader windows/s"] = windows_per_second(loader, n)
        rows["get_batch cpu windows/s"] = windows_per_second(ds.batches(args.batch_size, shuffle=True), n)
        if device.type == "cuda":
            ds.to(device)
            sync = torch.cuda.synchronize
            windows_per_second(ds.batches(args.batch_size, shuffle=True), n, sync)  # warm-up
            rows[f"get_batch {device.type} windows/s"] = windows_per_second(
                ds.batches(args.batch_size, shuffle=True), n, sync)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{args.videos} videos x {args.frames} frames, {args.heatmap}px, {n} training windows, "
          f"batch {args.batch_size}, device {name}, torch threads {torch.get_num_threads()}")
    for key, val in rows.items():
        print(f"  {key:<28} {val:10.1f}")
    print("  identity PCK@0.05/0.1/0.2    " + "/".join(f"{v:.3f}" for v in summary["identity_pck"].values()))
    out = Path(__file__).parent / "results" / f"windows-{device.type}-{dt.date.today()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"device": name, "args": vars(args), "windows": n, **rows,
                               "identity_pck": summary["identity_pck"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
