"""Run folders: the contract between training and the dashboard (docs/ARCHITECTURE.md,
"A run on disk").

A run is one folder ``<runs_dir>/<run_id>/`` holding

    run.json             the typed ``RunInfo`` record: kind, name (preset/arch), config, data,
                         backbone, seed, device, git commit, times, versions
    history.csv          one row per finished epoch
    last.safetensors     resume checkpoint while the run is unfinished (``core.engine``)
    weights.safetensors  the trained weights of the best epoch (frozen backbones are referenced)
    predictions.parquet  per-sample (classifier) or per frame x keypoint (temporal) rows
    pck.csv              temporal only: keypoint x threshold table
    metrics.json         headline metrics of the best epoch; written last, its presence = finished

Every write is atomic. A folder without ``metrics.json`` is *unfinished*; one whose
``run.json`` cannot be read is *broken*. ``list_runs`` returns both kinds with a reason
instead of raising, so the dashboard can list them without crashing.

Writing a run folder, and who may, is ``core.run_writer``; the lifecycle around it is
``core.engine.RunLifecycle``. A run being written is *live* (``is_live``): its writer holds
the OS lock on its ``.lock`` file, and ``find_run`` never offers a live run for resuming.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
from safetensors.torch import load_file, save_file

from core.errors import RunError
from core.io import atomic_path, is_locked, read_json

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
HISTORY_CSV = "history.csv"
PREDICTIONS = "predictions.parquet"
PCK_CSV = "pck.csv"
WEIGHTS = "weights.safetensors"
LAST = "last.safetensors"      # resume checkpoint of an unfinished run (removed when finished)
LOCK = ".lock"                 # flock-ed by the process writing the run (see the module docstring)

DEFAULT_RUNS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def default_runs_dir() -> Path:
    """``$POSELAB_RUNS`` when set (tests, demos), else ``checkpoints/`` of the repo."""
    env = os.environ.get("POSELAB_RUNS")
    return Path(env).expanduser().resolve() if env else DEFAULT_RUNS_DIR


# ----------------------------------------------------------------------------- the record

def _split_known(cls, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


@dataclass
class DataInfo:
    """run.json ``data``: what the run was trained and scored on."""
    root: str = ""                              # absolute dataset folder
    sources: list[str] = field(default_factory=list)   # annotation / index / label files read
    fingerprint: str | None = None              # content fingerprint (resume and cache key)
    num_train: int | None = None                # samples (classifier) or windows (temporal)
    num_val: int | None = None
    num_test: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> count of unusable items
    classes: list[str] | None = None            # classifier: class names in label order
    keypoint_source: str | None = None          # classifier: "annotation" or "estimated" keypoints
    keypoint_estimator: str | None = None       # classifier: the estimator's version, when estimated
    keypoints_found: float | None = None        # classifier: share of crops it found a person in
    keypoints: list[str] | None = None          # temporal: keypoint names (TEMPORAL25)
    videos: dict[str, int] | None = None        # temporal: videos per split
    estimator: str | None = None                # temporal: what made the input heatmaps
    heatmap_size: list[int] | None = None       # temporal: (H, W) of the heatmaps trained on
    extra: dict[str, Any] = field(default_factory=dict)    # keys this version does not know

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DataInfo":
        known, extra = _split_known(cls, d or {})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        return {**d, **self.extra}


@dataclass
class BackboneInfo:
    """run.json ``backbone`` (classifier runs): where the ResNet-50 weights came from."""
    source: str = "?"                           # "imagenet", "poselab", "file" or "random"
    weights: str = ""                           # torchvision enum, file path, or "seed=N"
    sha256: str | None = None                   # of the weights actually used (after BN calibration)
    stored: str | None = None                   # copy under <runs>/_backbones/ when nowhere else
    warning: str | None = None                  # shown wherever the run is shown
    card: dict[str, Any] | None = None          # the PoseLab backbone's card (how it was made)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "BackboneInfo | None":
        if not d:
            return None
        known, extra = _split_known(cls, d)
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "card")}
        if self.card is not None:
            d["card"] = self.card
        return {**d, **self.extra}

    @property
    def label(self) -> str:
        """How every page names the backbone."""
        if self.source == "file" and self.card:
            return f"PoseLab synthetic pretraining (file {Path(self.weights).name})"
        return BACKBONE_LABELS.get(self.source, self.source)

    @property
    def made(self) -> str:
        """How a PoseLab backbone was made, from its card ("" for the other sources)."""
        if self.source not in ("poselab", "file") or not self.card:
            return ""
        c, data = self.card, self.card.get("data", {})
        if c.get("task") == "pose":
            labels = "label-free"
        elif c.get("class_family") == "pretrain":
            labels = f"with {len(c.get('classes') or [])} pretraining classes, none of the demo's"
        else:
            labels = "with the demo's 15 class labels"
        n = data.get("train_samples")
        return (f"ResNet-50 trained from scratch on {f'{n:,}' if isinstance(n, int) else '?'} rendered crops "
                f"(task {c.get('task', '?')}, {labels}, {c.get('epochs', '?')} epochs, "
                f"{c.get('image_size', '?')} px), not ImageNet")


BACKBONE_LABELS = {"imagenet": "ImageNet (torchvision)", "poselab": "PoseLab synthetic pretraining",
                   "file": "weights file", "random": "random init"}


@dataclass
class RunInfo:
    """run.json as a typed record; ``from_dict`` reads every version PoseLab wrote (unknown
    keys are kept in ``extra`` and written back)."""
    kind: str                                   # "classifier" or "temporal"
    name: str                                   # preset or arch
    config: dict[str, Any] = field(default_factory=dict)   # {"model": ..., "train": ...}
    data: DataInfo = field(default_factory=DataInfo)
    seed: int = 0
    device: str = "cpu"
    init_from: str | None = None                # run folder the weights started from
    backbone: BackboneInfo | None = None        # classifier runs
    feature_cache: bool | None = None           # classifier: trained on cached features
    image_decoder: str | None = None            # classifier: what decoded the image cache
    distributed: dict[str, Any] = field(default_factory=lambda: {"world_size": 1, "backend": None})
    started_at: str | None = None
    ended_at: str | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    resumed_after_epoch: list[int] = field(default_factory=list)
    run_id: str | None = None
    git_commit: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunInfo":
        known, extra = _split_known(cls, d)
        known["data"] = DataInfo.from_dict(known.get("data"))
        known["backbone"] = BackboneInfo.from_dict(known.get("backbone"))
        for key in ("distributed", "phase_seconds", "config", "versions"):
            if known.get(key) is None:
                known.pop(key, None)
        known["resumed_after_epoch"] = list(known.get("resumed_after_epoch") or [])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "data", "backbone")}
        d["data"] = self.data.to_dict()
        d["backbone"] = self.backbone.to_dict() if self.backbone is not None else None
        if self.backbone is None and self.kind != "classifier":
            del d["backbone"]
        if not self.resumed_after_epoch:        # only resumed runs carry it
            del d["resumed_after_epoch"]
        return {"run_id": d.pop("run_id"), **d, **self.extra}

    def identity(self) -> dict[str, Any]:
        """What makes two calls the same run: a finished run with this identity can be
        reused, an unfinished one resumed (``find_run``)."""
        return {"kind": self.kind, "name": self.name, "config": self.config, "seed": self.seed,
                "init_from": self.init_from, "data.fingerprint": self.data.fingerprint,
                "data.keypoint_source": self.data.keypoint_source or None,
                "data.keypoint_estimator": self.data.keypoint_estimator,
                "backbone.sha256": self.backbone.sha256 if self.backbone else None}

    @property
    def world_size(self) -> int:
        return int((self.distributed or {}).get("world_size") or 1)

    def tags(self) -> list[str]:
        """What tells two runs of one name apart: the keypoint source of a keypoint preset,
        the backbone (its source and the start of its sha256), the seed."""
        out = []
        if self.data.keypoint_source:
            out.append(self.data.keypoint_source)
        if self.backbone is not None:
            out.append(self.backbone.source + (f"-{self.backbone.sha256[:6]}" if self.backbone.sha256 else ""))
        out.append(f"s{self.seed}")
        return out

    @property
    def slug(self) -> str:
        """The run folder's name after its time stamp: ``model4-estimated-poselab-d7f077-s0``."""
        return "-".join([self.name, *self.tags()])

    @property
    def label(self) -> str:
        """How listings name the run: ``model4 · estimated keypoints · poselab d7f077 · seed 0``."""
        parts = [self.name]
        if self.data.keypoint_source:
            parts.append(f"{self.data.keypoint_source} keypoints")
        if self.backbone is not None:
            parts.append(f"{self.backbone.source} {self.backbone.sha256[:6] if self.backbone.sha256 else ''}".strip())
        parts.append(f"seed {self.seed}")
        return " · ".join(parts)


