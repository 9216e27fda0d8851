"""Tables and pictures behind the classifier pages of the dashboard (pure compute).

Everything here takes run objects / pandas frames / numpy arrays and returns frames,
arrays or PIL images, so it is testable without Streamlit and reusable from a notebook.
The pages (``pages/home.py``, ``runs.py``, ``samples.py``, ``confusion.py``) only draw.

Shapes used throughout:
    preds    DataFrame, one row per test sample (the classifier ``predictions.parquet``
             of the run-folder contract: label, pred, confidence, correct, prob_<class> ...)
    classes  list[str] of C class names, in the run's class order
    cm       (C, C) confusion matrix, rows = true class, columns = predicted class
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core.classification.crops import crop_box, crop_padded
from core.classification.model import PRESETS
from core.errors import RunError
from core.images import open_image, read_image_size
from core.io import resolve_inside
from core.keypoints import COCO17_SKELETON
from core.metrics import confusion_matrix, per_class_report

# ------------------------------------------------------------------ the paper


def preset_description(name: str) -> dict[str, str]:
    """What a paper preset is (its table, fc, keypoints, head), read off its config, so the
    table reads without the paper at hand."""
    cfg = PRESETS[name]
    head = "-".join([f"{w}-ReLU-Dropout" for w in cfg.hidden] + ["Linear"])
    return {"table": "2" if cfg.use_keypoints else "1", "fc": "trainable" if cfg.train_fc else "frozen",
            "keypoints": "yes" if cfg.use_keypoints else "no",
            "head": head if cfg.trained else f"{head} (untrained)"}


# ------------------------------------------------------------------ runs


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def runs_table(runs: Sequence) -> pd.DataFrame:
    """One row per run (finished, unfinished or broken), for the Home and Runs pages.

    ``runs`` are ``core.runs.Run`` objects. Never raises on a damaged run: its problem
    goes into the ``problem`` column.
    """
    rows = []
    for r in runs:
        info = r.info
        data = info.data if info else None
        backbone = info.backbone if info else None
        head = r.headline if r.metrics else None
        rows.append({
            "run_id": r.id,
            "kind": r.kind or "?",
            "name": r.name or "?",
            "label": info.label if info else "?",
            "seed": info.seed if info else None,
            "status": r.status,
            "headline": head[0] if head else None,
            "value": _num(head[1]) if head else math.nan,
            "best_epoch": (r.metrics or {}).get("best_epoch"),
            "data": data.root if data else "",
            "num_train": data.num_train if data else None,
            "num_test": data.num_test if data else None,
            "keypoints": (data.keypoint_source or "annotation") if data and r.kind == "classifier" else None,
            "backbone": backbone.label if backbone else ("" if r.kind != "classifier" else "?"),
            "backbone_source": backbone.source if backbone else None,
            "backbone_warning": backbone.warning if backbone else None,
            "device": info.device if info else None,
            "processes": info.world_size if info else 1,
            "started_at": info.started_at if info else None,
            "seconds": sum(_num(v) for v in (info.phase_seconds if info else {}).values()) or math.nan,
            "problem": r.problem if r.status != "finished" else None,
        })
    cols = ["run_id", "kind", "name", "label", "seed", "status", "headline", "value", "best_epoch", "data",
            "num_train", "num_test", "keypoints", "backbone", "backbone_source", "backbone_warning",
            "device", "processes", "started_at", "seconds", "problem"]
    return pd.DataFrame(rows, columns=cols)


def history_long(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack per-run history.csv frames into long form for overlaid curves.

    Returns columns run, epoch, split ("train"|"val"), metric ("loss"|"acc"|"pck"),
    value. Classifier histories have *_acc, temporal ones *_pck; both are accepted.
    """
    parts = []
    for run, h in histories.items():
        if h is None or h.empty or "epoch" not in h:
            continue
        for split in ("train", "val"):
            for metric in ("loss", "acc", "pck"):
                col = f"{split}_{metric}"
                if col in h:
                    parts.append(pd.DataFrame({
                        "run": run, "epoch": h["epoch"].to_numpy(), "split": split,
                        "metric": metric, "value": pd.to_numeric(h[col], errors="coerce").to_numpy(),
                    }))
    if not parts:
        return pd.DataFrame(columns=["run", "epoch", "split", "metric", "value"])
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------ gallery

