"""BlazePose on rendered videos: its identity PCK beside the study's, and what each temporal
model makes of it, in one run (same data, same seeds, the demo's model settings).

    .venv/bin/python bench/bench_blazepose_sequences.py [--videos 24 --frames 40 --heatmap 32]

Writes ``bench/results/blazepose-sequences-<device>-<date>.json``: the dataset's size and
time (render + estimate), the share of frames with a person found, the identity PCK on
the whole dataset and on the test split, and per model its test PCK@0.05 / 0.1 / 0.2,
epochs and seconds. The study's identity baseline (its estimator on ClimbAlong):
19.4 / 66.1 / 85.2.
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

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.demo import DEMO_PLANS  # noqa: E402
from core.io import write_json  # noqa: E402
from core.runs import load_run  # noqa: E402
from core.temporal.synth import SequenceSpec, write_sequence_dataset  # noqa: E402
from core.temporal.train import TemporalJob, train_temporal_grid  # noqa: E402

STUDY_IDENTITY = {"0.05": 0.194, "0.1": 0.661, "0.2": 0.852}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--heatmap", type=int, default=32)
    ap.add_argument("--frame-size", default="320x240")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.frame_size.split("x"))
    torch.set_num_threads(1)            # the demo's setting for its tiny models
    res: dict = {"device": f"cpu ({platform.processor() or platform.machine()}, 2 cores)",
                 "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "settings": vars(args) | {"out": None}, "study_identity_pck": STUDY_IDENTITY}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = write_sequence_dataset(Path(tmp) / "seq", SequenceSpec(videos=args.videos, frames=args.frames,
                                                                         seed=args.seed, heatmap=args.heatmap,
                                                                         image_size=(w, h)), progress=False)
        res["dataset"] = {"seconds": round(time.perf_counter() - t0, 1), "frames": args.videos * args.frames,
                          "frames_per_s": round(args.videos * args.frames / (time.perf_counter() - t0), 1),
                          "frames_with_a_person": summary["frames_with_a_person"],
                          "identity_pck_all_frames": summary["identity_pck"]}
        res["models"] = {}
        t0 = [time.perf_counter()]

        def on_run(i, n, arch):
            t0[0] = time.perf_counter()
        job = TemporalJob(data=Path(tmp) / "seq", runs_dir=Path(tmp) / "runs", plans=DEMO_PLANS, seeds=(args.seed,),
                          device="cpu", progress=False)
        for path in train_temporal_grid(job, on_run=on_run):
            r = load_run(path)
            m = r.metrics
            res["models"][r.name] = {"test_pck": {a: round(m[f"test_pck@{a}"], 4) for a in ("0.05", "0.1", "0.2")},
                                     "accel_error": round(m["test_accel_error"], 4),
                                     "jitter": round(m["test_jitter"], 4),
                                     "epochs_run": m["epochs_run"],
                                     "seconds": round(r.info.phase_seconds.get("total", 0.0), 1)}
            if r.name == "identity":
                res["identity_pck_test"] = res["models"][r.name]["test_pck"]
        ident = res["identity_pck_test"]
        for arch, r in res["models"].items():
            r["beats_identity"] = {a: r["test_pck"][a] > ident[a] for a in ident} if arch != "identity" else None
    out = args.out or REPO / "bench" / "results" / f"blazepose-sequences-cpu-{dt.date.today()}.json"
    write_json(out, res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
