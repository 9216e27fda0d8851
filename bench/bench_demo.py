"""The whole embedded demo (``python -m core demo``) from nothing, timed per part.

    .venv/bin/python bench/bench_demo.py [--device cpu]

Renders the demo's images and videos and trains every demo run into a temporary folder
(nothing cached from an earlier build), with the backbone a new user gets offline. Writes
``bench/results/demo-<device>-<date>.json``: wall seconds of the classifier part (render,
BlazePose on each crop, feature pass, the presets' heads) and of the temporal part
(render, BlazePose on the frames, the four models), the total, every run's headline
figure, and the load average before and after (the budget is 5 minutes on an *idle*
2-core CPU: a busy machine measures its neighbours too).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.classification import compare  # noqa: E402
from core.demo import build_demo  # noqa: E402
from core.io import write_json  # noqa: E402
from core.runs import list_runs, load_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None,
                    help="build into this folder (data/ and runs/) and keep it, instead of a temporary one")
    args = ap.parse_args()
    os.environ.setdefault("POSELAB_OFFLINE", "1")
    res: dict = {"device": f"{args.device} ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, "
                           f"{os.cpu_count()} cores)",
                 "torch": torch.__version__, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        t0 = time.perf_counter()
        out = build_demo(data_dir=Path(tmp) / "data", runs_dir=Path(tmp) / "runs", device=args.device)
        res["total_seconds"] = round(time.perf_counter() - t0, 1)
        res["classifier_seconds"], res["temporal_seconds"] = out["classifier_seconds"], out["temporal_seconds"]
        res["runs"] = {}
        for part in ("classifier", "temporal"):
            for p in out[part]:
                run = load_run(p)
                m = run.metrics
                res["runs"][run.info.label] = {k: m[k] for k in m if k in ("test_acc", "headline") or
                                               k.startswith(("test_pck", "test_accel", "test_jitter"))}
                if part == "classifier" and run.info.backbone is not None:
                    res["backbone"] = {"source": run.info.backbone.source, "weights": run.info.backbone.weights}
        runs = list_runs(Path(tmp) / "runs")
        res["paper_findings"] = compare.paper_findings(runs, lambda r: r.predictions()).to_dict("records")
        res["paper_table"] = compare.paper_table(runs).drop(columns=["run_ids"]).to_dict("records")
    res["load_average_end"] = os.getloadavg()
    path = args.out or REPO / "bench" / "results" / f"demo-{args.device}-{dt.date.today().isoformat()}.json"
    write_json(path, res)
    print(f"demo: {res['total_seconds']} s (classifier {res['classifier_seconds']} s, temporal "
          f"{res['temporal_seconds']} s); wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
