"""Run folders: the contract between training and the dashboard (DESIGN.md §4).

A run is one folder ``<runs_dir>/<run_id>/`` holding

    run.json             what was run: kind, name (preset/arch), config, data, backbone,
                         seed, device, git commit, times, versions
    history.csv          one row per finished epoch
    metrics.json         headline metrics of the best epoch; its presence = finished run
    predictions.parquet  per-sample (classifier) or per frame x keypoint (temporal) rows
    pck.csv              temporal only: keypoint x threshold table
    weights.safetensors  the trained weights (frozen backbones are referenced, not copied)

Every write is atomic. A folder without ``metrics.json`` is *unfinished*; one whose
``run.json`` cannot be read is *broken*. ``list_runs`` returns both kinds with a reason
instead of raising, so the dashboard can list them without crashing.

Models are rebuilt from a run only through ``load_model`` here.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import RunError
from core.io import atomic_path, write_json

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
HISTORY_CSV = "history.csv"
PREDICTIONS = "predictions.parquet"
PCK_CSV = "pck.csv"
WEIGHTS = "weights.safetensors"

DEFAULT_RUNS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def default_runs_dir() -> Path:
    """``$POSELAB_RUNS`` when set (tests, demos), else ``checkpoints/`` of the repo."""
    env = os.environ.get("POSELAB_RUNS")
    return Path(env).expanduser().resolve() if env else DEFAULT_RUNS_DIR


# ----------------------------------------------------------------------------- writing

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
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "pandas", "safetensors", "captum", "streamlit"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def make_run_id(name: str, when: _dt.datetime | None = None) -> str:
    """``20261123-141502-model4``: sorts by time, readable, filesystem-safe."""
    when = when or _dt.datetime.now()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    return f"{when:%Y%m%d-%H%M%S}-{safe}"


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """A new, empty, uniquely named run folder (suffix -2, -3 ... on a clash)."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = make_run_id(name)
    for i in range(1, 1000):
        path = runs_dir / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(runs_dir, f"could not create a unique run folder for {name!r}")


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Write run.json. ``info`` must hold at least kind and name; extras are kept."""
    for key in ("kind", "name"):
        if key not in info:
            raise ValueError(f"run.json needs {key!r}")
    info = {"run_id": run_dir.name, **info}
    info.setdefault("git_commit", git_commit())
    info.setdefault("versions", library_versions())
    write_json(run_dir / RUN_JSON, info)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Write metrics.json last: its presence marks the run finished.

    ``metrics`` must name its headline: ``{"headline": "test_acc", "test_acc": 0.93,
    "best_epoch": 7, ...}``.
    """
    if "headline" not in metrics or metrics["headline"] not in metrics:
        raise ValueError("metrics.json needs 'headline' naming one of its keys")
    write_json(run_dir / METRICS_JSON, metrics)


def write_table(path: Path, df) -> None:
    """Atomic CSV or parquet write of a pandas DataFrame, by suffix."""
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def save_weights(path: Path, state_dict: dict, metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (contiguous CPU copies; shared storage is split)."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(path: Path) -> dict:
    """Load a safetensors file (never unpickles). Raises RunError on a bad file."""
    from safetensors.torch import load_file
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
    info: dict[str, Any] = field(default_factory=dict)    # run.json ({} when broken)
    metrics: dict[str, Any] | None = None                 # metrics.json, None = unfinished
    problem: str | None = None                            # why it is broken/unfinished

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str | None:
        return self.info.get("kind")

    @property
    def name(self) -> str | None:
        return self.info.get("name")

    @property
    def status(self) -> str:
        if not self.info:
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

    def history(self):
        import pandas as pd
        return _read_table(self.path / HISTORY_CSV, pd.read_csv)

    def predictions(self):
        import pandas as pd
        return _read_table(self.path / PREDICTIONS, pd.read_parquet)

    def pck(self):
        import pandas as pd
        return _read_table(self.path / PCK_CSV, pd.read_csv)


def _read_table(path: Path, reader):
    if not path.exists():
        raise RunError(path, "file is missing (the run may be unfinished)")
    try:
        return reader(path)
    except Exception as e:
        raise RunError(path, f"cannot be read as a table ({type(e).__name__}: {e})") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise RunError(path, "file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(path, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunError(path, "expected a JSON object")
    return obj


def load_run(path: str | Path, *, require_finished: bool = False) -> Run:
    """Read a run folder. Broken or unfinished runs come back with ``problem`` set,
    unless ``require_finished`` is true, in which case they raise ``RunError``."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(path, "run folder does not exist")
    run = Run(path=path)
    try:
        run.info = _read_json(path / RUN_JSON)
        for key in ("kind", "name"):
            if key not in run.info:
                raise RunError(path / RUN_JSON, f"has no {key!r} field")
    except RunError as e:
        run.info, run.problem = {}, str(e)
    if run.info and (path / METRICS_JSON).exists():
        try:
            run.metrics = _read_json(path / METRICS_JSON)
        except RunError as e:
            run.problem = str(e)
    elif run.info:
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
    runs.sort(key=lambda r: (r.info.get("started_at", ""), r.id), reverse=True)
    return runs


def load_model(run: Run | str | Path, device: str = "cpu"):
    """Rebuild a run's model with its trained weights, in eval mode, on ``device``.

    The config in run.json is enough to rebuild the architecture; weights come from
    weights.safetensors (plus the referenced frozen backbone for classifiers).
    """
    if not isinstance(run, Run):
        run = load_run(run, require_finished=True)
    if run.kind == "classifier":
        from core.classification.model import rebuild_from_run
    elif run.kind == "temporal":
        from core.temporal.models import rebuild_from_run
    else:
        raise RunError(run.path, f"unknown run kind {run.kind!r}")
    model = rebuild_from_run(run, device=device)
    return model.eval()
