"""Tables behind the PCK-comparison and Sequences pages (pure pandas/numpy, no streamlit).

Inputs are the temporal run files (docs/ARCHITECTURE.md, "A run on disk"):

* ``pck.csv``: one row per TEMPORAL25 keypoint (column ``keypoint`` = name) with
  ``pck@a`` and ``identity_pck@a`` fractions and ``n_visible``, then one row
  ``keypoint == "threshold_px"`` whose ``pck@a`` cells hold the mean threshold distance
  a*s in heatmap pixels.
* ``predictions.parquet``: one row per test frame x keypoint with ``video``, ``frame``,
  ``keypoint`` (index), ``visible``, ``norm``, ``error_px``, ``input_error_px``, and the
  gt/input/pred coordinates.

Conventions used throughout (and the reasons):

* A PCK over several keypoints (the "all" row, a merged left/right pair) is *pooled*:
  correct / visible over every visible (frame, keypoint) of the group, i.e. the
  per-keypoint values weighted by ``n_visible``. It equals the plain mean when the
  counts are equal (left and right are visible about equally often) and, unlike the
  plain mean, a rarely visible keypoint cannot swing it.
* The identity baseline (the estimator's own output) comes with every temporal run; it
  is shown once per distinct test set (runs on the same data share it).
* Bootstrap confidence intervals resample test *units* (frames, windows of k frames, or
  whole videos) with replacement. Everything is reduced first to per-unit counts
  (U, K, A) of correct and visible keypoints, so one bootstrap replicate is a weighted
  sum: ``W (B, U) @ counts (U, K*A)``, no Python loop over replicates. Runs evaluated on
  the same units share the same resampling weights (same seed), which makes the CI of a
  difference between two runs a paired one.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.errors import DataError, RunError
from core.heatmaps import normalize_heatmaps, to_heatmap, to_image
from core.images import open_image
from core.io import resolve_inside
from core.keypoints import TEMPORAL25, side_merged_name
from core.metrics import PCK_THRESHOLDS, acceleration_error, jitter, pool
from core.temporal.videos import Video, load_video

THRESHOLD_ROW = "threshold_px"      # the pck.csv row holding mean a*s in heatmap pixels
IDENTITY = "identity"               # label of the baseline column / row
ALL = "all"                         # label of the pooled row


def baseline_label(labels) -> str:
    """Label of the identity baseline among run ``labels``: 'identity', unless a run is
    itself called that (the grid's identity run), then 'identity baseline'."""
    return IDENTITY if IDENTITY not in set(labels) else f"{IDENTITY} baseline"


def pck_col(a: float) -> str:
    """0.05 -> 'pck@0.05' (the column names of pck.csv and metrics.json)."""
    return f"pck@{a:g}"


# ----------------------------------------------------------------------------- pck.csv

def check_pck_table(df: pd.DataFrame, source: str | Path = "pck.csv") -> pd.DataFrame:
    """Validate a pck.csv table; returns it indexed by keypoint name.

    Raises RunError naming ``source`` when a column or keypoint is missing, so a page can
    show one line instead of a traceback.
    """
    need = ["keypoint", "n_visible"] + [pck_col(a) for a in PCK_THRESHOLDS] \
        + [f"{IDENTITY}_{pck_col(a)}" for a in PCK_THRESHOLDS]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise RunError(source, f"missing columns {missing}")
    names = set(df["keypoint"].astype(str))
    absent = [k for k in TEMPORAL25 if k not in names]
    if absent:
        raise RunError(source, f"missing keypoint rows {absent[:3]}{'...' if len(absent) > 3 else ''}")
    return df.assign(keypoint=df["keypoint"].astype(str)).set_index("keypoint")


def _keypoint_rows(t: pd.DataFrame) -> pd.DataFrame:
    return t.loc[list(TEMPORAL25)]


def _pooled_groups(frame: pd.DataFrame) -> pd.Series:
    """Pooled value per group of a frame with columns v (value), n (count), g (group)."""
    ok = frame["v"].notna() & (frame["n"] > 0)
    w = frame.assign(vn=(frame["v"] * frame["n"]).where(ok, 0.0), n=frame["n"].where(ok, 0))
    sums = w.groupby("g", sort=False)[["vn", "n"]].sum()
    return (sums["vn"] / sums["n"].where(sums["n"] > 0)).astype(float)


def summary_table(tables: dict[str, pd.DataFrame],
                  thresholds: tuple[float, ...] = PCK_THRESHOLDS) -> pd.DataFrame:
    """Runs x PCK@a (pooled over all keypoints), with the identity baseline and the
    mean threshold distance.

    ``tables``: run label -> checked pck table (``check_pck_table``). Returns a frame
    indexed by row label: one row per run, one ``identity`` row per distinct baseline
    (``identity`` if all runs share it, else ``identity (<run>)``; see
    ``baseline_label`` for a run itself named identity), and a final
    ``threshold_px`` row (mean a*s in heatmap pixels, from the first run that has it).
    Columns ``pck@a`` as fractions.
    """
    cols = [pck_col(a) for a in thresholds]
    rows: dict[str, list[float]] = {}
    identities: list[tuple[str, list[float]]] = []
    for label, t in tables.items():
        kp = _keypoint_rows(t)
        rows[label] = [pool(kp[c], kp["n_visible"]) for c in cols]
        ident = [pool(kp[f"{IDENTITY}_{c}"], kp["n_visible"]) for c in cols]
        if not any(np.allclose(ident, other, equal_nan=True) for _, other in identities):
            identities.append((label, ident))
    base = baseline_label(tables)
    for label, ident in identities:
        rows[base if len(identities) == 1 else f"{base} ({label})"] = ident
    out = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    thr = next((t.loc[THRESHOLD_ROW, cols] for t in tables.values() if THRESHOLD_ROW in t.index), None)
    if thr is not None:
        out.loc[THRESHOLD_ROW] = pd.to_numeric(thr, errors="coerce").to_numpy()
    out.index.name = "run"
    return out


def keypoint_table(tables: dict[str, pd.DataFrame], threshold: float, *, merged: bool = False,
                   identity: bool = True) -> pd.DataFrame:
    """Per-keypoint PCK@threshold, one column per run (+ ``identity``), one row per
    keypoint in TEMPORAL25 order, or per side-merged name when ``merged`` ('knee' pools
    left_knee and right_knee), then a pooled ``all`` row. Also an ``n_visible`` column
    (from the first run). The identity column (``baseline_label``) is the first run's
    baseline.
    """
    col = pck_col(threshold)
    groups = [side_merged_name(k) if merged else k for k in TEMPORAL25]
    order = list(dict.fromkeys(groups))
    out = {}
    sources = [(label, t, col) for label, t in tables.items()]
    if identity and sources:
        sources.append((baseline_label(tables), sources[0][1], f"{IDENTITY}_{col}"))
    counts = None
    for label, t, c in sources:
        kp = _keypoint_rows(t)
        frame = pd.DataFrame({"v": pd.to_numeric(kp[c], errors="coerce").to_numpy(),
                              "n": kp["n_visible"].to_numpy(), "g": groups})
        pooled = _pooled_groups(frame).reindex(order)
        pooled.loc[ALL] = pool(frame["v"], frame["n"])
        out[label] = pooled
        if counts is None:
            counts = frame.groupby("g", sort=False)["n"].sum().reindex(order)
            counts.loc[ALL] = frame["n"].sum()
    df = pd.DataFrame(out)
    if counts is not None:
        df["n_visible"] = counts.astype("int64")
    df.index.name = "keypoint"
    return df


def difference_table(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every run column minus the ``reference`` column (percentage points when the table
    holds fractions x 100); non-PCK columns (``n_visible``) are dropped."""
    if reference not in table.columns:
        raise KeyError(f"reference {reference!r} is not a column ({list(table.columns)})")
    runs = [c for c in table.columns if c not in ("n_visible", reference)]
    return table[runs].sub(table[reference], axis=0)


# ----------------------------------------------------------------------- predictions

PRED_COLUMNS = ("video", "frame", "keypoint", "visible", "norm", "error_px", "input_error_px")


def check_frame_predictions(df: pd.DataFrame, source: str | Path = "predictions.parquet") -> pd.DataFrame:
    """Validate a temporal run's predictions.parquet (one row per frame x keypoint)."""
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise RunError(source, f"missing columns {missing}")
    return df


def _units(df: pd.DataFrame, unit: str, k: int) -> pd.Series:
    """One hashable label per row naming the resampling unit it belongs to."""
    video = df["video"].astype(str)
    if unit == "video":
        return video
    if unit == "frame":
        return video + "/" + df["frame"].astype(str)
    if unit == "window":
        # Test windows do not overlap: consecutive test frames of a video, k at a time.
        rank = df.groupby("video", sort=False)["frame"].rank(method="dense").astype(int) - 1
        return video + "/w" + (rank // k).astype(str)
    raise ValueError(f"unit must be 'frame', 'window' or 'video', not {unit!r}")


def unit_counts(df: pd.DataFrame, thresholds: tuple[float, ...] = PCK_THRESHOLDS, *,
                unit: str = "frame", k: int = 5, source: str = "pred"
                ) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Reduce predictions to per-unit counts.

    Returns ``units`` (U,), ``correct`` (U, K, A) and ``visible`` (U, K) int arrays, K =
    25 keypoints in TEMPORAL25 order, A = len(thresholds). ``source`` 'pred' scores the
    run's refined keypoints (``error_px``), 'input' the estimator's (``input_error_px``).
    """
    df = check_frame_predictions(df)
    err_col = {"pred": "error_px", "input": "input_error_px"}[source]
    u = _units(df, unit, k)
    codes, units = pd.factorize(u, sort=True)
    kp = df["keypoint"].to_numpy(dtype=np.int64)
    if kp.size and (kp.min() < 0 or kp.max() >= len(TEMPORAL25)):
        raise RunError("predictions.parquet", "keypoint index outside 0..24")
    norm = df["norm"].to_numpy(np.float64)
    # As core.metrics.pck: a sample without a usable scale counts like an invisible one.
    vis = df["visible"].to_numpy(dtype=bool) & np.isfinite(norm) & (norm > 0)
    err = df[err_col].to_numpy(dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)[None, :] * norm[:, None]
    ok = vis[:, None] & (err[:, None] <= thr)                        # (N, A); NaN compares False
    U, K = len(units), len(TEMPORAL25)
    flat = codes * K + kp                                           # (N,)
    visible = np.bincount(flat, weights=vis, minlength=U * K).reshape(U, K)
    correct = np.stack([np.bincount(flat, weights=ok[:, a], minlength=U * K)
                        for a in range(thr.shape[1])], axis=-1).reshape(U, K, -1)
    return pd.Index(units), correct.astype(np.int64), visible.astype(np.int64)


@dataclass
class Bootstrap:
    """Bootstrap replicates of per-keypoint PCK for several runs on shared units.

    samples[label]: (B, G+1, A) PCK replicates, G keypoint groups + the pooled 'all'
    group last; point[label]: (G+1, A) estimate on the full test set.
    """
    groups: list[str]
    thresholds: tuple[float, ...]
    point: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    unit: str
    n_units: int


def _group_matrix(merged: bool) -> tuple[list[str], np.ndarray]:
    """(K, G+1) 0/1 matrix summing keypoints into groups, last column = all keypoints."""
    names = [side_merged_name(k) if merged else k for k in TEMPORAL25]
    order = list(dict.fromkeys(names))
    M = np.zeros((len(TEMPORAL25), len(order) + 1))
    M[np.arange(len(names)), [order.index(n) for n in names]] = 1.0
    M[:, -1] = 1.0
    return order + [ALL], M


def bootstrap_pck(preds: dict[str, pd.DataFrame], *, thresholds: tuple[float, ...] = PCK_THRESHOLDS,
                  merged: bool = False, unit: str = "frame", n_boot: int = 1000, seed: int = 0,
                  k: int = 5, identity: bool = True) -> Bootstrap:
    """Bootstrap PCK replicates for each run (and the identity baseline of the first).

    All runs are aligned on the union of their units, so with one seed every run sees
    the same resampled test sets (paired comparison). Deterministic for a seed.
    """
    if not preds:
        raise ValueError("no runs given")
    counted = {label: unit_counts(df, thresholds, unit=unit, k=k) for label, df in preds.items()}
    if identity:
        first = next(iter(preds.values()))
        counted[baseline_label(preds)] = unit_counts(first, thresholds, unit=unit, k=k, source="input")
    all_units = pd.Index(sorted(set().union(*(set(c[0]) for c in counted.values()))))
    U = len(all_units)
    if U == 0:
        raise RunError("predictions.parquet", "no test rows to bootstrap")
    groups, M = _group_matrix(merged)
    rng = np.random.default_rng(seed)
    # Multinomial counts = how often each unit is drawn in each replicate: resampling
    # with replacement as one (B, U) matrix.
    W = rng.multinomial(U, np.full(U, 1.0 / U), size=n_boot).astype(np.float64)   # (B, U)
    point, samples = {}, {}
    for label, (units, correct, visible) in counted.items():
        pos = all_units.get_indexer(units)
        C = np.zeros((U,) + correct.shape[1:])
        V = np.zeros((U, visible.shape[1]))
        C[pos], V[pos] = correct, visible
        Cg = np.einsum("uka,kg->uga", C, M)                                 # (U, G+1, A)
        Vg = V @ M                                                          # (U, G+1)
        with np.errstate(invalid="ignore", divide="ignore"):
            point[label] = Cg.sum(0) / Vg.sum(0)[:, None]
            num = np.einsum("bu,uga->bga", W, Cg)                           # (B, G+1, A)
            den = (W @ Vg)[:, :, None]                                      # (B, G+1, 1)
            samples[label] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return Bootstrap(groups=groups, thresholds=tuple(thresholds), point=point, samples=samples,
                     unit=unit, n_units=U)


def ci_table(boot: Bootstrap, threshold: float, *, level: float = 0.95,
             reference: str | None = None) -> pd.DataFrame:
    """Long table: one row per (run, keypoint group) with the point estimate and the
    percentile CI at ``level``; with ``reference``, also the paired difference to it
    (``diff``, ``diff_lo``, ``diff_hi``) from the same replicates."""
    a = boot.thresholds.index(threshold)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows = []
    for label, s in boot.samples.items():
        with np.errstate(all="ignore"):
            lo, hi = np.nanpercentile(s[:, :, a], q, axis=0) if np.isfinite(s[:, :, a]).any() \
                else (np.full(len(boot.groups), np.nan),) * 2
        part = pd.DataFrame({"run": label, "keypoint": boot.groups, "pck": boot.point[label][:, a],
                             "lo": lo, "hi": hi})
        if reference is not None:
            d = s[:, :, a] - boot.samples[reference][:, :, a]
            with np.errstate(all="ignore"):
                dlo, dhi = np.nanpercentile(d, q, axis=0) if np.isfinite(d).any() \
                    else (np.full(len(boot.groups), np.nan),) * 2
            part["diff"] = boot.point[label][:, a] - boot.point[reference][:, a]
            part["diff_lo"], part["diff_hi"] = dlo, dhi
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV export of a table (index kept when it is named), for st.download_button."""
    return df.to_csv(index=df.index.name is not None).encode()


# ------------------------------------------------------------------------ sequences

def list_videos(preds: pd.DataFrame) -> list[str]:
    """Video ids present in a temporal run's predictions, sorted."""
    return sorted(preds["video"].astype(str).unique())


def video_rows(preds: pd.DataFrame, video: str) -> pd.DataFrame:
    """The rows of one video, sorted by frame then keypoint."""
    rows = preds[preds["video"].astype(str) == str(video)]
    if rows.empty:
        raise RunError("predictions.parquet", f"no rows for video {video!r}")
    return rows.sort_values(["frame", "keypoint"], kind="stable").reset_index(drop=True)


def per_frame_error(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean keypoint error per frame (visible keypoints only), estimator vs refined.

    Columns: frame, input_error_px, error_px, n_visible (heatmap pixels). A frame
    without a visible keypoint gets NaN, which plots as a gap.
    """
    vis = rows["visible"].astype(bool)
    g = rows.assign(e=rows["error_px"].where(vis), i=rows["input_error_px"].where(vis),
                    v=vis.astype(int)).groupby("frame", sort=True)
    return pd.DataFrame({"input_error_px": g["i"].mean(), "error_px": g["e"].mean(),
                         "n_visible": g["v"].sum()}).reset_index()


def video_motion(rows: pd.DataFrame) -> dict[str, float]:
    """One video's smoothness (``core.metrics``, in the rows' pixels per frame squared):
    the jitter of the estimator's and the run's keypoints over all the video's frames
    (no ground truth needed), the true motion's jitter, and both acceleration errors
    where there is ground truth (NaN without)."""
    names = rows["keypoint"].max() + 1
    t = rows["frame"].max() - rows["frame"].min() + 1
    grid = rows.sort_values(["frame", "keypoint"])
    frame = grid["frame"].to_numpy() - grid["frame"].min()

    def arr(xc: str, yc: str) -> np.ndarray:
        out = np.full((t, names, 2), np.nan)
        out[frame, grid["keypoint"].to_numpy()] = grid[[xc, yc]].to_numpy(np.float64)
        return out
    vis = np.zeros((t, names), bool)
    vis[frame, grid["keypoint"].to_numpy()] = grid["visible"].astype(bool).to_numpy()
    gt, est, ref = arr("gt_x", "gt_y"), arr("input_x", "input_y"), arr("pred_x", "pred_y")
    return {"estimator_jitter": jitter(est), "refined_jitter": jitter(ref),
            "true_jitter": jitter(np.where(vis[..., None], gt, np.nan)),
            "estimator_accel_error": acceleration_error(est, gt, vis),
            "refined_accel_error": acceleration_error(ref, gt, vis)}


def frame_points(rows: pd.DataFrame, frame: int) -> pd.DataFrame:
    """One frame's keypoints: name, gt, input (estimator) and refined coordinates."""
    f = rows[rows["frame"] == frame]
    cols = ["keypoint", "keypoint_name", "visible", "gt_x", "gt_y", "input_x", "input_y",
            "pred_x", "pred_y", "error_px", "input_error_px"]
    return f[[c for c in cols if c in f.columns]].reset_index(drop=True)


def resolve_video_file(data_root: str | Path, video: str) -> tuple[Path, slice | None]:
    """The ``.npz`` holding a test video's heatmaps, inside the run's data root, and
    the frame slice of it the run's video covers (None = all frames).

    Video ids come from a file on disk, so they are treated as input: the file must
    resolve inside the root. Lookup order: the dataset's index.json (id -> file);
    ``<root>/<video>.npz`` (a folder of .npz, id = relative path); a single-video
    dataset split in time, whose ids read ``name[a:b]``. Raises DataError otherwise.
    """
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(root, "the run's data folder does not exist (moved or deleted?)")
    base, sl = str(video), None
    m = re.fullmatch(r"(.+)\[(\d+):(\d+)\]", base)
    if m:
        base, sl = m.group(1), slice(int(m.group(2)), int(m.group(3)))
    candidates: list[tuple[Path, slice | None]] = []     # (file, frames of it)
    index = root / "index.json"
    if index.is_file():
        try:
            entries = json.loads(index.read_text()).get("videos", [])
        except (OSError, ValueError, AttributeError) as e:
            raise DataError(index, f"cannot be read ({e})") from None
        for e in entries if isinstance(entries, list) else []:
            if not isinstance(e, dict):
                continue
            vid = str(e.get("id", Path(str(e.get("file", ""))).stem))
            if vid == str(video):
                candidates.append((root / str(e.get("file", "")), None))
            elif sl is not None and vid == base:
                candidates.append((root / str(e.get("file", "")), sl))
    candidates += [(root / f"{video}.npz", None), (root / f"{base}.npz", sl)]
    for c, part in candidates:
        real = c.resolve()
        if not real.is_relative_to(root):
            raise DataError(root, f"video {video!r} points outside the data folder")
        if real.is_file() and real.suffix == ".npz":
            return real, part
    raise DataError(root, f"no heatmaps for video {video!r} in the data folder "
                          "(only .npz datasets can be shown)")


def load_run_video(data_root: str | Path, video: str) -> Video:
    """The test video's heatmaps, mapping and frames, as ``core.temporal.videos.Video``
    cut to the frames the run's predictions number from 0."""
    path, sl = resolve_video_file(data_root, video)
    v = load_video(path, min_frames=1)
    return v.frames(sl.start, sl.stop, id=v.id) if sl is not None else v


# ----------------------------------------------------------------------- frames and image pixels

def frame_image(video: Video, frame: int, root: str | Path) -> np.ndarray | None:
    """(H, W, 3) uint8 frame ``frame`` of ``video``, read only inside ``root`` (the run's
    or the chosen data folder); None when the video has no frames. DataError for a frame
    that is missing, unreadable or outside ``root``."""
    if video.frame_paths is None or not 0 <= frame < len(video.frame_paths):
        return None
    base = video.path.parent if video.path is not None else Path(root)
    rel = Path(video.frame_paths[frame])
    target = rel if rel.is_absolute() else base / rel
    return np.asarray(open_image(resolve_inside(root, target)))


def heatmap_overlay(video: Video, frame: int, size: tuple[int, int], *, colour=(255, 60, 0)) -> np.ndarray:
    """(H, W, 4) uint8 RGBA: the frame's heatmaps (max over keypoints, as the models see
    them) warped into the image of ``size`` (W, H) through the frame's heatmap -> image
    mapping (a rotated crop for BlazePose), transparent where they are 0."""
    w, h = size
    m = frame_heatmap(video, frame)                                     # (hh, hw) in [0, 1]
    yy, xx = np.mgrid[0:h, 0:w]
    pix = np.stack([xx + 0.5, yy + 0.5], -1).reshape(1, -1, 2)          # pixel centres
    uv = to_heatmap(pix, video.affines()[frame:frame + 1])[0]           # (H*W, 2)
    u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    inside = (u >= 0) & (u < m.shape[1]) & (v >= 0) & (v < m.shape[0])
    alpha = np.zeros(h * w, np.float32)
    alpha[inside] = m[v[inside], u[inside]]
    out = np.zeros((h * w, 4), np.uint8)
    out[:, :3] = colour
    out[:, 3] = np.clip(alpha * 255 * 0.8, 0, 255)
    return out.reshape(h, w, 4)


XY = (("gt_x", "gt_y"), ("input_x", "input_y"), ("pred_x", "pred_y"))


def rows_in_image(rows: pd.DataFrame, video: Video) -> pd.DataFrame:
    """predictions rows of one video (heatmap pixels) moved to image pixels through each
    frame's mapping; ``error_px`` / ``input_error_px`` recomputed in image pixels."""
    out = rows.copy()
    affines = video.affines()
    frames = out["frame"].to_numpy()
    ok = frames < len(affines)
    a = affines[np.clip(frames, 0, len(affines) - 1)]                  # (N, 2, 3)
    for xc, yc in XY:
        pts = out[[xc, yc]].to_numpy(np.float64)[:, None]               # (N, 1, 2)
        img = to_image(pts, a)[:, 0]                                    # (N, 2)
        out[xc], out[yc] = np.where(ok, img[:, 0], np.nan), np.where(ok, img[:, 1], np.nan)
    vis = out["visible"].astype(bool).to_numpy()
    for err, (xc, yc) in (("error_px", XY[2]), ("input_error_px", XY[1])):
        d = np.hypot(out[xc] - out["gt_x"], out[yc] - out["gt_y"])
        out[err] = np.where(vis, d, np.nan)
    return out


def refined_rows(video: Video, refined: np.ndarray, estimator: np.ndarray) -> pd.DataFrame:
    """Rows like predictions.parquet's, in image pixels, for a video refined live
    (``core.temporal.refine.refine_video``): ground truth where the video has it."""
    t, k = refined.shape[:2]
    gt = video.keypoints[..., :2] if video.keypoints is not None else np.full((t, k, 2), np.nan)
    vis = (video.keypoints[..., 2] > 0) & video.joint_mask[None] if video.keypoints is not None \
        else np.zeros((t, k), bool)
    rep = lambda a: a.reshape(-1)                                       # noqa: E731
    df = pd.DataFrame({
        "frame": np.repeat(np.arange(t), k), "keypoint": np.tile(np.arange(k), t),
        "keypoint_name": np.tile(np.asarray(TEMPORAL25), t), "visible": rep(vis),
        "gt_x": rep(gt[..., 0]), "gt_y": rep(gt[..., 1]),
        "input_x": rep(estimator[..., 0]), "input_y": rep(estimator[..., 1]),
        "pred_x": rep(refined[..., 0]), "pred_y": rep(refined[..., 1]),
    })
    df["error_px"] = np.where(df["visible"], np.hypot(df.pred_x - df.gt_x, df.pred_y - df.gt_y), np.nan)
    df["input_error_px"] = np.where(df["visible"], np.hypot(df.input_x - df.gt_x, df.input_y - df.gt_y), np.nan)
    return df


def frame_heatmap(video, frame: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: the estimator's heatmaps of one frame, preprocessed as
    the models see them (negatives to 0, each map summed to 255), max over keypoints,
    scaled by the frame's peak for display."""
    if not 0 <= frame < video.heatmaps.shape[0]:
        raise DataError(video.path, f"frame {frame} outside 0..{video.heatmaps.shape[0] - 1}")
    hm = normalize_heatmaps(torch.from_numpy(np.asarray(video.heatmaps[frame], np.float32)))  # (K, H, W)
    m = hm.amax(dim=0).numpy()
    top = float(m.max())
    return (m / top if top > 0 else m).astype(np.float32)
