"""Saliency trust on the demo's data: deletion / insertion AUC per method for the shipped
backbone and a random one side by side, the randomisation check's rank correlations,
and the speed of the new views (trust scores per map, the embedding map's projection).

    .venv/bin/python bench/bench_trust.py [--data DIR] [--samples 40] [--slow-samples 12]
                                          [--sanity-samples 20] [--repeat 3]

* Data: ``--data`` (InfiniteForm layout), else the demo's images (``core.demo.DEMO_IMAGES``)
  rendered into a temporary folder.
* Runs: model4 on the demo's recipe (``core.demo.DEMO_CLASSIFIER``: 112 px, 60 epochs,
  seed 0), once on the default backbone chain (offline: the shipped PoseLab backbone)
  and once with ``--weights random``.
* Faithfulness: every method of ``core.classification.saliency.METHODS`` with its
  defaults, for the predicted class, on the first ``--samples`` test crops (fast methods)
  or ``--slow-samples`` (``Method.slow``); deletion / insertion AUC with 10 steps and the
  random-order baseline (``core.classification.trust``); for the vanilla gradient also
  the randomisation check on ``--sanity-samples`` crops.
* Speed: the trust scores of one vanilla-gradient map (curves + the three randomised
  maps, as the Saliency page computes them), median of ``--repeat``, on a demo run's crop
  (112 px) and on a 224 px input, at 10 and 5 steps; and the embedding map of the demo's
  test split: the features of every test sample, then t-SNE and PCA of each feature set.

Writes ``bench/results/trust-cpu-<date>.json``.
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.classification import embedding, trust  # noqa: E402
from core.classification import saliency as sal  # noqa: E402
from core.classification.model import build_classifier, get_preset  # noqa: E402
from core.classification.train import ClassifierJob, train_classifier_grid  # noqa: E402
from core.demo import DEMO_CLASSIFIER, DEMO_IMAGES  # noqa: E402
from core.io import write_json  # noqa: E402
from core.models import load_model  # noqa: E402
from core.runs import load_run  # noqa: E402
from core.synthetic.images import write_image_dataset  # noqa: E402


def _mean(v) -> float | None:
    v = np.asarray(v, np.float64)
    return round(float(np.nanmean(v)), 4) if np.isfinite(v).any() else None


def faithfulness(run, samples: int, slow_samples: int, sanity_samples: int) -> dict:
    model = load_model(run, device="cpu")
    use_kp = sal.run_uses_keypoints(run.info)
    rows = run.predictions().iloc[:max(samples, slow_samples, sanity_samples)]
    inputs = [sal.sample_input(run.info, row, use_keypoints=use_kp) for _, row in rows.iterrows()]
    targets = [int(np.argmax(sal.predict(model, x.image, x.keypoints))) for x in inputs]
    out = {}
    for name, method in sal.METHODS.items():
        n = slow_samples if method.slow else samples
        aucs, t0 = {k: [] for k in ("deletion", "insertion", "deletion_random", "insertion_random")}, time.perf_counter()
        for x, t in zip(inputs[:n], targets[:n]):
            m = sal.compute_saliency(model, x.image, x.keypoints, t, name).map
            for k, v in trust.deletion_insertion(model, x.image, x.keypoints, t, m).auc.items():
                aucs[k].append(v)
        out[name] = {"samples": n, **{f"{k}_auc": _mean(v) for k, v in aucs.items()},
                     "beats_random_both": _mean([d < dr and i > ir for d, i, dr, ir in zip(
                         aucs["deletion"], aucs["insertion"], aucs["deletion_random"], aucs["insertion_random"])]),
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  {name:22s} deletion {out[name]['deletion_auc']} (random {out[name]['deletion_random_auc']}), "
              f"insertion {out[name]['insertion_auc']} (random {out[name]['insertion_random_auc']}), {n} samples",
              file=sys.stderr)
    rho = {s: [] for s in trust.STAGES}
    for x, t in zip(inputs[:sanity_samples], targets[:sanity_samples]):
        for s, r in trust.randomisation_check(model, x.image, x.keypoints, t, "gradient").rank_correlation.items():
            rho[s].append(r)
    out["gradient"]["sanity_rank_correlation"] = {s: _mean(v) for s, v in rho.items()}
    out["gradient"]["sanity_failed_share"] = _mean([r >= trust.RANK_THRESHOLD for r in rho["all"]])
    out["gradient"]["sanity_samples"] = sanity_samples
    print(f"  gradient sanity check: mean rho {out['gradient']['sanity_rank_correlation']}", file=sys.stderr)
    return out


def trust_seconds(model, image, kp, repeat: int, steps: int) -> dict:
    """Median wall time of what the page computes for one vanilla-gradient map."""
    res = sal.compute_saliency(model, image, kp, 0, "gradient")

    def once():
        trust.deletion_insertion(model, image, kp, 0, res.map, steps=steps)
        for stage in trust.STAGES:
            trust.randomised_map(model, image, kp, 0, "gradient", stage)
    once()                                                        # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        once()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # on a shared machine the wall time measures the neighbours too; CPU time / threads
    # estimates the wall time of an idle one (as bench_saliency.py reports it)
    return {"median_s": round(statistics.median(wall), 3), "min_s": round(min(wall), 3),
            "cpu_per_thread_median_s": round(statistics.median(cpu) / torch.get_num_threads(), 3),
            "steps": steps, "size": int(image.shape[-1]), "map_s": round(res.seconds, 3),
            "load_average": round(os.getloadavg()[0], 2)}


def projection_seconds(run) -> dict:
    model = load_model(run, device="cpu")
    preds = run.predictions()
    t0 = time.perf_counter()
    feats = embedding.compute_features(run, model, preds)
    out = {"test_samples": len(preds), "features_s": round(time.perf_counter() - t0, 2),
           "load_average": round(os.getloadavg()[0], 2)}
    for fs in embedding.FEATURE_SETS:
        for method in embedding.PROJECTIONS:
            t0 = time.perf_counter()
            embedding.project(feats.get(fs), method)
            out[f"{fs}_{method}_s"] = round(time.perf_counter() - t0, 2)
    print(f"  embedding map: {out}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--slow-samples", type=int, default=12)
    ap.add_argument("--sanity-samples", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("POSELAB_OFFLINE", "1")
    res: dict = {"benchmark": "trust", "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
                 "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "load_average_start": os.getloadavg(),
                 "note": "2-core machine shared with other jobs: wall times include their load",
                 "settings": {"recipe": asdict(DEMO_CLASSIFIER["recipe"]), "seeds": [0], "preset": "model4", "samples": args.samples,
                              "slow_samples": args.slow_samples, "sanity_samples": args.sanity_samples,
                              "steps": trust.DEFAULT_STEPS}, "backbones": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "images"
            write_image_dataset(data, DEMO_IMAGES, progress=False)
        res["data"] = str(args.data or f"demo images {DEMO_IMAGES}")
        shipped = None
        for key, weights in (("default chain", None), ("random", "random")):
            t0 = time.perf_counter()
            paths = train_classifier_grid(ClassifierJob(data=data, runs_dir=Path(tmp) / "runs", weights=weights,
                                                        presets=("model4",), progress=False,
                                                        **{**DEMO_CLASSIFIER, "seeds": (0,)}))
            run = load_run(paths[0])
            b = run.info.backbone
            print(f"{b.label}: model4 test acc {run.metrics['test_acc']:.3f}", file=sys.stderr)
            res["backbones"][b.source if key == "default chain" else key] = {
                "weights": b.weights, "train_seconds": round(time.perf_counter() - t0, 1),
                "test_acc": round(run.metrics["test_acc"], 4),
                "methods": faithfulness(run, args.samples, args.slow_samples, args.sanity_samples)}
            shipped = shipped or run
        res["embedding_map"] = projection_seconds(shipped)
        model = load_model(shipped, device="cpu")
        x = sal.sample_input(shipped.info, shipped.predictions().iloc[0], use_keypoints=True)
        torch.manual_seed(0)
        big = build_classifier(get_preset("model4", 15)).eval()
        res["trust_seconds_per_gradient_map"] = [
            trust_seconds(model, x.image, x.keypoints, args.repeat, steps) for steps in (10, 5)] + [
            trust_seconds(big, torch.randn(3, 224, 224), torch.rand(17, 3), args.repeat, steps) for steps in (10, 5)]
        print(f"  trust scores per gradient map: {res['trust_seconds_per_gradient_map']}", file=sys.stderr)
    res["load_average_end"] = os.getloadavg()
    out = args.out or REPO / "bench" / "results" / f"trust-cpu-{dt.date.today().isoformat()}.json"
    write_json(out, res)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
