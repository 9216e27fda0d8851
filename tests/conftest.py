"""Shared fixtures for the dashboard tests.

``dashboard_runs`` (session scope) builds a small runs folder once per test session and
points ``$POSELAB_RUNS`` at it for the whole session (restored afterwards). The
dashboard pages, AppTest tests and the browser test all read it.

``empty_runs`` / ``runs_with_broken`` are function-scoped folders for the edge cases.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core import runs as R  # noqa: E402

# An empty runs folder starts the demo build by itself in the dashboard; the tests that
# want that turn it back on. Set here so subprocesses (Streamlit servers) inherit it.
os.environ["POSELAB_AUTO_DEMO"] = "0"

# ------------------------------------------------------------------ the real pipeline
# The fixture runs come from the project's own code on tiny data (synthetic images and
# sequences, 1 epoch), so the pages are tested against exactly what training writes.
# Offline, the classifier uses the PoseLab backbone shipped in checkpoints/_poselab/

def build_fixture_runs(root: Path) -> Path:
    """Tiny synthetic datasets + classifier runs (baseline, model1, model4) and temporal
    runs (conv3d + the identity baseline the grid writes). ~30 s on a 2-core CPU."""
    from core.classification.train import ClassifierJob, TrainConfig, train_classifier_grid
    from core.synthetic.images import ImageSpec, write_image_dataset
    from core.temporal.synth import SequenceSpec, write_sequence_dataset
    from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal_grid

    runs_dir = root / "runs"
    write_image_dataset(root / "images", ImageSpec(n_train=30, n_test=15, seed=0, size=96,
                                                   people_max=2), progress=False)
    train_classifier_grid(ClassifierJob(data=root / "images", runs_dir=runs_dir, presets=("baseline", "model1", "model4"),
                                        recipe=TrainConfig(epochs=1, image_size=64), device="cpu", progress=False))
    # rendered frames through BlazePose (the default estimator), small: the pages then
    # show the frames, the heatmap overlay and the image-pixel keypoints
    write_sequence_dataset(root / "sequences", SequenceSpec(videos=6, frames=15, seed=0, heatmap=16,
                                                            image_size=(160, 120)), progress=False)
    train_temporal_grid(TemporalJob(data=root / "sequences", runs_dir=runs_dir, device="cpu", progress=False,
                                    plans=(ModelPlan("conv3d", recipe=default_recipe("conv3d", epochs=1)),)))
    return runs_dir


def run_dirs(runs_dir: Path, kind: str | None = None) -> dict[str, Path]:
    """name (preset/arch) -> run folder, for the finished runs of ``kind``."""
    return {r.name: r.path for r in R.list_runs(runs_dir, kind) if r.finished}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def dashboard_runs(tmp_path_factory) -> Path:
    """A runs folder with classifier runs (baseline, model1, model4) and temporal runs
    (conv3d, identity); $POSELAB_RUNS points at it for the rest of the session."""
    root = tmp_path_factory.mktemp("dashboard")
    runs_dir = build_fixture_runs(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("POSELAB_RUNS", str(runs_dir))
    yield runs_dir
    mp.undo()


@pytest.fixture
def empty_runs(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "empty_runs"
    d.mkdir()
    monkeypatch.setenv("POSELAB_RUNS", str(d))
    return d


@pytest.fixture
def runs_with_broken(dashboard_runs, tmp_path, monkeypatch) -> Path:
    """A copy of the fixture runs plus a run whose run.json is not JSON and an unfinished one."""
    d = tmp_path / "runs"
    shutil.copytree(dashboard_runs, d, ignore=shutil.ignore_patterns("_*"))
    bad = d / "20990101-000000-broken"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    unfinished = d / "20990101-000001-model2"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"kind": "classifier", "name": "model2"}))
    monkeypatch.setenv("POSELAB_RUNS", str(d))
    return d
