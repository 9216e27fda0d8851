"""Temporal models side by side: training and inference windows per second.

    python bench/bench_temporal.py [--device auto|cpu|cuda] [--batch-size 16] [--heatmap 64]
                                   [--steps 20] [--archs conv3d,deciwatch,...] [--demo]

Synthetic tensors shaped like the real windows (B, 5, 25, S, S), so the figures measure
the models, not data loading. One training step = forward + the training loss (the same
``compute_loss`` the trainer uses, incl. decoding) + backward + Adam step, under bf16
autocast on CUDA as in training. Inference = forward + decoding to coordinates, no grad.
Prints a table and writes bench/results/temporal-<device>-<date>.json.

The study's reference: about 5,600 training windows per epoch; the target on one
H100 is Conv3D >= 2,000 windows/s (an epoch < 3 s) and no model more than 3x slower.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.demo import DEMO_PLANS  # noqa: E402
from core.engine import resolve_device  # noqa: E402
from core.heatmaps import decode_heatmaps, gaussian_heatmaps, normalize_heatmaps  # noqa: E402
from core.io import write_json
from core.temporal.models import ARCHS, LEARNED, build_temporal, make_config  # noqa: E402
from core.temporal.train import loss_terms  # noqa: E402

EPOCH_WINDOWS = 5600  # the study's training set size, for the "s / epoch" column


def make_batch(b: int, s: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, 5, 25, 2, generator=g) * (s - 1)                       # (B, T, K, 2)
    noisy = pts + torch.randn(b, 5, 25, 2, generator=g) * (s / 20)
    x = normalize_heatmaps(gaussian_heatmaps(noisy, (s, s)) + torch.rand(b, 5, 25, s, s, generator=g))
    batch = {"heatmaps": x, "target": gaussian_heatmaps(pts, (s, s)), "keypoints": pts,
             "visible": torch.ones(b, 5, 25, dtype=torch.bool), "norm": torch.full((b, 5), float(s)),
             "input_keypoints": decode_heatmaps(x)[0]}
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_arch(arch: str, batch: dict, device: torch.device, steps: int, warmup: int,
               overrides: dict) -> dict:
    model = build_temporal(make_config(arch, **overrides)).to(device)
    params = sum(p.numel() for p in model.parameters())
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    b = batch["heatmaps"].shape[0]
    out = {"arch": arch, "params": params, "config": overrides}
    if params:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        model.train()
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            with torch.autocast(**amp):
                terms, _ = loss_terms(model, batch)
                loss = sum(w * total / torch.as_tensor(c).clamp(min=1) for w, total, c in terms)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        out["train_windows_per_s"] = steps * b / (time.perf_counter() - t0)
        out["train_s_per_5600_epoch"] = EPOCH_WINDOWS / out["train_windows_per_s"]
    model.eval()
    with torch.no_grad():
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            with torch.autocast(**amp):
                y = model(batch["heatmaps"])
                if model.output_kind == "heatmaps":
                    decode_heatmaps(y)
        _sync(device)
    out["infer_windows_per_s"] = steps * b / (time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--heatmap", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 50 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 CPU, 10 CUDA)")
    ap.add_argument("--archs", default=",".join([*LEARNED, "identity"]))
    ap.add_argument("--demo", action="store_true", help="the demo's small model configs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        if a not in ARCHS:
            ap.error(f"unknown arch {a!r}")
    batch = make_batch(args.batch_size, args.heatmap, device)
    dev_name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"device: {dev_name}; batch {args.batch_size}, {args.heatmap}x{args.heatmap} heatmaps, "
          f"{steps} timed steps; torch {torch.__version__}")
    rows = []
    for a in archs:
        rows.append(bench_arch(a, batch, device, steps, warmup,
                               next((p.model for p in DEMO_PLANS if p.arch == a), {}) if args.demo else {}))
        r = rows[-1]
        tr = r.get("train_windows_per_s")
        print(f"{a:<16} {r['params']:>9,d} params  train {tr or float('nan'):>9.1f} win/s "
              f"({EPOCH_WINDOWS / tr if tr else float('nan'):7.1f} s/epoch of {EPOCH_WINDOWS})  "
              f"infer {r['infer_windows_per_s']:>9.1f} win/s", flush=True)
    ref = next((r.get("train_windows_per_s") for r in rows if r["arch"] == "conv3d"), None)
    if ref:
        for r in rows:
            if r.get("train_windows_per_s"):
                r["train_slowdown_vs_conv3d"] = ref / r["train_windows_per_s"]
        print("train slowdown vs conv3d: " + ", ".join(
            f"{r['arch']} {r['train_slowdown_vs_conv3d']:.2f}x" for r in rows if "train_slowdown_vs_conv3d" in r))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"temporal-{device.type}-{dt.date.today():%Y%m%d}{'-demo' if args.demo else ''}.json"
    write_json(path, {"device": dev_name, "device_type": device.type, "batch_size": args.batch_size,
                      "heatmap": args.heatmap, "steps": steps, "warmup": warmup,
                      "torch": torch.__version__, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      "results": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
