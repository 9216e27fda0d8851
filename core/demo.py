"""``python -m core demo``: the embedded default -- synthetic data + every run the dashboard
needs, in under 5 minutes on a 2-core CPU -- and ``DemoJob``, the background process the
dashboard's Home page starts and follows.

Progress protocol (docs/ARCHITECTURE.md, "Progress"): lines ``progress <fraction 0..1>
<message>`` on stdout, flushed, the fraction over the WHOLE demo: classifier part 0 .. 0.7,
temporal part 0.7 .. 1.0. Everything else (tqdm bars, warnings) goes to stderr.

Idempotent: data already made with the same settings is reused, and runs that already
exist finished for the identical call are not trained again.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from core import engine
from core.classification.train import ClassifierJob, TrainConfig, train_classifier_grid
from core.io import read_json, write_json
from core.synthetic.images import ANNOTATIONS_VERSION, ImageSpec, write_image_dataset
from core.synthetic.render import RENDER_VERSION
from core.temporal.blazepose_videos import HEATMAPS_VERSION
from core.temporal.models import BASELINES
from core.temporal.synth import SequenceSpec, write_sequence_dataset
from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal_grid

REPO = Path(__file__).resolve().parent.parent

# Classifier part sizes. 1,600 + 300 scenes of up to 2 people give ~2,400 / 240 / 450
# train / val / test people: enough for the keypoint presets to stand clearly above
# chance, which 320 + 100 scenes were not (75 Adam steps of the paper's 10 epochs).
# Crops are 112 px rather than the paper's 224: the feature pass, which dominates on
# CPU, is ~4x cheaper.
DEMO_IMAGES = ImageSpec(n_train=1600, n_test=300, seed=0, size=192, people_max=2)
# 112-px crops; the paper's recipe (Adam 1e-3, batch 64, StepLR x0.1 at 70 % of training)
# stretched in epochs: its 10 epochs over InfiniteForm's ~60,000 images are ~9,000 Adam
# steps, which 10 epochs over the demo's ~2,100 training people (~340 steps) are far from;
# 60 epochs give ~2,000. Three seeds per preset, so every comparison has an interval (the
# heads train on cached features: each extra seed costs seconds).
DEMO_CLASSIFIER = dict(recipe=TrainConfig(image_size=112, epochs=60, step_size=42), seeds=(0, 1, 2))

# Temporal part: about 35 s of the 5-minute budget on an idle 2-core CPU: 12 short videos
# rendered at 320 x 240 and run through BlazePose (its 64-px heatmaps pooled to 32 px),
# training windows every 2nd frame, narrow models, a few epochs each. Epochs and lr differ
# per model because their costs and step sizes differ: DeciWatch works on coordinates (an
# epoch costs ~0.5 s) and gets many more epochs, watching every frame (interval 1), at
# lr 1e-4: at 1e-3 one epoch's 7 Adam steps moved its residual by about PCK@0.05's radius
# (~1 heatmap px), noise the validation pick then had to choose between. The ConvLSTMs
# move slowly at 1e-3 in so few steps. Every setting lands in the runs' run.json.
DEMO_SEQUENCES = SequenceSpec(videos=12, frames=30, heatmap=32, estimator="blazepose", image_size=(320, 240))
DEMO_PLANS: tuple[ModelPlan, ...] = (
    ModelPlan("conv3d", {"hidden": 16}, default_recipe("conv3d", epochs=4, train_stride=2)),
    ModelPlan("deciwatch", {"embed_dim": 64, "heads": 4, "ffn_dim": 128, "encoder_layers": 2, "decoder_layers": 2,
                            "interval": 1},
              default_recipe("deciwatch", epochs=100, train_stride=2, lr=1e-4)),
    ModelPlan("convlstm-sum", {"hidden": 8}, default_recipe("convlstm-sum", epochs=5, train_stride=2, lr=3e-3)),
    ModelPlan("convlstm-concat", {"hidden": 8},
              default_recipe("convlstm-concat", epochs=5, train_stride=2, lr=3e-3)),
    *(ModelPlan(a, recipe=default_recipe(a, train_stride=2)) for a in BASELINES),
)
# Share of the temporal span per run, roughly proportional to its measured cost.
_TEMPORAL_COST = {"data": 1.0, "conv3d": 2.0, "deciwatch": 3.0, "convlstm-sum": 2.5,
                  "convlstm-concat": 2.5, **{a: 0.2 for a in BASELINES}}

Report = Callable[[float, str], None]


def progress(fraction: float, message: str) -> None:
    """One protocol line on stdout (flushed so a reading process sees it at once)."""
    print(f"progress {min(max(fraction, 0.0), 1.0):.3f} {message}", flush=True)


def build_demo(*, data_dir, runs_dir, device: str = "auto") -> dict:
    """Build the demo datasets and runs; returns {"classifier": [run dirs], ...}."""
    data_dir, runs_dir = Path(data_dir), Path(runs_dir)
    t0 = time.perf_counter()
    out = {"classifier": build_classifier_demo(data_dir=data_dir, runs_dir=runs_dir, device=device,
                                               report=progress, start=0.0, end=0.7)}
    out["classifier_seconds"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    out["temporal"] = build_temporal_demo(data_dir=data_dir, runs_dir=runs_dir, device=device,
                                          report=progress, start=0.7, end=1.0)
    out["temporal_seconds"] = round(time.perf_counter() - t1, 1)
    progress(1.0, f"demo ready in {time.perf_counter() - t0:.0f} s")
    return out


def _span(report: Report | None, start: float, end: float) -> Report:
    """``report`` with fractions of one part mapped into [start, end] of the whole demo."""
    if report is None:
        return lambda f, m: None
    return lambda f, m: report(start + (end - start) * f, m)


def _made_with(folder: Path, marker: str, params: dict) -> bool:
    """Whether ``folder`` holds a finished dataset made with exactly ``params``."""
    try:
        return read_json(folder / marker) == params
    except Exception:   # missing or damaged marker: make the data again
        return False


# ----------------------------------------------------------------------------- classifier part

def build_classifier_demo(*, data_dir: Path, runs_dir: Path, device: str = "auto",
                          report: Report | None = None, start: float = 0.0, end: float = 0.7) -> list[Path]:
    """Synthetic fitness-pose images, then the paper's seven presets (one feature pass)."""
    say = _span(report, start, end)
    images = Path(data_dir) / "images"
    say(0.0, "rendering synthetic fitness-pose images")
    # the annotation format enters the marker: a demo folder from an older writer is made again
    params = {**asdict(DEMO_IMAGES), "annotations_version": ANNOTATIONS_VERSION, "render_version": RENDER_VERSION}
    if not _made_with(images, "demo-params.json", params):
        write_image_dataset(images, DEMO_IMAGES, progress=False,
                            on_progress=lambda f: say(0.15 * f, "rendering synthetic images"))
        write_json(images / "demo-params.json", params)   # last: its presence = finished
    say(0.15, "images ready")
    job = ClassifierJob(data=images, runs_dir=runs_dir, device=device, progress=False, reuse_finished=True,
                        **DEMO_CLASSIFIER)
    paper = train_classifier_grid(job, on_progress=lambda f, m: say(0.15 + 0.7 * f, m))
    # model4 once more on BlazePose's keypoints of each crop: beside the annotation's run,
    # it shows how much of the accuracy rests on perfect keypoints
    say(0.85, "estimating keypoints (BlazePose) for model4 on estimated keypoints")
    estimated = train_classifier_grid(replace(job, presets=("model4",), keypoints="estimated"),
                                      on_progress=lambda f, m: say(0.85 + 0.15 * f, m))
    return paper + estimated


