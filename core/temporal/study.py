"""``python -m core study temporal``: the thesis's protocol in one resumable command.

The thesis pre-trains its temporal models on BRACE and Penn Action through a simulated
estimator, then fine-tunes them at lr 1e-4 on BlazePose's heatmaps of its own climbing
videos (ClimbAlong), choosing the best epoch by validation PCK@0.05. Here:

1. **Stage 1 (pre-training).** For each noise scalar of the simulated estimator
   (``core.synthetic.estimator``; 1.0 reproduces the thesis's identity PCK, 2.0 doubles
   every error), a sequence dataset of PoseLab's animated bodies stands in for BRACE +
   Penn Action, and the learned models train on it from scratch.
2. **Stage 2 (fine-tuning).** A BlazePose dataset of rendered videos with about 10,000
   training windows stands in for ClimbAlong. Each stage-1 model is fine-tuned on it
   (``--init-from``, lr 1e-4); the same models trained on it from scratch show what the
   pre-training buys; every baseline (identity and the classical filters) is scored on
   the same windows.
3. **Tables.** The thesis's Table 1/2 layout: per stage, identity and the models at
   PCK@0.05/0.1/0.2 with bootstrap 95 % intervals over test windows, beside the thesis's
   numbers where PoseLab knows them (``THESIS``), written to ``<out>/study.json`` and
   ``<out>/study.md``.

Everything lands in ``<out>``: the datasets (made once, marked by their settings), the
runs of each stage in their own runs folder, the tables. A killed study started again
reuses every finished dataset and run and resumes the unfinished run (``RunLifecycle``),
so it can run in the background for hours on a CPU, or in minutes on a GPU.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core.engine import resolve_device
from core.errors import DataError
from core.io import read_json, write_json, write_text
from core.metrics import PCK_THRESHOLDS
from core.runs import git_commit, load_run
from core.synthetic.render import RENDER_VERSION
from core.temporal.models import BASELINES, LEARNED
from core.temporal.report import bootstrap_pck, check_frame_predictions, ci_table
from core.temporal.synth import SequenceSpec, write_sequence_dataset
from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal_grid

# What the thesis reports on ClimbAlong after fine-tuning, PCK@0.05/0.1/0.2 in %. Only
# the rows PoseLab knows are filled; the others are not carried here.
THESIS: dict[str, tuple[float, float, float] | None] = {
    "identity": (19.4, 66.1, 85.2), "conv3d": (49.7, 95.7, 99.2), "deciwatch": (76.9, 94.3, 99.2),
    "convlstm-sum": None, "convlstm-concat": None,
}
_MARK = "study-params.json"


@dataclass(frozen=True)
class StudyConfig:
    """The study's sizes: the default is sized for a few hours on a 2-core CPU."""
    out: Path                                        # work folder (datasets, runs, tables)
    noises: tuple[float, ...] = (1.0, 2.0)           # the simulated estimator's noise scalars (stage 1)
    sim_videos: int = 36                             # stage-1 videos per noise scalar ...
    sim_frames: int = 120                            # ... and frames each (~2,500 training windows)
    videos: int = 72                                 # stage-2 BlazePose videos ...
    frames: int = 240                                # ... and frames each (~10,000 training windows)
    heatmap: int = 32                                # heatmap side (BlazePose's 64 pooled)
    image_size: tuple[int, int] = (320, 240)         # stage-2 frames (the demo's)
    pretrain_epochs: int = 4                         # stage 1, from scratch (lr 1e-3)
    finetune_epochs: int = 2                         # stage 2 (lr 1e-4 from stage 1, 1e-3 from scratch):
                                                     # ~1,250 steps of batch 16, what fine-tuning needs
    # Models that get a multiple of both stages' epochs. DeciWatch starts from a zero
    # residual on coordinates and needs many more steps than the heatmap models (its Arch
    # recipe), while one of its epochs costs a tenth of theirs; with the same epochs it
    # stopped while validation was still rising.
    epoch_multiplier: dict = field(default_factory=lambda: {"deciwatch": 5})
    seed: int = 0
    device: str = "auto"
    # narrow models (the demo's widths): the thesis's full sizes take days on a CPU
    models: dict = field(default_factory=lambda: {
        "conv3d": {"hidden": 16}, "convlstm-sum": {"hidden": 8}, "convlstm-concat": {"hidden": 8},
        "deciwatch": {"embed_dim": 64, "heads": 4, "ffn_dim": 128, "encoder_layers": 2, "decoder_layers": 2,
                      "interval": 1}})