def _comparable(identity: dict[str, Any]) -> dict[str, Any]:
    """Runs written before keypoint sources existed read the annotations: same as "annotation"."""
    if identity.get("data.keypoint_source") == "annotation":
        identity = {**identity, "data.keypoint_source": None}
    return identity


# ----------------------------------------------------------------------------- small writers

def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "pandas", "safetensors", "captum", "streamlit",
                "mediapipe", "ai-edge-litert"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_table(path: Path, df: pd.DataFrame) -> None:
    """Atomic CSV or parquet write of a DataFrame, by suffix."""
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def save_weights(path: Path, state_dict: dict, metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (contiguous CPU copies; shared storage is split)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(path: Path) -> dict:
    """Load a safetensors file (never unpickles). Raises RunError on a bad file."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise RunError(path, "weights file is missing") from None
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise RunError(path, f"not a readable safetensors file ({e})") from None


# ----------------------------------------------------------------------------- reading

@dataclass
class Run:
    """A run folder as the dashboard and CLI see it."""
    path: Path
    info: RunInfo | None = None                           # run.json (None when broken)
    metrics: dict[str, Any] | None = None                 # metrics.json, None = unfinished
    problem: str | None = None                            # why it is broken/unfinished

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str | None:
        return self.info.kind if self.info else None

    @property
    def name(self) -> str | None:
        return self.info.name if self.info else None

    @property
    def status(self) -> str:
        if self.info is None:
            return "broken"
        return "finished" if self.metrics is not None else "unfinished"

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def headline(self) -> tuple[str, float] | None:
        if not self.metrics:
            return None
        key = self.metrics.get("headline")
        return (key, self.metrics.get(key)) if key else None

    def file(self, name: str) -> Path:
        return self.path / name

    def history(self) -> pd.DataFrame:
        return _read_table(self.path / HISTORY_CSV, pd.read_csv)

    def predictions(self) -> pd.DataFrame:
        return _read_table(self.path / PREDICTIONS, pd.read_parquet)

    def pck(self) -> pd.DataFrame:
        return _read_table(self.path / PCK_CSV, pd.read_csv)


def _read_table(path: Path, reader):
    if not path.exists():
        raise RunError(path, "file is missing (the run may be unfinished)")
    try:
        return reader(path)
    except Exception as e:
        raise RunError(path, f"cannot be read as a table ({type(e).__name__}: {e})") from None


def _read_object(path: Path) -> dict[str, Any]:
    obj = read_json(path, error=RunError)
    if not isinstance(obj, dict):
        raise RunError(path, "expected a JSON object")
    return obj


def read_info(path: Path) -> RunInfo:
    """The RunInfo of ``path/run.json``; RunError when it is missing or not a run record."""
    d = _read_object(path / RUN_JSON)
    for key in ("kind", "name"):
        if key not in d:
            raise RunError(path / RUN_JSON, f"has no {key!r} field")
    try:
        return RunInfo.from_dict(d)
    except (TypeError, ValueError) as e:
        raise RunError(path / RUN_JSON, f"not a run record ({e})") from None


def load_run(path: str | Path, *, require_finished: bool = False) -> Run:
    """Read a run folder. Broken or unfinished runs come back with ``problem`` set,
    unless ``require_finished`` is true, in which case they raise ``RunError``."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(path, "run folder does not exist")
    run = Run(path=path)
    try:
        run.info = read_info(path)
    except RunError as e:
        run.problem = str(e)
    if run.info is not None and (path / METRICS_JSON).exists():
        try:
            run.metrics = _read_object(path / METRICS_JSON)
        except RunError as e:
            run.problem = str(e)
    elif run.info is not None:
        run.problem = f"{path.name}: unfinished (no {METRICS_JSON} yet)"
    if require_finished and not run.finished:
        raise RunError(path, run.problem or "run is not finished")
    return run


def list_runs(runs_dir: str | Path | None = None, kind: str | None = None) -> list[Run]:
    """All run folders under ``runs_dir``, newest first; never raises on a bad run.

    Folders whose names start with '_' or '.' (caches, content-addressed backbones)
    are not runs.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not runs_dir.is_dir():
        return []
    runs = []
    for p in runs_dir.iterdir():
        if not p.is_dir() or p.name[:1] in "._":
            continue
        run = load_run(p)
        if kind is None or run.kind == kind:
            runs.append(run)
    runs.sort(key=lambda r: ((r.info.started_at if r.info else None) or "", r.id), reverse=True)
    return runs


def is_live(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lock, i.e. is writing that run now."""
    return is_locked(folder / LOCK)


def seed_groups(runs) -> list[list[Run]]:
    """The finished runs grouped by everything but their seed (``RunInfo.identity``): each
    group is one variant trained with several seeds, newest first; a seed that appears
    twice counts once (its newest run). Groups are in the order of their newest run."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if not r.finished or r.info is None:
            continue
        ident = {k: v for k, v in _comparable(r.info.identity()).items() if k != "seed"}
        group = groups.setdefault(json.dumps(ident, sort_keys=True, default=str), [])
        if all(g.info.seed != r.info.seed for g in group):
            group.append(r)
    return list(groups.values())


def find_run(runs_dir: str | Path, identity: dict[str, Any], *, finished: bool) -> Path | None:
    """The newest run with this ``RunInfo.identity()``: a finished one (to reuse it) or an
    unfinished one that has a resume checkpoint and that no live process writes (to
    resume it)."""
    for path in _identical(runs_dir, identity, finished=finished):
        if finished or not is_live(path):
            return path
    return None


def _identical(runs_dir: str | Path, identity: dict[str, Any], *, finished: bool) -> Iterator[Path]:
    for run in list_runs(runs_dir, kind=identity["kind"]):
        if run.finished != finished or run.info is None:
            continue
        if not finished and not (run.path / LAST).is_file():
            continue                 # killed before its first epoch ended: nothing to resume
        if _comparable(run.info.identity()) == _comparable(identity):
            yield run.path


