"""Pure tests of core/report.py on tiny hand-computed frames."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.classification import report
from core.errors import DataError, RunError
from core.runs import Run, RunInfo

CLASSES = ["a", "b", "c"]


def preds_frame() -> pd.DataFrame:
    # label, pred, confidence for 6 samples; hand-checked below.
    rows = [(0, 0, 0.9), (0, 1, 0.8), (1, 1, 0.6), (1, 0, 0.95), (2, 2, 0.5), (2, 1, 0.4)]
    df = pd.DataFrame(rows, columns=["label", "pred", "confidence"])
    df.insert(0, "sample_id", [f"s{i}" for i in range(len(df))])
    df["correct"] = df["label"] == df["pred"]
    for j, c in enumerate(CLASSES):
        df[f"prob_{c}"] = np.where(df["pred"] == j, df["confidence"], (1 - df["confidence"]) / 2)
    return df


def run(name, kind="classifier", metrics=None, info=None, path="/tmp/x"):
    from pathlib import Path
    base = {"kind": kind, "name": name}
    base.update(info or {})
    return Run(path=Path(path) / name, info=RunInfo.from_dict(base), metrics=metrics)


# ------------------------------------------------------------------ confusion


def test_confusion_counts_and_normalised_rows():
    cm = report.confusion(preds_frame(), 3)
    assert cm.tolist() == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    n = report.confusion(preds_frame(), 3, normalize=True)
    np.testing.assert_allclose(n, [[.5, .5, 0], [.5, .5, 0], [0, .5, .5]])


def test_normalise_empty_row_is_nan_not_zero():
    n = report.normalize_rows(np.array([[2, 0], [0, 0]]))
    assert n[0].tolist() == [1.0, 0.0] and np.isnan(n[1]).all()


def test_most_confused_pairs_orders_by_count_then_share():
    cm = np.array([[5, 3, 0], [1, 9, 3], [0, 0, 4]])
    pairs = report.most_confused_pairs(cm, CLASSES)
    # (a->b, 3, 3/8) beats (b->c, 3, 3/13) on share; (b->a, 1) last; zeros and diagonal out.
    assert list(zip(pairs["true"], pairs["pred"], pairs["count"])) == [
        ("a", "b", 3), ("b", "c", 3), ("b", "a", 1)]
    assert pairs["share_of_true"].iloc[0] == pytest.approx(3 / 8)


def test_confusion_points_one_per_cell_with_indices():
    cm = np.array([[1, 2], [0, 3]])
    pts = report.confusion_points(cm, ["x", "y"])
    assert len(pts) == 4
    row = pts[(pts.true == "x") & (pts.pred == "y")].iloc[0]
    assert (row.true_idx, row.pred_idx, row["count"], row.text) == (0, 1, 2, "2")
    assert pts[(pts.true == "y") & (pts.pred == "x")].iloc[0].text == ""   # empty cell: no label


def test_cell_samples_are_exactly_that_cell():
    got = report.cell_samples(preds_frame(), 1, 0)
    assert got["sample_id"].tolist() == ["s3"]


def test_per_class_table_uses_metrics():
    t = report.per_class_table(preds_frame(), CLASSES)
    # class b: tp 1, predicted 3, support 2
    b = t[t["class"] == "b"].iloc[0]
    assert b.precision == pytest.approx(1 / 3) and b.recall == pytest.approx(0.5)
    assert b.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert t["support"].tolist() == [2, 2, 2]


def test_difference_needs_same_classes():
    p = preds_frame()
    d = report.confusion_difference(p, CLASSES, p, CLASSES, normalize=False)
    assert (d == 0).all()
    with pytest.raises(RunError, match="only in B: \\['d'\\]"):
        report.confusion_difference(p, CLASSES, p, ["a", "b", "d"], names=("A", "B"))
    with pytest.raises(RunError, match="different order"):
        report.confusion_difference(p, CLASSES, p, ["b", "a", "c"])


def test_difference_is_b_minus_a():
    a = preds_frame()
    b = a.copy()
    b["pred"] = b["label"]                     # a perfect run
    d = report.confusion_difference(a, CLASSES, b, CLASSES, normalize=False)
    assert d.tolist() == [[1, -1, 0], [-1, 1, 0], [0, -1, 1]]


# ------------------------------------------------------------------ gallery


def test_filters_combine():
    p = preds_frame()
    assert report.filter_predictions(p)["sample_id"].tolist() == list(p["sample_id"])
    assert report.filter_predictions(p, correctness="wrong")["sample_id"].tolist() == ["s1", "s3", "s5"]
    assert report.filter_predictions(p, true_classes=[1], pred_classes=[0])["sample_id"].tolist() == ["s3"]
    got = report.filter_predictions(p, correctness="correct", confidence=(0.55, 0.9))
    assert got["sample_id"].tolist() == ["s0", "s2"]      # inclusive bounds
    with pytest.raises(ValueError):
        report.filter_predictions(p, correctness="maybe")


def test_sort_most_confidently_wrong_first():
    got = report.sort_predictions(preds_frame(), "most confidently wrong")["sample_id"].tolist()
    # wrong by confidence desc (s3 .95, s1 .8, s5 .4), then correct by confidence asc.
    assert got == ["s3", "s1", "s5", "s4", "s2", "s0"]
    assert report.sort_predictions(preds_frame(), "least confident")["sample_id"].iloc[0] == "s5"
    with pytest.raises(ValueError):
        report.sort_predictions(preds_frame(), "random")


def test_paginate_clamps_pages():
    df = pd.DataFrame({"i": range(10)})
    page, n = report.paginate(df, 2, 4)
    assert n == 3 and page["i"].tolist() == [4, 5, 6, 7]
    assert report.paginate(df, 99, 4)[0]["i"].tolist() == [8, 9]
    assert report.paginate(df.iloc[:0], 1, 4)[1] == 1


def test_class_probabilities_in_class_order():
    probs = report.class_probabilities(preds_frame().iloc[0], CLASSES)
    assert probs["class"].tolist() == CLASSES
    assert probs["probability"].sum() == pytest.approx(1.0)


def test_check_predictions_rejects_bad_tables():
    p = preds_frame()
    with pytest.raises(RunError, match="lack column"):
        report.check_predictions(p.drop(columns=["pred"]), CLASSES, "p.parquet")
    with pytest.raises(RunError, match="outside 0..1"):
        report.check_predictions(p, ["a", "b"], "p.parquet")


# ------------------------------------------------------------------ runs tables


def test_runs_table_lists_broken_and_unfinished():
    runs = [
        run("model1", metrics={"headline": "test_acc", "test_acc": 0.5, "best_epoch": 2},
            info={"backbone": {"source": "random", "warning": "offline"}, "data": {"root": "/d"},
                  "phase_seconds": {"a": 1.0, "b": 2.0}}),
        run("model2"),
        Run(path=__import__("pathlib").Path("/tmp/bad"), info=None, problem="bad/run.json: not valid JSON"),
    ]
    t = report.runs_table(runs)
    assert t["status"].tolist() == ["finished", "unfinished", "broken"]
    assert t["value"].iloc[0] == 0.5 and math.isnan(t["value"].iloc[1])
    assert t["backbone_source"].iloc[0] == "random" and t["backbone"].iloc[0] == "random init"
    assert t["seconds"].iloc[0] == 3.0
    assert t["problem"].iloc[2].endswith("not valid JSON")


def test_history_long_accepts_acc_and_pck():
    h1 = pd.DataFrame({"epoch": [1, 2], "train_loss": [2, 1], "val_loss": [3, 2],
                       "train_acc": [.1, .2], "val_acc": [.1, .3]})
    h2 = pd.DataFrame({"epoch": [1], "train_loss": [1], "val_loss": [1], "train_pck": [.5], "val_pck": [.4]})
    long = report.history_long({"r1": h1, "r2": h2})
    assert len(long) == 8 + 4
    assert set(long[long.run == "r2"]["metric"]) == {"loss", "pck"}
    assert long.query("run == 'r1' and split == 'val' and metric == 'acc'")["value"].tolist() == [.1, .3]


# ------------------------------------------------------------------ images


def test_resolve_inside_refuses_escape(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    assert report.resolve_inside(root, "a.png") == (root / "a.png").resolve()
    for bad in ("../secret.png", str(tmp_path / "secret.png")):
        with pytest.raises(DataError, match="leaves the run's data folder"):
            report.resolve_inside(root, bad)
    with pytest.raises(DataError, match="missing"):
        report.resolve_inside(root, "nope.png")


def test_sample_picture_shows_the_crop_the_model_saw(tmp_path):
    from core.classification.crops import crop_box, crop_padded
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    img.save(tmp_path / "s.png")
    bbox = [2, 30, 20, 28]                     # near the border: the model's crop is padded
    row = {"image_path": "s.png", "bbox": bbox, "keypoints": [0.0] * 51}
    expected = crop_padded(img, crop_box(bbox, img.size, 0.15)).resize((48, 48), Image.BILINEAR)
    got = report.sample_picture(tmp_path, row, skeleton=False, size=48)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_sample_picture_draws_skeleton_and_reports_bad_images(tmp_path):
    Image.new("RGB", (64, 64), (255, 255, 255)).save(tmp_path / "s.png")
    kp = np.zeros((17, 3))
    kp[5] = [20, 20, 2]
    kp[11] = [20, 50, 2]                       # left shoulder -> left hip edge
    row = {"image_path": "s.png", "bbox": [10, 10, 40, 44], "keypoints": kp.ravel().tolist()}
    plain = np.asarray(report.sample_picture(tmp_path, row, skeleton=False, size=64))
    drawn = np.asarray(report.sample_picture(tmp_path, row, skeleton=True, size=64))
    assert plain.shape == drawn.shape and (plain == 255).all()
    assert (drawn != 255).any(axis=-1).sum() > 20
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError):
        report.sample_picture(tmp_path, {**row, "image_path": "bad.png"})
    assert report.placeholder_picture(32).size == (32, 32)


def test_dashboard_reads_crops_from_the_runs_image_cache(dashboard_runs, monkeypatch):
    """A classifier run finds the image cache its features came from; the gallery picture
    and the saliency input read from it give exactly what decoding the scene gives, and
    they really come from the cache (the scene is never decoded)."""
    import pandas as pd
    import torch

    from core.classification import saliency as sal
    from core.classification.image_cache import image_cache_of_run
    from core.runs import load_run
    from tests.conftest import run_dirs
    run = load_run(run_dirs(dashboard_runs, "classifier")["model4"])
    cache = image_cache_of_run(run.path, run.info)
    assert cache is not None and cache.image_size == 64
    preds = pd.read_parquet(run.path / "predictions.parquet")
    root = run.info.data.root
    rows = [preds.iloc[i] for i in range(0, len(preds), 4)]
    decoded = [(np.asarray(report.sample_picture(root, r, skeleton=True, size=64)),
                sal.sample_input(run.info, r, use_keypoints=True)) for r in rows]

    def no_decoding(*a, **k):
        raise AssertionError("the scene was decoded although the crop is cached")
    for module in ("core.classification.report", "core.classification.saliency"):   # the users of open_image
        monkeypatch.setattr(f"{module}.open_image", no_decoding)
    for r, (pic, inp) in zip(rows, decoded):
        got = np.asarray(report.sample_picture(root, r, skeleton=True, size=64, cache=cache))
        np.testing.assert_array_equal(got, pic)
        cinp = sal.sample_input(run.info, r, use_keypoints=True, cache=cache)
        torch.testing.assert_close(cinp.image, inp.image, atol=1e-6, rtol=0)
        torch.testing.assert_close(cinp.keypoints, inp.keypoints)
    # a display larger than the cached crops decodes the scene (sharper than upsampling)
    with pytest.raises(AssertionError, match="decoded"):
        report.sample_picture(root, rows[0], size=128, cache=cache)
