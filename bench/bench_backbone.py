"""The shipped PoseLab backbone (and any candidate) against a seeded random init, side by
side in one run, on the demo's data and recipe: the seven presets' test accuracies, and
for one preset the share of each saliency method's map that falls inside the person.

    .venv/bin/python bench/bench_backbone.py [--data DIR] [--preset model4] [--weights FILE ...]
                                             [--samples 456] [--slow-samples 100] [--methods gradient,gradcam]

* Data: ``--data`` (an InfiniteForm-layout folder with segmentation polygons), else the
  demo's images (``core.demo.DEMO_IMAGES``) rendered into a temporary folder.
* Runs: ``python -m core grid classifier`` with the demo's settings
  (``core.demo.DEMO_CLASSIFIER``: 112 px, 60 epochs; seed 0 only) once per backbone, the
  default chain (offline: the PoseLab backbone in ``checkpoints/_poselab/``) and
  ``--weights random``, plus each ``--weights FILE`` (a candidate backbone), in a temporary
  runs folder. Every backbone's entry gets its ratios to the random one.
* Saliency: every method of the Saliency page with its defaults, for the predicted class
  (the page's default target), on the preset's test crops, the same samples for every
  backbone: the first ``--samples`` for the fast methods (gradient, Grad-CAM), the first
  ``--slow-samples`` for the others. Per sample ``mass_inside`` of the displayed map in
  the person's outline (the annotation's polygons) mapped into the crop; ``mask_share`` is
  the outline's share of the crop, which a map that ignores the picture would score. The
  same inside the outline's convex hull (``mass_inside_hull``, ``hull_share``): the mask
  PoseLab's renders wrote before they traced the outline. And the vanilla gradient of
  every other preset on its first ``--preset-samples`` crops: the heads differ, the
  backbone is the same (``--preset-samples 0`` skips it).

Writes ``bench/results/backbone-<device>-<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scipy.spatial import ConvexHull  # noqa: E402

from core.classification import saliency as sal  # noqa: E402
from core.classification.crops import crop_box  # noqa: E402
from core.classification.model import PAPER_PRESETS  # noqa: E402
from core.classification.train import ClassifierJob, train_classifier_grid  # noqa: E402
from core.demo import DEMO_CLASSIFIER, DEMO_IMAGES  # noqa: E402
from core.images import read_image_size  # noqa: E402
from core.io import resolve_inside, write_json  # noqa: E402
from core.models import load_model  # noqa: E402
from core.runs import load_run  # noqa: E402
from core.synthetic.images import write_image_dataset  # noqa: E402

FAST = ("gradient", "gradcam")


def hull_mask(run, row, size: int) -> np.ndarray | None:
    """The convex hull of the person's polygons in the model's input: the mask older
    PoseLab renders wrote as ``segmentation``, kept as a comparison."""
    pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in row["segmentation"]])
    if len(pts) < 3:
        return None
    ring = pts[ConvexHull(pts).vertices]
    _, margin = sal.run_image_settings(run.info)
    scene = read_image_size(resolve_inside(run.info.data.root, str(row["image_path"])))
    box = crop_box(tuple(float(v) for v in row["bbox"]), scene, margin)
    return sal.person_mask([ring.ravel().tolist()], box, size)


def _mean(values, fn=np.nanmean) -> float | None:
    """Rounded mean over the samples that have a value; None (JSON null) when none has."""
    v = np.asarray(values, np.float64)
    return round(float(fn(v)), 4) if np.isfinite(v).any() else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def saliency_mass(run, samples: int, slow_samples: int, methods=tuple(sal.METHODS)) -> dict:
    """Per method: mean (and spread) share of the map inside the person's outline and
    inside its convex hull, over test crops."""
    model = load_model(run, device="cpu")
    use_kp = sal.run_uses_keypoints(run.info)
    preds = run.predictions()
    preds = preds[preds["segmentation"].map(lambda p: p is not None and len(p) > 0)]
    rows = preds.iloc[: max(samples if m in FAST else slow_samples for m in methods)]
    # each crop, its predicted class and its hull once: every method reads the same ones
    inputs = [sal.sample_input(run.info, row, use_keypoints=use_kp) for _, row in rows.iterrows()]
    targets = [int(np.argmax(sal.predict(model, x.image, x.keypoints))) for x in inputs]
    hulls = [hull_mask(run, row, x.image.shape[-1]) for (_, row), x in zip(rows.iterrows(), inputs)]
    out = {}
    for method in methods:
        n = samples if method in FAST else slow_samples
        inside, share, in_hull, hull_share, t0 = [], [], [], [], time.perf_counter()
        for x, target, hull in zip(inputs[:n], targets[:n], hulls[:n]):
            m = sal.compute_saliency(model, x.image, x.keypoints, target, method).map
            inside.append(sal.mass_inside(m, x.person))
            share.append(float(x.person.mean()))
            in_hull.append(sal.mass_inside(m, hull) if hull is not None else np.nan)
            hull_share.append(float(hull.mean()) if hull is not None else np.nan)
        inside = np.asarray(inside)
        out[method] = {"samples": len(inside), "zero_maps": int(np.isnan(inside).sum()),   # no mass to share
                       "mass_inside": _mean(inside), "mass_inside_std": _mean(inside, np.nanstd),
                       "mask_share": _mean(share), "mass_inside_hull": _mean(in_hull),
                       "hull_share": _mean(hull_share), "seconds": round(time.perf_counter() - t0, 1)}
        o = out[method]
        print(f"  {method:22s} {o['mass_inside']} inside the outline (covers {o['mask_share']}), "
              f"{o['mass_inside_hull']} inside its hull (covers {o['hull_share']}), "
              f"{len(inside)} samples, {o['zero_maps']} all-zero maps", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--preset", default="model4")
    ap.add_argument("--samples", type=int, default=456, help="test crops for gradient and Grad-CAM")
    ap.add_argument("--slow-samples", type=int, default=100, help="test crops for the other methods")
    ap.add_argument("--preset-samples", type=int, default=150,
                    help="test crops for the vanilla gradient of the other presets")
    ap.add_argument("--methods", default=",".join(sal.METHODS),
                    help="comma-separated saliency methods to measure (default: every method)")
    ap.add_argument("--weights", type=Path, action="append",
                    help="a further backbone to compare (safetensors), beside the default chain and random")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(sal.METHODS)
    if unknown:
        ap.error(f"unknown saliency method(s) {sorted(unknown)}; choose from {', '.join(sal.METHODS)}")
    os.environ.setdefault("POSELAB_OFFLINE", "1")        # the offline chain, as a new user has it
    grid = {**DEMO_CLASSIFIER, "seeds": (0,)}           # the demo's recipe, one seed per backbone
    res: dict = {"device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "torch": torch.__version__,
                 "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "load_average_start": os.getloadavg(), "settings": {"recipe": asdict(grid["recipe"]),
                                                                      "seeds": list(grid["seeds"]), "preset": args.preset,
                                                                      "samples": args.samples,
                                                                      "slow_samples": args.slow_samples,
                                                                      "preset_samples": args.preset_samples,
                                                                      "methods": list(methods)},
                 "backbones": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "images"
            write_image_dataset(data, DEMO_IMAGES, progress=False)
        res["data"] = str(args.data or f"demo images {DEMO_IMAGES}")
        candidates = [(f"file:{Path(f).name}", str(f)) for f in args.weights or ()]
        for key, weights in [("default chain", None), *candidates, ("random", "random")]:
            t0 = time.perf_counter()
            paths = train_classifier_grid(ClassifierJob(data=data, runs_dir=Path(tmp) / "runs", weights=weights,
                                                        progress=False, **grid))
            runs = {load_run(p).name: load_run(p) for p in paths}
            b = runs[args.preset].info.backbone
            entry = {"source": b.source, "weights": b.weights, "sha256": b.sha256,
                     "grid_seconds": round(time.perf_counter() - t0, 1),
                     "test_acc": {n: round(runs[n].metrics["test_acc"], 4) for n in PAPER_PRESETS}}
            print(f"{b.label}: " + ", ".join(f"{n} {a:.3f}" for n, a in entry["test_acc"].items()),
                  file=sys.stderr)
            entry["saliency"] = saliency_mass(runs[args.preset], args.samples, args.slow_samples, methods)
            # the same check on every other preset's head: how much is the backbone's own
            entry["gradient_by_preset"] = {}
            for n in PAPER_PRESETS:
                if n != args.preset and args.preset_samples > 0:
                    print(f" {n}:", file=sys.stderr)
                    entry["gradient_by_preset"][n] = saliency_mass(runs[n], args.preset_samples, 0,
                                                                   methods=("gradient",))["gradient"]
            res["backbones"][b.source if key == "default chain" else key] = entry
    rnd = res["backbones"]["random"]
    for key, b in res["backbones"].items():
        if key == "random":
            continue
        b["ratio_vs_random"] = {
            "mass_inside": {m: _ratio(b["saliency"][m]["mass_inside"], rnd["saliency"][m]["mass_inside"])
                            for m in methods},
            "mass_inside_hull": {m: _ratio(b["saliency"][m]["mass_inside_hull"],
                                           rnd["saliency"][m]["mass_inside_hull"]) for m in methods},
            "gradient_by_preset": {n: _ratio(b["gradient_by_preset"][n]["mass_inside"],
                                             rnd["gradient_by_preset"][n]["mass_inside"])
                                   for n in b["gradient_by_preset"]}}
    res["load_average_end"] = os.getloadavg()
    out = args.out or REPO / "bench" / "results" / f"backbone-cpu-{dt.date.today().isoformat()}.json"
    write_json(out, res)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
