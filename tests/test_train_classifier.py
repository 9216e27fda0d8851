"""End-to-end classifier training on tiny data: run folders in the contract format, the
feature cache equal to training through the frozen backbone, resume after a kill,
NaN loss, bad input. CPU, 48 px scenes, 32 px crops, 1-2 epochs. The grid runs once per
module; other tests start from a copy of its feature cache (hard links), so only the
cache-vs-backbone test runs ResNet-50 over images again."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import runs as R
from core.classification import train as T
from core.classification.backbones import resolve_backbone
from core.classification.model import fc_width
from core.errors import DataError, RunError, TrainingError
from core.models import load_model
from core.synthetic.images import ANNOTATIONS_VERSION

REPO = Path(__file__).resolve().parent.parent
SIZE = 32          # crop side fed to ResNet-50 (224 in the paper; 32 still gives 1x1 at layer4)


def _write_tiny(root: Path, n_train: int, n_test: int, classes: tuple[str, ...]) -> Path:
    """Hand-made InfiniteForm-layout dataset with chosen class names (renderer-independent)."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        d = root / split
        d.mkdir(parents=True)
        images, anns = [], []
        for i in range(n):
            c, iid = i % len(classes), i + 1
            img = Image.new("RGB", (48, 48), (90, 90, 90))
            x, y = (int(v) for v in rng.integers(4, 12, 2))
            w, h = (int(v) for v in 20 + rng.integers(0, 8, 2))
            ImageDraw.Draw(img).rectangle([x, y, x + w, y + h], fill=[(220, 40, 40), (40, 220, 40), (40, 40, 220)][c])
            img.save(d / f"{iid}.rgb.png")
            kp = [v for k in range(17) for v in (float(x + (k * (c + 1)) % w), float(y + (k * 3) % h), 2)]
            images.append({"id": iid, "file_name": f"{iid}.rgb.png", "width": 48, "height": 48})
            anns.append({"id": iid, "image_id": iid, "keypoints": kp, "num_keypoints": 17,
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                         "pose_category": classes[c], "iscrowd": 0})
        (d / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return root


def job(data, runs_dir, *presets, epochs=2, batch_size=4, image_size=SIZE, feature_cache=True, **kw) -> T.ClassifierJob:
    """A job with a tiny recipe: the named presets (the paper's seven when none is named)."""
    recipe = T.TrainConfig(epochs=epochs, batch_size=batch_size, image_size=image_size, feature_cache=feature_cache)
    return T.ClassifierJob(data=data, runs_dir=runs_dir, presets=presets or T.PAPER_PRESETS, recipe=recipe,
                           progress=False, **kw)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("POSELAB_OFFLINE", "1")   # never try to download ImageNet weights


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The project's own renderer: 10 + 4 scenes of 64 px, up to 2 people each."""
    from core.synthetic.images import ImageSpec, write_image_dataset
    out = tmp_path_factory.mktemp("data") / "synth"
    write_image_dataset(out, ImageSpec(n_train=10, n_test=4, seed=0, size=64, people_max=2), progress=False)
    return out


@pytest.fixture(scope="module")
def grid(data, tmp_path_factory):
    """The paper's seven presets, 2 epochs, one shared feature pass (computed once here)."""
    import os
    os.environ["POSELAB_OFFLINE"] = "1"
    runs_dir = tmp_path_factory.mktemp("runs")
    paths = T.train_classifier_grid(job(data, runs_dir))
    return runs_dir, paths


@pytest.fixture
def warm_runs(grid, tmp_path) -> Path:
    """A fresh runs folder that already holds the grid's feature cache and backbone."""
    src, _ = grid
    dst = tmp_path / "runs"
    for sub in ("_cache", "_backbones"):          # _backbones only for a random init
        if (src / sub).is_dir():
            shutil.copytree(src / sub, dst / sub, copy_function=os.link)
    return dst


def test_grid_writes_one_finished_run_per_preset_in_the_contract_format(grid, data):
    runs_dir, paths = grid
    assert [R.load_run(p).name for p in paths] == list(T.PAPER_PRESETS)
    shipped_fc = fc_width(resolve_backbone("poselab", runs_dir=runs_dir)[0])   # the backbone's own final layer
    # one shared feature pass: one cache file for the dataset + backbone + size
    caches = list((runs_dir / "_cache" / "features").glob("*.safetensors"))
    assert len(caches) == 1 and caches[0].name.endswith(f"-{SIZE}.safetensors")
    # offline, the shipped PoseLab backbone: referenced, never copied into the runs folder
    assert not (runs_dir / "_backbones").exists()
    listed = R.list_runs(runs_dir)
    assert len(listed) == 7 and all(r.finished for r in listed)
    for p in paths:
        run = R.load_run(p, require_finished=True)
        info, m = json.loads((p / R.RUN_JSON).read_text()), run.metrics   # the on-disk contract
        classes = info["data"]["classes"]
        assert info["kind"] == "classifier"
        assert info["config"]["model"] == T.get_preset(run.name, len(classes), shipped_fc).to_dict()
        assert info["config"]["train"]["epochs"] == (0 if run.name == "baseline" else 2)
        assert classes == sorted(classes) and len(classes) >= 3 and m["num_test"] >= 4
        assert info["data"]["root"] == str(data.resolve())
        assert info["backbone"]["source"] == "poselab" and info["backbone"]["card"]["sha256"]
        assert info["backbone"]["warning"] is None and info["backbone"]["stored"] is None
        assert info["feature_cache"] is True and info["ended_at"] and "train" in info["phase_seconds"]
        assert m["headline"] == "test_acc" and 0.0 <= m["test_acc"] <= 1.0
        for k in ("test_loss", "val_acc", "val_loss", "best_epoch", "num_test"):
            assert k in m
        assert not (p / T.LAST).exists()
        hist = run.history()
        assert list(hist.columns) == T.HISTORY_COLUMNS
        expected_epochs = 0 if run.name == "baseline" else 2
        # a trained run's history starts with the untrained head (epoch 0), a candidate too
        assert hist["epoch"].tolist() == ([] if run.name == "baseline" else [0, 1, 2])
        assert m["best_epoch"] <= expected_epochs and m["epochs_run"] == expected_epochs
        if expected_epochs:
            assert m["val_acc"] == pytest.approx(hist["val_acc"].max())
        pred = run.predictions()
        assert len(pred) == m["num_test"] == info["data"]["num_test"]
        prob_cols = [f"prob_{c}" for c in classes]
        assert list(pred.columns) == ["sample_id", "image_path", "image_id", "person_index", "label",
                                      "label_name", "pred", "pred_name", "confidence", "correct", "bbox",
                                      "keypoints"] + prob_cols + ["segmentation"]
        probs = pred[prob_cols].to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probs.argmax(1), pred["pred"])
        assert (pred["label_name"] == [classes[i] for i in pred["label"]]).all()
        assert pred["sample_id"].is_unique
        assert (pred["correct"] == (pred["pred"] == pred["label"])).all()
        assert m["test_acc"] == pytest.approx(pred["correct"].mean())
        assert all(len(k) == 51 for k in pred["keypoints"]) and all(len(b) == 4 for b in pred["bbox"])
        assert all((data / ip).is_file() for ip in pred["image_path"])


