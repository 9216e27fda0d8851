"""``python -m core bench``: the data path and the models, side by side, in ONE run.

    python -m core bench [--device auto|cpu|cuda] [--images N] [--out bench/results/NAME.json]

On a synthetic dataset of N scenes (rendered into a temp folder) it measures, in order:

1. decode rate of ONE core (open + crop + resize, exactly the cache's work), then the
   image cache build on every core: images/s against cores x one-core rate (the
   bar: >= 80%);
2. feature extraction from the cache (ResNet-50 forward_features, bf16 + channels_last
   on CUDA), images/s;
3. the seven-preset grid on cached features (all samples, E epochs, + the feature pass)
   against the same grid trained naively through the frozen backbone on a subset of M
   samples for one epoch, projected to N samples x E epochs (ratio);
4. full fine-tune: train steps through the whole ResNet-50 (all layers trainable), images/s;
5. each temporal model's training and inference windows/s (bench/bench_temporal.py's
   ``bench_arch``, imported, not copied);
6. saliency latency per method (core.classification.saliency, ms per image).

Prints one table and writes the JSON (default ``bench/results/bench-<device>-<date>.json``).
Figures on a shared CPU are noisy; the JSON records the machine, threads and load.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from core.classification import saliency as sal
from core.classification.image_cache import CachedPoseDataset, build_image_cache, decode_rate, normalize_uint8
from core.classification.model import PAPER_PRESETS, PRESETS, build_classifier, get_preset
from core.classification.readers import load_pose_dataset
from core.classification.train import TrainConfig, make_optimizer, train_one_epoch
from core.engine import resolve_device
from core.io import write_json
from core.synthetic.images import ImageSpec, write_image_dataset

REPO = Path(__file__).resolve().parent.parent

# The GPU targets on one H100 (what the README puts beside each figure).
TARGETS_H100 = {"features_images_per_s": 8000, "grid_60k_seconds": 60, "finetune_images_per_s": 3000,
                "conv3d_train_windows_per_s": 2000, "cache_build_fraction_of_ideal": 0.8}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _amp(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def bench_cache(samples, fingerprint: str, *, image_size: int, cache_dir: Path, progress: bool) -> tuple[dict, object]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    one = decode_rate(samples, image_size=image_size, n=min(len(samples), 48))
    stats: dict = {}
    cache = build_image_cache(samples, fingerprint=fingerprint, image_size=image_size, margin=0.15,
                              cache_dir=cache_dir, workers=cores, progress=progress, stats=stats)
    ideal = one * cores
    return {"one_core_decode_images_per_s": one, "cores": cores,
            "cache_build_images_per_s": stats["images_per_s"], "ideal_images_per_s": ideal,
            "fraction_of_ideal": stats["images_per_s"] / ideal,
            "cache_mb": cache.images.nbytes / 2**20}, cache


def bench_jpeg(root: Path, *, images: int, image_size: int, device: torch.device, progress: bool) -> dict:
    """The same scenes as JPEG files: one core's PIL decode rate against the torchvision
    decoder (``torchvision.io.decode_jpeg``: nvJPEG on CUDA, libjpeg-turbo on the CPU)
    building the image cache, batches of 64 scenes per call."""
    write_image_dataset(root / "jpeg", ImageSpec(n_train=images - images // 5, n_test=max(1, images // 5), seed=0,
                                                 size=320, people_max=2, image_format="jpeg"), progress=progress)
    index = load_pose_dataset(root / "jpeg")
    samples = [s for k in ("train", "val", "test") for s in index.splits[k]]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    one = decode_rate(samples, image_size=image_size)
    kw = dict(fingerprint=index.fingerprint, image_size=image_size, margin=0.15, progress=False)
    # start-up (loading torchvision's image library: ~1.4 s on the CPU; nvJPEG handles and
    # first allocations on CUDA) is paid once per process, not per image: warm it up
    build_image_cache(samples[:64], cache_dir=root / "jpeg-warm", decoder="torchvision", device=device, **kw)
    stats: dict = {}
    build_image_cache(samples, cache_dir=root / "jpeg-cache", decoder="torchvision", device=device,
                      stats=stats, **kw)
    return {"samples": len(samples), "one_core_pil_jpeg_images_per_s": one, "cores": cores,
            "pil_all_cores_ideal_images_per_s": one * cores,
            "torchvision_decoder_images_per_s": stats["images_per_s"],
            "decoder_device": str(device)}


@torch.inference_mode()
def bench_features(model, cache, *, device: torch.device, batch_size: int) -> tuple[dict, torch.Tensor]:
    model.eval()
    rows = np.arange(len(cache))
    warm = next(cache.batches(rows[:batch_size], batch_size, device))
    with _amp(device):
        model.forward_features(warm)                     # cudnn autotune / allocator warm-up
    _sync(device)
    t0 = time.perf_counter()
    feats = []
    for images in cache.batches(rows, batch_size, device):
        with _amp(device):
            feats.append(model.forward_features(images).float())
    _sync(device)
    s = time.perf_counter() - t0
    return {"images": len(rows), "seconds": s, "images_per_s": len(rows) / s}, torch.cat(feats).cpu()


def bench_grid(features: torch.Tensor, keypoints: torch.Tensor, labels: torch.Tensor, cache, backbone_state,
               *, device: torch.device, epochs: int, subset: int, batch_size: int, feature_seconds: float) -> dict:
    """Seven presets on cached features (N samples x E epochs) vs naively through the frozen
    backbone on ``subset`` samples x 1 epoch, projected to the same work."""


    class _Feat(TensorDataset):
        def __getitem__(self, i):
            f, k, y = super().__getitem__(i)
            return {"features": f, "keypoints": k, "label": y}

    class _Img(torch.utils.data.Dataset):        # images straight from the cache (no decode)
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"image": normalize_uint8(torch.from_numpy(np.array(cache.images[i]))),
                    "keypoints": keypoints[i], "label": labels[i]}

    n = len(labels)
    num_classes = int(labels.max()) + 1
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size)
    cached_s, naive_s = 0.0, 0.0
    for name in PAPER_PRESETS:
        cfg = get_preset(name, max(num_classes, 15))
        if not cfg.trained:
            continue
        torch.manual_seed(0)
        model = build_classifier(cfg, backbone_state).to(device)
        opt, _ = make_optimizer(model, tcfg)
        loader = DataLoader(_Feat(features, keypoints, labels), batch_size=batch_size, shuffle=True)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(epochs):
            train_one_epoch(model, loader, opt, device)
        _sync(device)
        cached_s += time.perf_counter() - t0
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        loader = DataLoader(_Img(min(subset, n)), batch_size=batch_size, shuffle=True)
        t0 = time.perf_counter()
        train_one_epoch(model, loader, opt, device)
        _sync(device)
        naive_s += time.perf_counter() - t0
    naive_projected = naive_s * (n / min(subset, n)) * epochs
    cached_total = cached_s + feature_seconds
    return {"samples": n, "epochs": epochs, "presets": list(PAPER_PRESETS),
            "cached_train_seconds": cached_s, "cached_total_seconds_incl_features": cached_total,
            "naive_subset_samples": min(subset, n), "naive_subset_seconds_1_epoch": naive_s,
            "naive_projected_seconds": naive_projected, "speedup": naive_projected / cached_total,
            "projected_60k_seconds": cached_s * 60000 / n + 60000 / (n / max(feature_seconds, 1e-9))}


def bench_finetune(cache, *, device: torch.device, batch_size: int, steps: int) -> dict:
    """Train steps through the whole ResNet-50 (every layer trainable), from the cache."""

    torch.manual_seed(0)
    model = build_classifier(get_preset("model2", 15)).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rows = np.arange(len(cache))
    batches = list(cache.batches(rows[:batch_size], batch_size, device))[:1] * (steps + 1)
    y = torch.randint(0, 15, (batches[0].shape[0],), device=device)
    t0 = 0.0
    for i, images in enumerate(batches):
        if i == 1:
            _sync(device)
            t0 = time.perf_counter()
        with _amp(device):
            loss = F.cross_entropy(model(images).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    s = time.perf_counter() - t0
    return {"batch_size": int(batches[0].shape[0]), "steps": steps, "images_per_s": steps * batches[0].shape[0] / s}


def bench_temporal(*, device: torch.device, batch_size: int, steps: int, warmup: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("bench_temporal", REPO / "bench" / "bench_temporal.py")
    if spec is None or not (REPO / "bench" / "bench_temporal.py").is_file():
        return []
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    batch = bt.make_batch(batch_size, 64, device)
    return [bt.bench_arch(a, batch, device, steps, warmup, {}) for a in (*bt.LEARNED, "identity")]


def bench_saliency(*, device: torch.device, image_size: int) -> dict:
    torch.manual_seed(0)
    model = build_classifier(get_preset("model4", 15)).to(device).eval()
    image, kp = torch.randn(3, image_size, image_size), torch.rand(17, 3)
    out = {}
    sal.compute_saliency(model, image, kp, 0, "gradient")        # warm-up
    for m in sal.METHODS:
        t0 = time.perf_counter()
        sal.compute_saliency(model, image, kp, 0, m)
        _sync(device)
        out[m] = 1000 * (time.perf_counter() - t0)
    return out


def run_bench(*, device: str = "auto", images: int = 200, out: Path | None = None, image_size: int = 224,
              epochs: int = 10, progress: bool = True) -> dict:
    """Run every measurement above; print the table; write and return the JSON dict."""
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    bs = 256 if cuda else 32
    res: dict = {"device": _device_name(dev), "device_type": dev.type, "torch": torch.__version__,
                 "images": images, "image_size": image_size,
                 "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
                 "targets_h100": TARGETS_H100}
    with tempfile.TemporaryDirectory(prefix="poselab-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_image_dataset(tmp / "data", ImageSpec(n_train=images - images // 5, n_test=max(1, images // 5), seed=0,
                                                    size=320, people_max=2), progress=progress)
        index = load_pose_dataset(tmp / "data")
        samples = [s for k in ("train", "val", "test") for s in index.splits[k]]
        res["render_seconds"], res["samples"] = time.perf_counter() - t0, len(samples)
        res["cache"], cache = bench_cache(samples, index.fingerprint, image_size=image_size,
                                          cache_dir=tmp / "cache", progress=progress)
        _say(res, "cache")
        res["jpeg"] = bench_jpeg(tmp, images=images, image_size=image_size, device=dev, progress=progress)
        _say(res, "jpeg")
        extractor = build_classifier(PRESETS["model1"]).to(dev)     # seeded random weights: speed only
        if cuda:
            extractor = extractor.to(memory_format=torch.channels_last)
        res["features"], feats = bench_features(extractor, cache, device=dev, batch_size=bs)
        _say(res, "features")
        ds = CachedPoseDataset(cache, samples)
        backbone = {k: v for k, v in extractor.backbone.state_dict().items()}
        backbone.update({f"fc.{k}": v for k, v in extractor.fc.state_dict().items()})
        res["grid"] = bench_grid(feats, ds.keypoints, ds.labels, cache, backbone, device=dev,
                                 epochs=epochs, subset=256 if cuda else 32, batch_size=64,
                                 feature_seconds=res["features"]["seconds"])
        _say(res, "grid")
        res["finetune"] = bench_finetune(cache, device=dev, batch_size=128 if cuda else 8,
                                         steps=20 if cuda else 2)
        _say(res, "finetune")
        del cache, ds
    res["temporal"] = bench_temporal(device=dev, batch_size=16 if cuda else 8,
                                     steps=50 if cuda else 2, warmup=10 if cuda else 1)
    _say(res, "temporal")
    res["saliency_ms"] = bench_saliency(device=dev, image_size=image_size)
    _say(res, "saliency")
    out = Path(out) if out else REPO / "bench" / "results" / f"bench-{dev.type}-{dt.date.today():%Y%m%d}.json"
    write_json(out, res)
    print(f"wrote {out}")
    return res


def _say(res: dict, part: str) -> None:
    """One table row per figure, printed as soon as it is measured."""
    t = TARGETS_H100
    if part == "cache":
        c = res["cache"]
        print(f"{'cache build':<34} {c['cache_build_images_per_s']:>10.1f} img/s   one core {c['one_core_decode_images_per_s']:.1f} "
              f"x {c['cores']} = {c['ideal_images_per_s']:.1f} -> {100 * c['fraction_of_ideal']:.0f}% of ideal "
              f"(bar {100 * t['cache_build_fraction_of_ideal']:.0f}%)", flush=True)
    elif part == "jpeg":
        j = res["jpeg"]
        print(f"{'JPEG cache, torchvision decoder':<34} {j['torchvision_decoder_images_per_s']:>10.1f} img/s   "
              f"on {j['decoder_device']}; PIL one core {j['one_core_pil_jpeg_images_per_s']:.1f} x {j['cores']} "
              f"= {j['pil_all_cores_ideal_images_per_s']:.1f}", flush=True)
    elif part == "features":
        f = res["features"]
        print(f"{'feature extraction (cache)':<34} {f['images_per_s']:>10.1f} img/s   H100 target >= {t['features_images_per_s']}", flush=True)
    elif part == "grid":
        g = res["grid"]
        print(f"{'7-preset grid, cached features':<34} {g['cached_total_seconds_incl_features']:>10.2f} s       "
              f"{g['samples']} samples x {g['epochs']} epochs; naive (projected) {g['naive_projected_seconds']:.1f} s "
              f"-> {g['speedup']:.1f}x; projected 60k: {g['projected_60k_seconds']:.0f} s (H100 target < {t['grid_60k_seconds']})", flush=True)
    elif part == "finetune":
        print(f"{'full fine-tune':<34} {res['finetune']['images_per_s']:>10.1f} img/s   H100 target >= {t['finetune_images_per_s']}", flush=True)
    elif part == "temporal":
        for r in res["temporal"]:
            tr = r.get("train_windows_per_s")
            print(f"{'temporal ' + r['arch']:<34} {tr or float('nan'):>10.1f} win/s train, "
                  f"{r['infer_windows_per_s']:.1f} win/s infer"
                  + (f"   H100 target >= {t['conv3d_train_windows_per_s']}" if r["arch"] == "conv3d" else ""), flush=True)
    elif part == "saliency":
        for m, ms in res["saliency_ms"].items():
            print(f"{'saliency ' + m:<34} {ms:>10.0f} ms/image", flush=True)