SORT_ORDERS = ("most confidently wrong", "least confident", "most confident", "sample id",
               "most mistaken", "hardest (entropy)", "smallest margin")
# the orders that need the stored probabilities (core.classification.mistakes)
SCORE_ORDERS = {"most mistaken": ("mistakenness", False), "hardest (entropy)": ("hardness", False),
                "smallest margin": ("margin", True)}


def run_classes(run) -> list[str]:
    """Class names of a classifier run, from run.json (raises RunError when absent)."""
    classes = run.info.data.classes if run.info else None
    if not classes or not isinstance(classes, list):
        raise RunError(run.path / "run.json", "has no data.classes list")
    return [str(c) for c in classes]


def check_predictions(preds: pd.DataFrame, classes: Sequence[str], path=None) -> pd.DataFrame:
    """Validate the columns the pages rely on; one clear RunError otherwise."""
    need = ["sample_id", "label", "pred", "confidence", "correct"]
    missing = [c for c in need if c not in preds.columns]
    if missing:
        raise RunError(path, f"predictions lack column(s) {', '.join(missing)}")
    C = len(classes)
    for col in ("label", "pred"):
        v = preds[col].to_numpy()
        if len(v) and (v.min() < 0 or v.max() >= C):
            raise RunError(path, f"column {col!r} has class indices outside 0..{C - 1}")
    return preds


def filter_predictions(preds: pd.DataFrame, *, true_classes: Iterable[int] | None = None,
                       pred_classes: Iterable[int] | None = None, correctness: str = "all",
                       confidence: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:
    """Rows matching every filter. Empty/None class filters mean "any class".

    correctness: "all" | "correct" | "wrong"; confidence: inclusive (low, high).
    """
    m = np.ones(len(preds), dtype=bool)
    if true_classes:
        m &= preds["label"].isin(list(true_classes)).to_numpy()
    if pred_classes:
        m &= preds["pred"].isin(list(pred_classes)).to_numpy()
    if correctness == "correct":
        m &= preds["correct"].to_numpy(dtype=bool)
    elif correctness == "wrong":
        m &= ~preds["correct"].to_numpy(dtype=bool)
    elif correctness != "all":
        raise ValueError(f"correctness must be all|correct|wrong, not {correctness!r}")
    lo, hi = confidence
    conf = preds["confidence"].to_numpy(dtype=float)
    m &= (conf >= lo) & (conf <= hi)
    return preds[m]


def sort_predictions(preds: pd.DataFrame, order: str = "most confidently wrong") -> pd.DataFrame:
    """Sort for the gallery.

    "most confidently wrong": wrong predictions first, highest confidence first (the
    errors the model is surest of are the interesting ones), then correct ones from
    the least confident up. "most mistaken", "hardest (entropy)", "smallest margin" sort
    by the columns ``core.classification.mistakes.prediction_scores`` adds. Ties keep
    sample order (stable sort).
    """
    conf = preds["confidence"].to_numpy(dtype=float)
    if order == "most confidently wrong":
        wrong = ~preds["correct"].to_numpy(dtype=bool)
        key = np.where(wrong, -conf, 1.0 + conf)       # wrong: -conf in [-1,0]; right: [1,2]
        idx = np.argsort(key, kind="stable")
    elif order == "least confident":
        idx = np.argsort(conf, kind="stable")
    elif order == "most confident":
        idx = np.argsort(-conf, kind="stable")
    elif order == "sample id":
        idx = np.argsort(preds["sample_id"].astype(str).to_numpy(), kind="stable")
    elif order in SCORE_ORDERS:
        # the score columns of core.classification.mistakes.prediction_scores
        column, ascending = SCORE_ORDERS[order]
        if column not in preds.columns:
            raise ValueError(f"order {order!r} needs the {column!r} column (prediction_scores)")
        v = preds[column].to_numpy(dtype=float)
        idx = np.argsort(v if ascending else -v, kind="stable")
    else:
        raise ValueError(f"unknown order {order!r}; one of {SORT_ORDERS}")
    return preds.iloc[idx]


def paginate(df: pd.DataFrame, page: int, per_page: int) -> tuple[pd.DataFrame, int]:
    """Rows of 1-based ``page`` and the number of pages (at least 1)."""
    n_pages = max(1, math.ceil(len(df) / per_page))
    page = min(max(1, page), n_pages)
    return df.iloc[(page - 1) * per_page: page * per_page], n_pages


def class_probabilities(row: pd.Series, classes: Sequence[str]) -> pd.DataFrame:
    """Probabilities of one prediction row as a (class, probability) frame."""
    probs = [float(row.get(f"prob_{c}", math.nan)) for c in classes]
    return pd.DataFrame({"class": list(classes), "probability": probs})


# ------------------------------------------------------------------ confusion


def confusion(preds: pd.DataFrame, num_classes: int, normalize: bool = False) -> np.ndarray:
    """(C, C) confusion matrix of a predictions frame; rows true, columns predicted.

    ``normalize`` divides each row by its total (recall on the diagonal); a class with
    no test sample gives a row of NaN rather than pretending 0.
    """
    cm = np.asarray(confusion_matrix(preds["pred"].to_numpy(), preds["label"].to_numpy(),
                                     num_classes), dtype=np.int64)
    return normalize_rows(cm) if normalize else cm


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    totals = cm.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, cm / np.where(totals > 0, totals, 1), np.nan)


