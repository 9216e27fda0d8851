"""Image cache build against the decode limit (target: >= 80% of cores x one core's rate).

Renders N synthetic scenes at --size px, then, in one run and interleaved so machine
noise hits every variant alike, repeats --repeats times:

* one core's decode + crop + resize rate over ALL samples (``image_cache.decode_rate``,
  in this process: the ceiling one worker can reach),
* the cache build with 1 worker and with every core (``build_image_cache``, each into a
  fresh folder, so each is a real build),

and prints the median of each and the build's fraction of cores x one core.

    .venv/bin/python bench/bench_image_cache.py --images 300 --size 640 \
        --out bench/results/image_cache-cpu-YYYYMMDD.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.classification.image_cache import build_image_cache, decode_rate  # noqa: E402
from core.classification.readers import load_pose_dataset  # noqa: E402
from core.synthetic.images import ImageSpec, write_image_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300, help="scenes to render (crops: ~1.5 per scene)")
    ap.add_argument("--size", type=int, default=640, help="scene side in px (renders are 1280x720)")
    ap.add_argument("--image-size", type=int, default=224, help="crop side in the cache")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-image-cache-"))
    try:
        write_image_dataset(tmp / "data", ImageSpec(n_train=args.images, n_test=1, seed=0, size=args.size,
                                                    people_max=2), progress=False)
        index = load_pose_dataset(tmp / "data")
        samples = [s for k in ("train", "val", "test") for s in index.splits[k]]
        rates: dict[str, list[float]] = {"one_core_decode": [], "build_1_worker": [], f"build_{cores}_workers": []}
        for r in range(args.repeats):
            rates["one_core_decode"].append(decode_rate(samples, image_size=args.image_size))
            for workers in (1, cores):
                stats: dict = {}
                out = tmp / f"cache-{r}-{workers}"
                build_image_cache(samples, fingerprint=index.fingerprint, image_size=args.image_size,
                                  margin=0.15, cache_dir=out, workers=workers, progress=False, stats=stats)
                rates[f"build_{workers}_worker" + ("s" if workers > 1 else "")].append(stats["images_per_s"])
                shutil.rmtree(out)
        med = {k: statistics.median(v) for k, v in rates.items()}
        ideal = med["one_core_decode"] * cores
        res = {
            "device": f"{platform.processor() or platform.machine()} CPU, {cores} cores",
            "date": time.strftime("%Y-%m-%d"), "load_average_1min_at_end": os.getloadavg()[0],
            "samples": len(samples), "scene_px": args.size, "image_size": args.image_size,
            "repeats": args.repeats, "images_per_s_all_runs": rates, "median_images_per_s": med,
            "ideal_images_per_s": ideal,
            "fraction_of_ideal": med[f"build_{cores}_workers"] / ideal,
            "one_worker_fraction_of_one_core": med["build_1_worker"] / med["one_core_decode"],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{res['samples']} crops from {args.size}px scenes -> {args.image_size}px, {cores} cores, "
          f"median of {args.repeats}:")
    print(f"  one core decode + crop + resize : {med['one_core_decode']:8.1f} img/s")
    print(f"  cache build, 1 worker           : {med['build_1_worker']:8.1f} img/s "
          f"({res['one_worker_fraction_of_one_core']:.0%} of one core)")
    print(f"  cache build, {cores} workers          : {med[f'build_{cores}_workers']:8.1f} img/s "
          f"= {res['fraction_of_ideal']:.0%} of {cores} x one core ({ideal:.1f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
