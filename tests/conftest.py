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

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core import runs as R  # noqa: E402

FIXTURE_CLASSES = ["bridge", "plank", "squat", "tree"]


# ------------------------------------------------------------------ hand-made runs
# Written through core.runs writers, in the exact DESIGN.md §4 format, so the pages'
# contract with training is what is tested. Tiny and instant.

def _scene(path: Path, rng: np.random.Generator, size: int = 96) -> list[float]:
    """A coloured scene with one 'person' rectangle; returns its COCO bbox."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 230, 3)))
    d = ImageDraw.Draw(img)
    x, y = rng.integers(10, 40, 2)
    w, h = rng.integers(20, 45, 2)
    d.rectangle([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(20, 120, 3)))
    img.save(path)
    return [float(x), float(y), float(w), float(h)]


def _keypoints(bbox, rng) -> list[float]:
    x, y, w, h = bbox
    kp = np.zeros((17, 3))
    kp[:, 0] = x + rng.uniform(0, w, 17)
    kp[:, 1] = y + rng.uniform(0, h, 17)
    kp[:, 2] = 2
    kp[:5, 2] = 0      # InfiniteForm leaves the face unannotated
    kp[[9, 10], 2] = 1
    return kp.ravel().tolist()


def write_classifier_run(runs_dir: Path, data_root: Path, name: str, classes: list[str],
                         samples: list[dict], accuracy: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    C = len(classes)
    run = R.create_run_dir(runs_dir, name)
    R.write_run_info(run, {
        "kind": "classifier", "name": name,
        "config": {"model": {"preset": name}, "train": {"epochs": 3}},
        "data": {"root": str(data_root), "sources": [str(data_root / "test.json")],
                 "fingerprint": "fixture", "classes": classes, "num_train": 40, "num_val": 8,
                 "num_test": len(samples), "skipped": {}},
        "backbone": {"source": "random", "weights": None, "sha256": "0" * 64, "stored": None,
                     "warning": "offline: seeded random init"},
        "seed": seed, "device": "cpu", "started_at": f"2026-01-01T00:00:0{seed}+00:00",
        "ended_at": "2026-01-01T00:01:00+00:00", "phase_seconds": {"train": 1.5, "test": 0.2},
    })
    R.write_table(run / R.HISTORY_CSV, pd.DataFrame({
        "epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.1], "train_acc": [0.3, 0.5, 0.7],
        "val_loss": [2.1, 1.7, 1.4], "val_acc": [0.25, 0.4, accuracy], "lr": [1e-3] * 3,
        "seconds": [0.5] * 3}))
    rows = []
    for i, s in enumerate(samples):
        logits = rng.normal(size=C)
        pred = s["label"] if rng.random() < accuracy else int((s["label"] + 1 + rng.integers(C - 1)) % C)
        logits[pred] += 3.0
        p = np.exp(logits - logits.max())
        p /= p.sum()
        row = {"sample_id": f"{s['image_id']}_{s['person_index']}", "image_path": s["image_path"],
               "image_id": s["image_id"], "person_index": s["person_index"], "label": s["label"],
               "label_name": classes[s["label"]], "pred": pred, "pred_name": classes[pred],
               "confidence": float(p.max()), "correct": pred == s["label"], "bbox": s["bbox"],
               "keypoints": s["keypoints"]}
        row.update({f"prob_{c}": float(p[j]) for j, c in enumerate(classes)})
        rows.append(row)
    preds = pd.DataFrame(rows)
    R.write_table(run / R.PREDICTIONS, preds)
    acc = float(preds["correct"].mean())
    R.write_metrics(run, {"headline": "test_acc", "test_acc": acc, "test_loss": 1.0 - acc / 2,
                          "val_acc": accuracy, "val_loss": 1.4, "num_test": len(preds), "best_epoch": 3})
    return run


def write_temporal_run(runs_dir: Path, data_root: Path, arch: str, seed: int) -> Path:
    from core.keypoints import TEMPORAL25
    rng = np.random.default_rng(seed)
    run = R.create_run_dir(runs_dir, arch)
    R.write_run_info(run, {
        "kind": "temporal", "name": arch, "config": {"model": {"arch": arch}, "train": {}},
        "data": {"root": str(data_root), "sources": [], "fingerprint": "fixture",
                 "keypoints": list(TEMPORAL25), "num_train": 10, "num_val": 3, "num_test": 3,
                 "skipped": {}},
        "seed": seed, "device": "cpu", "started_at": f"2026-01-01T00:02:0{seed}+00:00",
        "phase_seconds": {"train": 2.0},
    })
    R.write_table(run / R.HISTORY_CSV, pd.DataFrame({
        "epoch": [1, 2], "train_loss": [0.5, 0.4], "train_pck": [0.3, 0.4], "val_loss": [0.6, 0.5],
        "val_pck": [0.25, 0.35], "lr": [1e-4, 1e-4], "seconds": [1.0, 1.0]}))
    pck = pd.DataFrame({"keypoint": list(TEMPORAL25)})
    for a, base in ((0.05, 0.3), (0.1, 0.7), (0.2, 0.9)):
        pck[f"pck@{a}"] = np.clip(base + rng.normal(0, 0.05, 25), 0, 1)
        pck[f"identity_pck@{a}"] = np.clip(base - 0.1 + rng.normal(0, 0.05, 25), 0, 1)
    pck["n_visible"] = 40
    thr = {"keypoint": "threshold_px", "pck@0.05": 0.8, "pck@0.1": 1.6, "pck@0.2": 3.2}
    pck = pd.concat([pck, pd.DataFrame([thr])], ignore_index=True)
    R.write_table(run / R.PCK_CSV, pck)
    R.write_metrics(run, {"headline": "test_pck@0.05", "test_pck@0.05": 0.3, "test_pck@0.1": 0.7,
                          "test_pck@0.2": 0.9, "identity_pck@0.05": 0.2, "identity_pck@0.1": 0.6,
                          "identity_pck@0.2": 0.8, "val_pck@0.05": 0.35, "num_test_windows": 6,
                          "best_epoch": 2})
    return run


def build_handmade_runs(root: Path) -> Path:
    runs_dir = root / "runs"
    data_root = root / "data"
    (data_root / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(24):
        rel = f"test/{i:04d}.rgb.png"
        bbox = _scene(data_root / rel, rng)
        samples.append({"image_id": i, "person_index": 0, "image_path": rel, "bbox": bbox,
                        "keypoints": _keypoints(bbox, rng), "label": i % len(FIXTURE_CLASSES)})
    for seed, (name, acc) in enumerate((("baseline", 0.25), ("model1", 0.6), ("model4", 0.85)), 1):
        write_classifier_run(runs_dir, data_root, name, FIXTURE_CLASSES, samples, acc, seed)
    write_temporal_run(runs_dir, data_root, "conv3d", 4)
    write_temporal_run(runs_dir, data_root, "identity", 5)
    return runs_dir


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def dashboard_runs(tmp_path_factory) -> Path:
    """A runs folder with classifier runs (baseline, model1, model4) and temporal runs
    (conv3d, identity); $POSELAB_RUNS points at it for the rest of the session."""
    root = tmp_path_factory.mktemp("dashboard")
    runs_dir = build_handmade_runs(root)
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