def test_saved_run_round_trips_through_load_model(grid, data):
    from core.classification.crops import PoseDataset
    from core.classification.dataset import load_infiniteform
    _, paths = grid
    run = R.load_run(paths[T.PAPER_PRESETS.index("model5")])
    model = load_model(run, device="cpu")
    assert not model.training
    index = load_infiniteform(data, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(PoseDataset(index.splits["test"], image_size=SIZE),
                                                  batch_size=64)))
    with torch.no_grad():
        probs = model(batch["image"], batch["keypoints"]).softmax(1).numpy()
    saved = run.predictions()[[f"prob_{c}" for c in index.classes]].to_numpy()
    np.testing.assert_allclose(probs, saved, atol=1e-4)
    # only the trained parts are in the run's weights file; the backbone is referenced
    keys = R.load_weights(run.path / R.WEIGHTS).keys()
    assert keys and all(k.startswith(("head.", "fc.")) for k in keys)


def test_feature_cache_equals_training_through_the_frozen_backbone(data, warm_runs, tmp_path):
    # model5 has dropout: equality also needs the same batches and the same masks
    cached = T.train_classifier(job(data, warm_runs, "model5", feature_cache=True))
    direct = T.train_classifier(job(data, tmp_path / "direct", "model5", feature_cache=False))
    # through the backbone: no feature cache, crops read from the image cache
    assert not (tmp_path / "direct" / "_cache" / "features").exists()
    assert list((tmp_path / "direct" / "_cache" / "images").glob("*.npy"))
    a, b = R.load_run(cached), R.load_run(direct)
    assert a.info.feature_cache is True and b.info.feature_cache is False
    pd.testing.assert_frame_equal(a.history().drop(columns="seconds"), b.history().drop(columns="seconds"),
                                  rtol=1e-4, atol=1e-5)
    wa, wb = R.load_weights(cached / R.WEIGHTS), R.load_weights(direct / R.WEIGHTS)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    prob_cols = [c for c in a.predictions().columns if c.startswith("prob_")]
    np.testing.assert_allclose(a.predictions()[prob_cols].to_numpy(), b.predictions()[prob_cols].to_numpy(),
                               atol=1e-5)