def confusion_points(cm: np.ndarray, classes: Sequence[str], counts: np.ndarray | None = None,
                     ) -> pd.DataFrame:
    """One row per cell, for drawing the matrix as clickable square markers.

    Columns: true, pred (class names), true_idx, pred_idx, value (what is coloured),
    count (samples in the cell; ``counts`` defaults to ``cm``), text (label shown).
    """
    C = len(classes)
    counts = cm if counts is None else counts
    t, p = np.meshgrid(np.arange(C), np.arange(C), indexing="ij")
    t, p = t.ravel(), p.ravel()
    value = np.asarray(cm, dtype=float).ravel()
    cnt = np.asarray(counts).ravel()
    is_int = np.issubdtype(np.asarray(cm).dtype, np.integer)
    text = [("" if (c == 0 and (is_int or v == 0)) else
             (f"{int(v)}" if is_int else f"{v:.2f}")) for v, c in zip(value, cnt)]
    return pd.DataFrame({
        "true": np.asarray(classes, dtype=object)[t], "pred": np.asarray(classes, dtype=object)[p],
        "true_idx": t, "pred_idx": p, "value": value, "count": cnt, "text": text,
    })


def cell_samples(preds: pd.DataFrame, true_idx: int, pred_idx: int) -> pd.DataFrame:
    """Exactly the samples of one confusion cell."""
    return preds[(preds["label"].to_numpy() == true_idx) & (preds["pred"].to_numpy() == pred_idx)]


def most_confused_pairs(cm: np.ndarray, classes: Sequence[str], top: int = 10) -> pd.DataFrame:
    """Off-diagonal cells by count, largest first (ties: by share of the true class).

    Columns: true, pred, count, share_of_true (count / samples of the true class).
    """
    cm = np.asarray(cm)
    C = len(classes)
    t, p = np.nonzero(~np.eye(C, dtype=bool) & (cm > 0))
    counts = cm[t, p]
    totals = cm.sum(axis=1)[t]
    share = counts / np.maximum(totals, 1)
    order = np.lexsort((-share, -counts))[:top]
    return pd.DataFrame({
        "true": [classes[i] for i in t[order]], "pred": [classes[i] for i in p[order]],
        "count": counts[order].astype(int), "share_of_true": share[order],
    })