# ----------------------------------------------------------------------------- temporal part

def build_temporal_demo(*, data_dir, runs_dir, device: str = "auto", seed: int = 0,
                        report: Report | None = None, start: float = 0.7, end: float = 1.0) -> list[Path]:
    """Synthetic sequences + the four models and identity; returns their run folders.
    The data are loaded and windowed once for all runs."""
    # The demo's models are tiny (8-16 channels at 32 px): each op is too small for a
    # second CPU thread to pay, and on a busy machine oversubscribed threads spin.
    # Measured on the shared 2-core CPU: 33 s with 1 thread vs 177 s with 2, same PCKs.
    with engine.threads(engine.resolve_device(device), 1):
        return _temporal_runs(Path(data_dir), runs_dir, device, seed, _span(report, start, end))


def _temporal_runs(data_dir: Path, runs_dir, device: str, seed: int, say: Report) -> list[Path]:
    out = data_dir / "sequences"
    # as the marker file holds it (tuples -> lists); the heatmap conversion's version
    # enters it, so videos made by an older conversion are made again
    spec = replace(DEMO_SEQUENCES, seed=seed)
    settings = json.loads(json.dumps({**asdict(spec), "heatmaps_version": HEATMAPS_VERSION,
                                      "render_version": RENDER_VERSION}))
    if not _made_with(out, "demo-params.json", settings):
        say(0.0, "temporal: writing synthetic sequences")
        write_sequence_dataset(out, spec, progress=False)
        write_json(out / "demo-params.json", settings)
    total = sum(_TEMPORAL_COST.values())
    done = [_TEMPORAL_COST["data"]]

    def on_run(i: int, n: int, arch: str) -> None:
        if i:
            done.append(done[-1] + _TEMPORAL_COST[DEMO_PLANS[i - 1].arch])
        say(done[-1] / total, f"temporal: {'tuning' if arch in BASELINES else 'training'} {arch}")

    def on_epoch(arch: str, epoch: int, row: dict) -> None:
        epochs = next(p.recipe.epochs for p in DEMO_PLANS if p.arch == arch)
        f = done[-1] + _TEMPORAL_COST[arch] * epoch / max(epochs, 1)
        say(f / total, f"temporal: {arch} epoch {epoch}/{epochs}, val PCK@0.05 {row['val_pck']:.3f}")

    job = TemporalJob(data=out, runs_dir=runs_dir, plans=DEMO_PLANS, seeds=(seed,), device=device,
                      reuse_finished=True, progress=False)
    paths = train_temporal_grid(job, on_run=on_run, on_epoch=on_epoch)
    say(1.0, "temporal: done")
    return paths