def test_killed_run_resumes_from_last_finished_epoch(data, grid, warm_runs, monkeypatch):
    # same call as the grid's model4 run (2 epochs), which serves as the unbroken reference
    model4 = job(data, warm_runs, "model4")
    straight = grid[1][T.PAPER_PRESETS.index("model4")]

    real_evaluate, calls = T.evaluate, []

    def killed_in_epoch_2(*a, **k):   # evaluations: epoch 0 (untrained), 1, then 2: the kill
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)
    monkeypatch.setattr(T, "evaluate", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        T.train_classifier(model4)
    (half,) = R.list_runs(warm_runs)
    assert half.status == "unfinished" and half.history()["epoch"].tolist() == [0, 1]
    assert (half.path / T.LAST).is_file()
    monkeypatch.setattr(T, "evaluate", real_evaluate)

    resumed = T.train_classifier(model4)
    assert resumed == half.path                         # same folder, continued
    r = R.load_run(resumed, require_finished=True)
    assert r.info.resumed_after_epoch == [1]
    s = R.load_run(straight)
    pd.testing.assert_frame_equal(r.history().drop(columns="seconds"), s.history().drop(columns="seconds"),
                                  rtol=1e-5, atol=1e-6)
    assert r.metrics["best_epoch"] == s.metrics["best_epoch"]
    assert r.metrics["test_acc"] == pytest.approx(s.metrics["test_acc"])
    assert len(R.list_runs(warm_runs)) == 1


def test_nan_loss_stops_with_training_error_and_leaves_run_unfinished(data, warm_runs, monkeypatch):
    real_build = T.build_classifier

    def poisoned(cfg, backbone_weights=None):
        model = real_build(cfg, backbone_weights)
        with torch.no_grad():
            model.head[-1].bias.fill_(float("nan"))
        return model
    monkeypatch.setattr(T, "build_classifier", poisoned)
    with pytest.raises(TrainingError, match="loss became nan"):
        T.train_classifier(job(data, warm_runs, "model1", epochs=1))
    (run,) = R.list_runs(warm_runs)
    assert run.status == "unfinished" and not (run.path / R.METRICS_JSON).exists()


def test_half_written_run_folders_are_never_touched(data, warm_runs):
    broken = warm_runs / "20260101-000000-model1"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text('{"kind": "classifier", "name": "mod')   # cut mid-write
    (broken / "history.csv").write_text("epoch\n1\n")
    before = {p.name: p.read_bytes() for p in broken.iterdir()}
    out = T.train_classifier(job(data, warm_runs, "model1", epochs=1))
    assert out != broken
    assert {p.name: p.read_bytes() for p in broken.iterdir()} == before


def test_init_from_a_run_with_other_classes_is_run_error(grid, tmp_path):
    _, paths = grid
    other = _write_tiny(tmp_path / "other", n_train=6, n_test=3, classes=("crunch", "lunge", "tree"))
    with pytest.raises(RunError, match="classes"):
        T.train_classifier(job(other, tmp_path / "runs", "model1", epochs=1,
                               init_from=paths[T.PAPER_PRESETS.index("model1")]))
    assert not (tmp_path / "runs").exists() or not R.list_runs(tmp_path / "runs")


def test_a_random_backbone_asked_for_is_batchnorm_calibrated_and_stored(data, tmp_path):
    runs_dir = tmp_path / "runs"
    path = T.train_classifier(job(data, runs_dir, "baseline", weights="random"))
    b = json.loads((path / R.RUN_JSON).read_text())["backbone"]
    assert b["source"] == "random" and "requested" in b["warning"]
    assert "BatchNorm statistics from" in b["weights"]                 # calibrated on the data
    # the raw random init + its BN-calibrated version, each stored once
    assert len(list((runs_dir / "_backbones").glob("*.safetensors"))) == 2
    assert (runs_dir / b["stored"]).is_file()


def test_wrong_backbone_weights_file_is_one_clear_error(data, tmp_path):
    from safetensors.torch import save_file
    bad = tmp_path / "tiny.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3)}, str(bad))
    with pytest.raises(DataError, match="tiny.safetensors"):
        T.train_classifier(job(data, tmp_path / "runs", "model1", epochs=1, weights=bad))


def test_unknown_preset_is_run_error(data, tmp_path):
    with pytest.raises(RunError, match="unknown preset"):
        T.train_classifier(job(data, tmp_path, "model9"))


def test_cli_bad_data_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "core", "train", "classifier", "--data", str(bad),
                           "--preset", "model4", "--runs", str(tmp_path / "runs")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "POSELAB_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "broken.json" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_demo_classifier_part_prints_progress_protocol_and_is_idempotent(tmp_path, monkeypatch, capsys):
    from core import demo
    monkeypatch.setattr(demo, "DEMO_IMAGES", demo.ImageSpec(n_train=4, n_test=2, seed=0, size=64, people_max=1))
    monkeypatch.setattr(demo, "DEMO_CLASSIFIER", dict(recipe=T.TrainConfig(image_size=SIZE, epochs=1), seeds=(0,)))
    paths = demo.build_classifier_demo(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                                       report=demo.progress, start=0.0, end=0.7)
    assert [R.load_run(p, require_finished=True).name for p in paths] == list(T.PAPER_PRESETS) + ["model4"]
    assert R.load_run(paths[-1]).info.data.keypoint_source == "estimated"
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("progress ")]
    fractions = [float(ln.split()[1]) for ln in lines]
    assert len(lines) >= 9 and fractions == sorted(fractions)
    assert fractions[0] == 0.0 and fractions[-1] == pytest.approx(0.7)
    assert all(len(ln.split(" ", 2)) == 3 for ln in lines)          # "progress <f> <message>"
    # a second build reuses the rendered images and every finished run
    again = demo.build_classifier_demo(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                                       report=demo.progress)
    assert again == paths and len(R.list_runs(tmp_path / "runs")) == 8
    # images made by an older annotation writer (a marker without its version) are made again
    marker = tmp_path / "data" / "images" / "demo-params.json"
    old = json.loads(marker.read_text())
    assert old.pop("annotations_version") == ANNOTATIONS_VERSION
    marker.write_text(json.dumps(old))
    ann = tmp_path / "data" / "images" / "train" / "annotations.json"
    stale = json.loads(ann.read_text())
    stale["info"]["version"] = 1
    ann.write_text(json.dumps(stale))
    demo.build_classifier_demo(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", report=None)
    assert json.loads(ann.read_text())["info"]["version"] == ANNOTATIONS_VERSION
    assert json.loads(marker.read_text())["annotations_version"] == ANNOTATIONS_VERSION


ADD_ROWS = """
import sys, torch
from pathlib import Path
from core.classification.features import FeatureSet, _add
path, tag = Path(sys.argv[1]), sys.argv[2]
(path.parent / f"ready-{tag}").touch()                   # start together: both imported, both ready
while len(list(path.parent.glob("ready-*"))) < 2:
    pass
for i in range(20):
    key = f"{tag}:{i}"
    _add(path, [key], FeatureSet(torch.full((1, 2048), float(i + 100 * (tag == "b"))), torch.zeros(1, 17, 3),
                                 torch.tensor([i])))
"""


def test_two_processes_extending_one_feature_cache_lose_no_rows(tmp_path):
    """Two trainings on one dataset at once both add features to the same file: every
    row either wrote is there afterwards, with its own values."""
    from core.classification.features import _read
    path = tmp_path / "features.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", ADD_ROWS, str(path), tag], env=env) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    keys, fs = _read(path)
    assert sorted(keys) == sorted(f"{t}:{i}" for t in "ab" for i in range(20))
    for k, row in zip(keys, fs.features):
        tag, i = k.split(":")
        assert row[0].item() == float(int(i) + 100 * (tag == "b")) and torch.equal(row, row[:1].expand(2048))