def per_class_table(preds: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Per-class precision / recall / F1 / support (core.metrics), one row per class."""
    rep = per_class_report(confusion(preds, len(classes)))
    df = pd.DataFrame({k: np.asarray(rep[k]) for k in ("precision", "recall", "f1", "support")})
    df.insert(0, "class", list(classes))
    return df


def confusion_difference(preds_a: pd.DataFrame, classes_a: Sequence[str], preds_b: pd.DataFrame,
                         classes_b: Sequence[str], normalize: bool = True,
                         names: tuple[str, str] = ("run A", "run B")) -> np.ndarray:
    """Matrix of run B minus run A (row-normalised by default, so test sets of other
    sizes compare). Raises RunError when the two runs do not share the same classes in
    the same order, because cells would then mean different things."""
    if list(classes_a) != list(classes_b):
        only_a = sorted(set(classes_a) - set(classes_b))
        only_b = sorted(set(classes_b) - set(classes_a))
        detail = (f"only in {names[0]}: {only_a or '-'}; only in {names[1]}: {only_b or '-'}"
                  if only_a or only_b else "same names in a different order")
        raise RunError(None, f"cannot compare {names[0]} and {names[1]}: their classes differ ({detail})")
    C = len(classes_a)
    return confusion(preds_b, C, normalize) - confusion(preds_a, C, normalize)


# ------------------------------------------------------------------ images

# (bone colour, visible joint, occluded joint) of the two keypoint sets a sample can carry
ANNOTATION_COLOURS = ((0, 230, 255), (255, 60, 60), (255, 200, 0))
ESTIMATED_COLOURS = ((60, 255, 120), (170, 60, 255), (210, 150, 255))


def draw_skeleton(img, keypoints: np.ndarray, edges=COCO17_SKELETON, radius: int | None = None,
                  colours=ANNOTATION_COLOURS):
    """Draw keypoints (K, 3: x, y in ``img`` pixels, visibility) and the skeleton on a
    copy of the PIL image; joints with visibility 0 are skipped."""
    img = img.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    kp = np.asarray(keypoints, dtype=float).reshape(-1, 3)
    r = radius or max(2, round(min(img.size) / 60))
    width = max(1, r // 2 + 1)
    bone, visible, occluded = colours
    for a, b in edges:
        if a < len(kp) and b < len(kp) and kp[a, 2] > 0 and kp[b, 2] > 0:
            draw.line([tuple(kp[a, :2]), tuple(kp[b, :2])], fill=bone, width=width)
    for x, y, v in kp:
        if v > 0:
            colour = visible if v >= 2 else occluded
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(0, 0, 0))
    return img


def sample_picture(root: str | Path, row: pd.Series | dict, *, margin: float = 0.15,
                   skeleton: bool = True, size: int = 192, max_pixels: int = 40_000_000,
                   cache=None):
    """The crop of one prediction row (its person's bbox + margin), resized to ``size``,
    with the keypoint skeleton drawn on when asked. Raises DataError when the image is
    missing, outside the data root, or unreadable.

    ``cache``: the run's ``core.classification.image_cache.ImageCache``; when it holds this sample at
    ``size`` px or more, the crop comes from it and the scene file's header alone is read
    (for the crop's place in the scene), instead of decoding the whole scene."""

    path = resolve_inside(root, str(row["image_path"]))
    bbox = row.get("bbox") if hasattr(row, "get") else None
    has_box = bbox is not None and len(bbox) == 4
    cached = (cache.crop(row["sample_id"]) if cache is not None and has_box and cache.image_size >= size
              and abs(cache.margin - margin) < 1e-9 and "sample_id" in row else None)
    if cached is not None:
        W, H = read_image_size(path)
        box = crop_box(bbox, (W, H), margin)
        crop = Image.fromarray(cached)
    else:
        img = open_image(path, max_pixels=max_pixels)
        W, H = img.size
        # The same square crop the model saw (core.classification.dataset.crop_box), so what the
        # gallery shows is what was classified.
        box = crop_box(bbox, (W, H), margin) if has_box else (0, 0, W, H)
        crop = crop_padded(img, box)
    scale_x, scale_y = size / (box[2] - box[0]), size / (box[3] - box[1])
    canvas = crop.resize((size, size), Image.BILINEAR)
    for column, colours in (("keypoints", ANNOTATION_COLOURS), ("estimated_keypoints", ESTIMATED_COLOURS)):
        kps = row.get(column) if hasattr(row, "get") else None
        if skeleton and kps is not None and len(kps) == 51:
            kp = np.asarray(kps, dtype=float).reshape(17, 3).copy()
            kp[:, 0] = (kp[:, 0] - box[0]) * scale_x
            kp[:, 1] = (kp[:, 1] - box[1]) * scale_y
            canvas = draw_skeleton(canvas, kp, colours=colours)
    return canvas


def placeholder_picture(size: int = 192, text: str = "image missing"):
    """Grey square with a short message, shown where an image cannot be read."""
    img = Image.new("RGB", (size, size), (60, 60, 60))
    d = ImageDraw.Draw(img)
    d.line([(0, 0), (size, size)], fill=(90, 90, 90), width=2)
    d.line([(0, size), (size, 0)], fill=(90, 90, 90), width=2)
    d.text((8, size // 2 - 6), text, fill=(230, 230, 230))
    return img
