"""``python -m core demo``: the embedded default -- synthetic data + every run the
dashboard needs, in under 5 minutes on a 2-core CPU (under 1 minute on a GPU).

Progress protocol (the dashboard's Home page runs this as a subprocess and follows it):
lines ``progress <fraction 0..1> <message>`` on stdout, flushed, the fraction over the
WHOLE demo: classifier part 0 .. 0.7, temporal part 0.7 .. 1.0. Everything else
(tqdm bars, warnings) goes to stderr.

Idempotent: data already rendered with the same settings is reused, and presets that
already have a finished run of the identical call are not trained again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

# Classifier part sizes. 1,600 + 300 scenes of up to 2 people give ~2,400 / 240 / 450
# train / val / test people: enough for the keypoint presets to stand clearly above
# chance with the paper's recipe (10 epochs, batch 64), which 320 + 100 scenes were not
# (75 Adam steps). Crops are 112 px rather than the paper's 224: the feature pass, which
# dominates on CPU, is ~4x cheaper. Idle 2-core CPU: ~110 s for this part (README).
DEMO_IMAGES = dict(n_train=1600, n_test=300, seed=0, size=192, people_max=2)
DEMO_CLASSIFIER = dict(image_size=112, epochs=10, seed=0)


def progress(fraction: float, message: str) -> None:
    """One protocol line on stdout (flushed so a reading process sees it at once)."""
    print(f"progress {min(max(fraction, 0.0), 1.0):.3f} {message}", flush=True)


def build_demo(*, data_dir, runs_dir, device: str = "auto") -> dict:
    """Build the demo datasets and runs; returns {"classifier": [run dirs], ...}."""
    data_dir, runs_dir = Path(data_dir), Path(runs_dir)
    t0 = time.perf_counter()
    out = {"classifier": build_classifier_demo(data_dir=data_dir, runs_dir=runs_dir, device=device,
                                               lo=0.0, hi=0.7)}
    out["classifier_seconds"] = round(time.perf_counter() - t0, 1)

    # ---- temporal part (0.7 .. 1.0): synthetic sequences + the four models and identity
    from core.temporal.train import build_temporal_demo
    t1 = time.perf_counter()
    out["temporal"] = build_temporal_demo(data_dir=data_dir, runs_dir=runs_dir, device=device,
                                          report=progress, start=0.7, end=1.0)
    out["temporal_seconds"] = round(time.perf_counter() - t1, 1)

    progress(1.0, f"demo ready in {time.perf_counter() - t0:.0f} s")
    return out


def build_classifier_demo(*, data_dir: Path, runs_dir: Path, device: str = "auto",
                          lo: float = 0.0, hi: float = 0.7) -> list[Path]:
    """Synthetic fitness-pose images, then the paper's seven presets (one feature pass)."""
    from core.classification.train import train_classifier_grid

    def span(a: float, b: float):
        return lambda f, msg: progress(lo + (hi - lo) * (a + (b - a) * f), msg)

    images = data_dir / "images"
    render = span(0.0, 0.15)
    render(0.0, "rendering synthetic fitness-pose images")
    _render_once(images, DEMO_IMAGES, on_progress=lambda f: render(f, "rendering synthetic images"))
    render(1.0, "images ready")
    return train_classifier_grid(data=images, runs_dir=runs_dir, device=device, progress=False,
                                 reuse_finished=True, on_progress=span(0.15, 1.0), **DEMO_CLASSIFIER)


def _render_once(out: Path, params: dict, on_progress=None) -> None:
    """Render unless ``out`` already holds a complete rendering with these parameters."""
    from core.synthetic.images import write_image_dataset
    from core.io import write_json
    marker = out / "demo-params.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return
        except (OSError, json.JSONDecodeError):
            pass
    write_image_dataset(out, progress=False, on_progress=on_progress, **params)
    write_json(marker, params)      # written last: its presence means the rendering finished