def test_model4_on_estimated_keypoints_caches_the_estimators_output(data, warm_runs):
    """--keypoints estimated: BlazePose runs once per crop, its keypoints are cached, and
    the run trains and is tested on them (what a deployed system has)."""
    import numpy as np

    from core.classification.crops import load_crop
    from core.classification.dataset import load_infiniteform
    from core.classification.estimated import cache_path, estimate_crop
    from core.estimator.blazepose import BlazePose
    assert cli_main(["train", "classifier", "--data", str(data), "--preset", "model4", "--epochs", "1",
                     "--batch-size", "4", "--image-size", str(SIZE), "--keypoints", "estimated",
                     "--runs", str(warm_runs), "--device", "cpu"]) == 0
    (run,) = [r for r in R.list_runs(warm_runs) if r.finished]
    assert run.info.data.keypoint_source == "estimated" and run.info.data.keypoint_estimator.startswith("blazepose")
    assert 0.0 <= run.info.data.keypoints_found <= 1.0
    index = load_infiniteform(data)
    cached = np.load(cache_path(warm_runs, index.fingerprint))
    row = {k: i for i, k in enumerate(cached["sample_ids"])}
    bp = BlazePose()
    samples = index.splits["train"][:2] + index.splits["test"][:2]
    for s in samples:                                    # the cache holds exactly what BlazePose says
        kp, found = estimate_crop(np.asarray(load_crop(s)), bp)
        np.testing.assert_array_equal(cached["keypoints"][row[str(s.sample_id)]], kp)
        assert bool(cached["found"][row[str(s.sample_id)]]) == found
    preds = run.predictions()
    assert "estimated_keypoints" in preds and all(len(k) == 51 for k in preds["estimated_keypoints"])
    # the annotation's keypoints are another run, not this one resumed or reused
    again = T.train_classifier(job(data, warm_runs, "model4", epochs=1))
    assert again != run.path and R.load_run(again).info.data.keypoint_source == "annotation"


def cli_main(argv):
    from core import cli
    return cli.main(argv)
