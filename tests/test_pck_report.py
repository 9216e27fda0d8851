"""core.temporal.report on small hand-made tables (no runs, no models)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError, RunError
from core.keypoints import TEMPORAL25
from core.metrics import PCK_THRESHOLDS
from core.temporal import report as pr

K = len(TEMPORAL25)


def make_pck(values: dict[float, float | list], identity: float = 0.2, n: int | list = 10,
             thr_px: tuple = (1.6, 3.2, 6.4)) -> pd.DataFrame:
    """A pck.csv table; values[a] is one number for every keypoint or a list of 25."""
    rows = {"keypoint": list(TEMPORAL25)}
    for a in PCK_THRESHOLDS:
        v = values.get(a, 0.5)
        rows[pr.pck_col(a)] = list(v) if isinstance(v, list) else [v] * K
        rows[f"identity_{pr.pck_col(a)}"] = [identity] * K
    rows["n_visible"] = list(n) if isinstance(n, list) else [n] * K
    df = pd.DataFrame(rows)
    last = {"keypoint": pr.THRESHOLD_ROW, "n_visible": np.nan,
            **{pr.pck_col(a): t for a, t in zip(PCK_THRESHOLDS, thr_px)}}
    df = pd.concat([df, pd.DataFrame([last])], ignore_index=True)
    return pr.check_pck_table(df)


def test_check_pck_table_names_missing_columns():
    bad = pd.DataFrame({"keypoint": list(TEMPORAL25), "pck@0.05": 0.1})
    with pytest.raises(RunError, match="missing columns"):
        pr.check_pck_table(bad, "run/pck.csv")


def test_summary_pools_by_visible_count_and_has_identity_and_threshold_rows():
    vals = [1.0] * K
    vals[0] = 0.0                          # nose wrong everywhere ...
    n = [10] * K
    n[0] = 30                              # ... and seen three times as often
    t = make_pck({0.05: vals}, n=n)
    s = pr.summary_table({"conv3d": t})
    expected = (24 * 10) / (24 * 10 + 30)
    assert s.loc["conv3d", "pck@0.05"] == pytest.approx(expected)
    assert s.loc["identity", "pck@0.1"] == pytest.approx(0.2)
    assert s.loc[pr.THRESHOLD_ROW].tolist() == pytest.approx([1.6, 3.2, 6.4])
    assert list(s.index) == ["conv3d", "identity", pr.THRESHOLD_ROW]


def test_summary_keeps_distinct_identity_baselines_apart():
    s = pr.summary_table({"a": make_pck({}, identity=0.2), "b": make_pck({}, identity=0.3),
                          "c": make_pck({}, identity=0.2)})
    assert [i for i in s.index if i.startswith("identity")] == ["identity (a)", "identity (b)"]


def test_keypoint_table_merged_averages_left_and_right():
    vals = [0.5] * K
    vals[TEMPORAL25.index("left_knee")] = 0.2
    vals[TEMPORAL25.index("right_knee")] = 0.6
    t = make_pck({0.1: vals})
    apart = pr.keypoint_table({"r": t}, 0.1, merged=False)
    merged = pr.keypoint_table({"r": t}, 0.1, merged=True)
    assert len(apart) == K + 1 and len(merged) == 13 + 1      # 12 pairs + nose, + 'all'
    assert merged.loc["knee", "r"] == pytest.approx(0.4)
    assert apart.loc["left_knee", "r"] == pytest.approx(0.2)
    assert merged.loc["knee", "n_visible"] == 20
    assert merged.loc["all", "r"] == pytest.approx(apart.loc["all", "r"])
    assert merged.loc["knee", "identity"] == pytest.approx(0.2)
    assert list(merged.index[:3]) == ["nose", "ear", "shoulder"]


def test_keypoint_table_ignores_never_visible_side():
    vals = [0.5] * K
    n = [10] * K
    vals[TEMPORAL25.index("left_heel")] = np.nan
    n[TEMPORAL25.index("left_heel")] = 0
    vals[TEMPORAL25.index("right_heel")] = 0.9
    t = make_pck({0.2: vals}, n=n)
    merged = pr.keypoint_table({"r": t}, 0.2, merged=True)
    assert merged.loc["heel", "r"] == pytest.approx(0.9)
    apart = pr.keypoint_table({"r": t}, 0.2)
    assert np.isnan(apart.loc["left_heel", "r"])


def test_difference_to_reference():
    a, b = make_pck({0.05: 0.7}), make_pck({0.05: 0.4})
    table = pr.keypoint_table({"a": a, "b": b}, 0.05)
    d = pr.difference_table(table, "b")
    assert list(d.columns) == ["a", "identity"]
    assert d.loc["nose", "a"] == pytest.approx(0.3)
    assert d.loc["nose", "identity"] == pytest.approx(0.2 - 0.4)
    with pytest.raises(KeyError):
        pr.difference_table(table, "nope")


# ----------------------------------------------------------------------- predictions

def make_preds(seed: int, videos: int = 3, frames: int = 10, scale: float = 1.0) -> pd.DataFrame:
    """Hand-made per frame x keypoint errors; norm 20 px, so PCK@0.1 = error <= 2 px."""
    rng = np.random.default_rng(seed)
    v, f, k = np.meshgrid(np.arange(videos), np.arange(frames), np.arange(K), indexing="ij")
    n = v.size
    visible = rng.random(n) > 0.1
    err = rng.exponential(2.0 * scale, n)
    return pd.DataFrame({
        "video": [f"vid{i}" for i in v.ravel()], "frame": f.ravel(), "keypoint": k.ravel(),
        "keypoint_name": [TEMPORAL25[i] for i in k.ravel()], "visible": visible,
        "norm": 20.0, "error_px": np.where(visible, err, np.nan),
        "input_error_px": np.where(visible, err * 2, np.nan),
        "gt_x": 1.0, "gt_y": 1.0, "input_x": 1.0, "input_y": 1.0, "pred_x": 1.0, "pred_y": 1.0,
    })


def test_unit_counts_match_direct_pck():
    df = make_preds(0)
    units, correct, visible = pr.unit_counts(df, unit="frame")
    assert correct.shape == (30, K, 3) and visible.shape == (30, K)
    direct = ((df["error_px"] <= 0.1 * 20) & df["visible"]).groupby(df["keypoint"]).sum() \
        / df["visible"].groupby(df["keypoint"]).sum()
    np.testing.assert_allclose(correct[:, :, 1].sum(0) / visible.sum(0), direct.to_numpy())
    assert len(pr.unit_counts(df, unit="window", k=5)[0]) == 6
    assert len(pr.unit_counts(df, unit="video")[0]) == 3
    with pytest.raises(ValueError):
        pr.unit_counts(df, unit="pixel")


def test_bootstrap_ci_contains_point_and_is_deterministic():
    preds = {"good": make_preds(1, scale=0.5), "bad": make_preds(2, scale=2.0)}
    b1 = pr.bootstrap_pck(preds, n_boot=300, seed=7, merged=True)
    b2 = pr.bootstrap_pck(preds, n_boot=300, seed=7, merged=True)
    for label in b1.samples:
        np.testing.assert_array_equal(b1.samples[label], b2.samples[label])
    ci = pr.ci_table(b1, 0.1, reference="bad")
    assert set(ci["run"]) == {"good", "bad", "identity"}
    assert (ci["lo"] <= ci["pck"] + 1e-12).all() and (ci["pck"] <= ci["hi"] + 1e-12).all()
    assert (ci["hi"] - ci["lo"] > 0).all()
    good_all = ci[(ci["run"] == "good") & (ci["keypoint"] == "all")].iloc[0]
    assert good_all["diff_lo"] > 0                       # clearly better, paired CI above 0
    ref = ci[ci["run"] == "bad"]
    assert (ref["diff"] == 0).all() and (ref["diff_hi"] == 0).all()
    b3 = pr.bootstrap_pck(preds, n_boot=300, seed=8, merged=True)
    assert not np.array_equal(b1.samples["good"], b3.samples["good"])


def test_bootstrap_point_equals_plain_pck():
    df = make_preds(3)
    b = pr.bootstrap_pck({"r": df}, n_boot=10, seed=0)
    ok = (df["error_px"] <= 0.05 * 20) & df["visible"]
    assert b.point["r"][-1, 0] == pytest.approx(ok.sum() / df["visible"].sum())
    assert b.groups[-1] == "all" and len(b.groups) == K + 1


def test_per_frame_error_and_frame_points():
    df = make_preds(4, videos=2, frames=6)
    assert pr.list_videos(df) == ["vid0", "vid1"]
    rows = pr.video_rows(df, "vid1")
    curve = pr.per_frame_error(rows)
    assert list(curve["frame"]) == list(range(6))
    f0 = rows[(rows["frame"] == 0) & rows["visible"]]
    assert curve.loc[0, "error_px"] == pytest.approx(f0["error_px"].mean())
    assert curve.loc[0, "input_error_px"] == pytest.approx(2 * f0["error_px"].mean())
    assert len(pr.frame_points(rows, 3)) == K
    with pytest.raises(RunError):
        pr.video_rows(df, "nope")


def test_resolve_video_file_stays_inside_root(tmp_path):
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "v1.npz").write_bytes(b"x")
    (root / "clip.npz").write_bytes(b"x")
    (tmp_path / "secret.npz").write_bytes(b"x")
    (root / "index.json").write_text('{"videos": [{"id": "walk 1", "file": "videos/v1.npz"},'
                                     ' {"id": "evil", "file": "../secret.npz"}]}')
    assert pr.resolve_video_file(root, "walk 1") == ((root / "videos" / "v1.npz").resolve(), None)
    # A single video split in time: its test part is "name[a:b]".
    assert pr.resolve_video_file(root, "clip[30:45]") == ((root / "clip.npz").resolve(), slice(30, 45))
    for bad in ("../secret", "evil", "/etc/passwd", "missing"):
        with pytest.raises(DataError):
            pr.resolve_video_file(root, bad)
    with pytest.raises(DataError, match="does not exist"):
        pr.resolve_video_file(tmp_path / "gone", "v1")


def test_csv_export_round_trip():
    t = pr.keypoint_table({"r": make_pck({})}, 0.05)
    back = pd.read_csv(__import__("io").BytesIO(pr.to_csv_bytes(t)), index_col=0)
    assert list(back.index) == list(t.index)


def test_a_run_called_identity_does_not_hide_the_baseline():
    tables = {"identity": make_pck({0.05: 0.2}, identity=0.2), "conv3d": make_pck({0.05: 0.6})}
    s = pr.summary_table(tables)
    assert list(s.index) == ["identity", "conv3d", "identity baseline", pr.THRESHOLD_ROW]
    t = pr.keypoint_table(tables, 0.05)
    assert list(t.columns) == ["identity", "conv3d", "identity baseline", "n_visible"]
    b = pr.bootstrap_pck({"identity": make_preds(0), "conv3d": make_preds(1)}, n_boot=5)
    assert set(b.samples) == {"identity", "conv3d", "identity baseline"}