# ----------------------------------------------------------------------------- the background job
# The demo trains models, so the dashboard runs it as a separate `python -m core demo`
# process: a closed tab or a rerun cannot leave half-written runs, and the page only
# follows the `progress <fraction> <message>` lines it prints to its log.

DEMO_LOG = "_demo.log"
DEMO_PID = "_demo.pid"


@dataclass
class JobState:
    """What the Home page shows of a demo build."""
    running: bool
    returncode: int | None        # None while running (or unknown)
    fraction: float
    message: str
    elapsed_s: float | None
    log_tail: str                 # the last lines that are not progress lines


class DemoJob:
    """The demo build of one runs folder, as a background process. Its pid file and log
    live in the runs folder, so any dashboard session (or server) can follow it."""

    _live: dict[str, subprocess.Popen] = {}      # runs folder -> Popen started by this process

    def __init__(self, runs_dir: Path):
        self.root = Path(runs_dir)
        self.log, self.pid_file = self.root / DEMO_LOG, self.root / DEMO_PID

    def command(self) -> list[str]:
        return [sys.executable, "-m", "core", "demo", "--runs", str(self.root),
                "--data-dir", str(self.root / "_demo_data")]

    def start(self) -> int:
        """Start the build in the background (a new session, so it outlives the page)."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "POSELAB_RUNS": str(self.root)}
        with open(self.log, "w") as log:        # the child keeps its own descriptor
            proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        DemoJob._live[str(self.root)] = proc
        write_json(self.pid_file, {"pid": proc.pid, "started_at": time.time()})
        return proc.pid

    def stop(self) -> None:
        """Stop a running build (its whole process group); finished runs stay."""
        meta = self._meta()
        if meta is None or not self._alive(meta[0]):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(meta[0]), 15)
        proc = DemoJob._live.get(str(self.root))
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        with open(self.log, "a") as log:
            log.write("stopped by the user\n")

    def clear(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        DemoJob._live.pop(str(self.root), None)

    def _meta(self) -> tuple[int, float] | None:
        try:
            meta = json.loads(self.pid_file.read_text())
            return int(meta["pid"]), float(meta.get("started_at", 0))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        try:   # a reused pid that is not our demo does not count
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            return b"core" in cmd and b"demo" in cmd
        except OSError:
            return True

    def state(self) -> JobState | None:
        """None when no build was started here; else its state, read from the pid file and
        the log (works across reruns, sessions and servers; reaps our own child)."""
        meta = self._meta()
        if meta is None:
            return None
        pid, started = meta
        proc = DemoJob._live.get(str(self.root))
        if proc is not None and proc.pid == pid:
            rc = proc.poll()
            running = rc is None
        else:
            running, rc = self._alive(pid), None
        lines: list[str] = []
        with contextlib.suppress(OSError):
            lines = self.log.read_text(errors="replace").splitlines()
        fraction, message = 0.0, "starting..."
        for line in reversed(lines):
            parts = line.split(maxsplit=2)
            if len(parts) >= 2 and parts[0] == "progress":
                with contextlib.suppress(ValueError):
                    fraction = min(1.0, max(0.0, float(parts[1])))
                    message = parts[2] if len(parts) > 2 else ""
                    break
        if not running and rc is None:   # started by another server process: judge by the log
            failed = any(line.startswith(("error", "Traceback", "stopped by the user")) for line in lines)
            rc = 1 if failed else 0
        return JobState(running=running, returncode=rc, fraction=fraction, message=message,
                        elapsed_s=max(0.0, time.time() - started) if started else None,
                        log_tail="\n".join(line for line in lines[-15:] if not line.startswith("progress ")))