def _dataset(folder: Path, spec: SequenceSpec, progress: bool) -> Path:
    """``folder`` written from ``spec`` unless it already holds a finished dataset of it
    (its marker, written last, records the spec and the renderer's version)."""
    params = json.loads(json.dumps({**asdict(spec), "render_version": RENDER_VERSION}))
    try:
        if read_json(folder / _MARK) == params:
            return folder
    except Exception:   # missing or damaged marker: make it again
        pass
    write_sequence_dataset(folder, spec, progress=progress)
    write_json(folder / _MARK, params)
    return folder


def _plans(cfg: StudyConfig, epochs: int, lr: float | None, baselines: bool) -> tuple[ModelPlan, ...]:
    plans = tuple(ModelPlan(a, cfg.models.get(a, {}),
                            default_recipe(a, epochs=epochs * cfg.epoch_multiplier.get(a, 1), lr=lr))
                  for a in LEARNED)
    return plans + (tuple(ModelPlan(a) for a in BASELINES) if baselines else (ModelPlan("identity"),))


def run_study(cfg: StudyConfig, *, progress: bool = True) -> dict:
    """Run (or resume) the study; returns the tables also written to ``<out>/study.json``."""
    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DataError(out, "--out must be a folder")
    t0 = time.perf_counter()
    say = print if progress else (lambda *a, **k: None)
    stages: dict[str, list[Path]] = {}
    for noise in cfg.noises:
        spec = SequenceSpec(videos=cfg.sim_videos, frames=cfg.sim_frames, heatmap=cfg.heatmap, noise=noise,
                            seed=cfg.seed, estimator="simulated")
        data = _dataset(out / f"data-simulated-noise{noise:g}", spec, progress)
        say(f"stage 1, noise {noise:g}: training on {data}", flush=True)
        stages[f"pretrain-noise{noise:g}"] = train_temporal_grid(TemporalJob(
            data=data, runs_dir=out / f"runs-pretrain-noise{noise:g}", plans=_plans(cfg, cfg.pretrain_epochs, None, False),
            seeds=(cfg.seed,), device=cfg.device, reuse_finished=True, progress=progress))
    target = _dataset(out / "data-blazepose", SequenceSpec(videos=cfg.videos, frames=cfg.frames, heatmap=cfg.heatmap,
                                                           seed=cfg.seed, estimator="blazepose",
                                                           image_size=tuple(cfg.image_size)), progress)
    for noise in cfg.noises:
        say(f"stage 2: fine-tuning the noise-{noise:g} models on {target}", flush=True)
        stages[f"finetune-from-noise{noise:g}"] = train_temporal_grid(TemporalJob(
            data=target, runs_dir=out / f"runs-finetune-noise{noise:g}",
            plans=_plans(cfg, cfg.finetune_epochs, None, True), seeds=(cfg.seed,), device=cfg.device,
            init_from=out / f"runs-pretrain-noise{noise:g}", reuse_finished=True, progress=progress))
    say("stage 2: the same models from scratch on the BlazePose data", flush=True)
    stages["scratch"] = train_temporal_grid(TemporalJob(
        data=target, runs_dir=out / "runs-scratch", plans=_plans(cfg, cfg.finetune_epochs, None, False),
        seeds=(cfg.seed,), device=cfg.device, reuse_finished=True, progress=progress))
    result = {"config": {**asdict(cfg), "out": str(out)}, "thesis": THESIS, "code_version": git_commit(),
              "device": describe_device(cfg.device),
              "stages": {name: stage_table(paths) for name, paths in stages.items()},
              "seconds_this_call": round(time.perf_counter() - t0, 1)}
    result["orderings"] = orderings(result["stages"])
    write_json(out / "study.json", result)
    write_text(out / "study.md", markdown(result))
    return result


def describe_device(device: str) -> str:
    """What the study ran on, for its tables: the GPU's name, or the CPU's and its cores."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def stage_table(paths: list[Path]) -> list[dict]:
    """One row per run of a stage: PCK@a with bootstrap 95 % intervals over test windows
    (paired resampling: every run of the stage is scored on the same windows), and the
    motion metrics and wall time from metrics.json / run.json."""
    runs = [load_run(p, require_finished=True) for p in paths]
    preds = {r.name: check_frame_predictions(r.predictions(), r.file("predictions.parquet")) for r in runs}
    boot = bootstrap_pck(preds, unit="window", n_boot=1000, seed=0)
    rows = []
    for r in runs:
        row = {"model": r.name, "run": str(r.path), "epochs_run": r.metrics.get("epochs_run"),
               "best_epoch": r.metrics.get("best_epoch"),
               "seconds": round(float(r.info.phase_seconds.get("total", np.nan)), 1)}
        for a in PCK_THRESHOLDS:
            ci = ci_table(boot, float(a)).set_index(["run", "keypoint"])
            lo, hi = ci.loc[(r.name, "all"), ["lo", "hi"]]
            row[f"pck@{a:g}"] = r.metrics[f"test_pck@{a:g}"]
            row[f"pck@{a:g}_ci"] = [float(lo), float(hi)]
        for k in ("test_pck_auc", "test_accel_error", "test_jitter", "test_swapped_frames"):
            row[k.removeprefix("test_")] = r.metrics.get(k)
        rows.append(row)
    return rows


def orderings(stages: dict[str, list[dict]]) -> list[dict]:
    """The thesis's orderings, checked on every fine-tuning stage: each learned model
    beats identity at every threshold; DeciWatch is best at 0.05; Conv3D beats DeciWatch
    at 0.1. A comparison holds when the two 95 % intervals do not overlap, and is
    inconclusive when they do."""
    out = []
    for name, rows in stages.items():
        if not name.startswith(("finetune", "scratch")):
            continue
        by = {r["model"]: r for r in rows}

        def verdict(a: str, b: str, t: str) -> str:
            if a not in by or b not in by:
                return "missing runs"
            (alo, ahi), (blo, bhi) = by[a][f"pck@{t}_ci"], by[b][f"pck@{t}_ci"]
            return "holds" if alo > bhi else "does not hold" if ahi < blo else "inconclusive"
        for m in LEARNED:
            for t in ("0.05", "0.1", "0.2"):
                out.append({"stage": name, "claim": f"{m} > identity at PCK@{t}", "verdict": verdict(m, "identity", t)})
        for m in LEARNED:
            if m != "deciwatch":
                out.append({"stage": name, "claim": f"deciwatch > {m} at PCK@0.05",
                            "verdict": verdict("deciwatch", m, "0.05")})
        out.append({"stage": name, "claim": "conv3d > deciwatch at PCK@0.1", "verdict": verdict("conv3d", "deciwatch", "0.1")})
    return out


def markdown(result: dict) -> str:
    """The tables as Markdown (``study.md``): per stage, the thesis's numbers beside ours."""
    lines = ["# Temporal study (the thesis's protocol)", "",
             f"Settings: `{json.dumps({k: v for k, v in result['config'].items() if k != 'models'})}`", ""]
    for name, rows in result["stages"].items():
        lines += [f"## {name}", "", "| model | PCK@0.05 | PCK@0.1 | PCK@0.2 | AUC | accel | thesis (%) |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            cells = [f"{100 * r[f'pck@{a:g}']:.1f} [{100 * r[f'pck@{a:g}_ci'][0]:.1f}, "
                     f"{100 * r[f'pck@{a:g}_ci'][1]:.1f}]" for a in PCK_THRESHOLDS]
            thesis = result["thesis"].get(r["model"]) if name.startswith("finetune") else None
            lines.append(f"| {r['model']} | {' | '.join(cells)} | {_fmt(r.get('pck_auc'))} | "
                         f"{_fmt(r.get('accel_error'))} | {' / '.join(f'{v:g}' for v in thesis) if thesis else ''} |")
        lines.append("")
    lines += ["## The thesis's orderings", "", "| stage | claim | verdict |", "|---|---|---|"]
    lines += [f"| {o['stage']} | {o['claim']} | {o['verdict']} |" for o in result["orderings"]]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else ""


def quick(cfg: StudyConfig) -> StudyConfig:
    """A study small enough for a test (minutes on a CPU): the same steps, tiny sizes."""
    return replace(cfg, noises=cfg.noises[:2], sim_videos=5, sim_frames=12, videos=5, frames=12, heatmap=16,
                   image_size=(128, 96), pretrain_epochs=1, finetune_epochs=1)
