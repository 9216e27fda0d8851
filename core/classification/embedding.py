"""The embedding map: a 2-D projection of every test sample's features, for finding
which look-alike exercises a classifier mixes up (FiftyOne's embeddings panel, for a
PoseLab run).

Three feature sets per test sample, all computed with the run's own model (so a preset
with an unfrozen layer4 gets its own features, not the frozen backbone's):

=============  ===============================================================
image          the pooled 2048-d ResNet-50 features of the crop (``forward_features``)
keypoints      the 17 keypoints the run saw, as the model gets them (x/W, y/H, mask): 51-d
head_input     what the head sees: fc(features), plus the 51 keypoint values for a
               keypoint preset (``forward_head``'s concatenation)
=============  ===============================================================

Projections come from scikit-learn: t-SNE (van der Maaten & Hinton 2008) on the first
50 principal components of the standardised features (the usual preprocessing, and what
makes t-SNE fast), perplexity ``min(30, (N - 1) / 3)``, PCA initialisation, seeded; or
PCA itself (2 components). t-SNE keeps neighbourhoods, not distances: two clusters far
apart are different, how far apart means little.

Both are computed once per run and cached in ``<runs>/_cache/embeddings/`` (safetensors,
written atomically): ``<run id>-features.safetensors`` with the three sets and the sample
ids, and ``<run id>-<set>-<method>.safetensors`` with each projection. A run folder's
results never change after it finished, so the run id is the key.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

from core.classification import saliency as sal
from core.errors import DataError
from core.runs import Run, save_weights

CACHE_DIR = "_cache/embeddings"
FEATURE_SETS: dict[str, str] = {
    "image": "image features (pooled 2048-d)",
    "keypoints": "keypoints alone (17 x 3)",
    "head_input": "the head's input (fc + keypoints)",
}
PROJECTIONS: dict[str, str] = {"tsne": "t-SNE", "pca": "PCA"}
MIN_SAMPLES = 5                 # t-SNE needs a perplexity >= 1 below N; fewer is no map


@dataclass(frozen=True)
class RunFeatures:
    sample_ids: list[str]
    image: np.ndarray          # (N, 2048) float32
    keypoints: np.ndarray      # (N, 17, 3) float32 as the model got them
    head_input: np.ndarray     # (N, F [+ 51]) float32

    def get(self, feature_set: str) -> np.ndarray:
        """(N, D) float32 of one feature set."""
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {feature_set!r}; choose from {list(FEATURE_SETS)}")
        a = getattr(self, feature_set)
        return a.reshape(len(a), -1)


def cache_dir(run: Run) -> Path:
    return run.path.parent / CACHE_DIR


@torch.no_grad()
def compute_features(run: Run, model: torch.nn.Module, preds: pd.DataFrame, *, image_cache=None,
                     batch: int = 32, on_progress: Callable[[float, str], None] | None = None) -> RunFeatures:
    """The three feature sets of every row of ``preds`` (the run's test predictions), the
    crops exactly as ``core.classification.saliency.sample_input`` makes them."""
    use_kp = sal.run_uses_keypoints(run.info)
    dev = sal._device(model)
    ids, images, kps, heads = [], [], [], []
    rows = list(preds.iterrows())
    with sal._eval_mode(model):
        for start in range(0, len(rows), batch):
            inputs = [sal.sample_input(run.info, row, use_keypoints=True, cache=image_cache)
                      for _, row in rows[start:start + batch]]
            x = torch.stack([i.image for i in inputs]).to(dev).contiguous(memory_format=torch.channels_last)
            k = torch.stack([i.keypoints for i in inputs]).to(dev)                    # (B, 17, 3)
            f = model.forward_features(x).float()                                     # (B, 2048)
            fc = model.fc(f).float()                                                  # (B, F)
            heads.append(torch.cat([fc, k.flatten(1)], 1) if use_kp else fc)
            images.append(f)
            kps.append(k)
            ids += [i.name for i in inputs]
            if on_progress is not None:
                on_progress(min(1.0, (start + batch) / max(len(rows), 1)), f"features {len(ids)}/{len(rows)}")
    if not ids:
        raise DataError(run.file("predictions.parquet"), "has no test samples: nothing to map")
    cat = lambda t: torch.cat(t).cpu().numpy().astype(np.float32)   # noqa: E731
    return RunFeatures(ids, cat(images), cat(kps), cat(heads))


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """A cache file's tensors and metadata, or None (missing or unreadable: a miss)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception:
        return None


def run_features(run: Run, model: torch.nn.Module, preds: pd.DataFrame, *, image_cache=None,
                 on_progress=None) -> RunFeatures:
    """``compute_features``, read from the run's cache file when it holds exactly these
    samples, else computed and written there."""
    path = cache_dir(run) / f"{run.id}-features.safetensors"
    want = preds["sample_id"].astype(str).tolist()
    got = _read(path)
    if got is not None:
        t, meta = got
        if json.loads(meta.get("sample_ids", "[]")) == want:
            return RunFeatures(want, t["image"], t["keypoints"], t["head_input"])
    feats = compute_features(run, model, preds, image_cache=image_cache, on_progress=on_progress)
    save_weights(path, {"image": torch.from_numpy(feats.image), "keypoints": torch.from_numpy(feats.keypoints),
                        "head_input": torch.from_numpy(feats.head_input)},
                 metadata={"sample_ids": json.dumps(feats.sample_ids)})
    return feats


def project(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, 2) float32 projection of (N, D) features (module docstring)."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; choose from {list(PROJECTIONS)}")
    x = np.asarray(x, np.float64)
    n = len(x)
    if n < MIN_SAMPLES:
        raise DataError(None, f"{n} test samples are too few for an embedding map (at least {MIN_SAMPLES})")
    x = StandardScaler().fit_transform(x)
    x = x[:, np.nanstd(x, axis=0) > 0] if (np.nanstd(x, axis=0) > 0).any() else x[:, :1]
    if method == "pca" or x.shape[1] < 2:
        comps = min(2, x.shape[1])
        y = PCA(n_components=comps, random_state=seed).fit_transform(x)
        return np.pad(y, ((0, 0), (0, 2 - comps))).astype(np.float32)
    if x.shape[1] > 50:
        x = PCA(n_components=min(50, n - 1), random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(x).astype(np.float32)


@dataclass(frozen=True)
class Projection:
    sample_ids: list[str]
    xy: np.ndarray              # (N, 2) float32
    seconds: float              # time of the projection itself (0 when read from the cache)


def run_projection(run: Run, features: RunFeatures, feature_set: str, method: str = "tsne",
                   seed: int = 0) -> Projection:
    """One projection of one feature set, read from the run's cache or computed and cached."""
    path = cache_dir(run) / f"{run.id}-{feature_set}-{method}-s{seed}.safetensors"
    got = _read(path)
    if got is not None and json.loads(got[1].get("sample_ids", "[]")) == features.sample_ids:
        return Projection(features.sample_ids, got[0]["xy"], 0.0)
    t0 = time.perf_counter()
    xy = project(features.get(feature_set), method, seed)
    seconds = time.perf_counter() - t0
    save_weights(path, {"xy": torch.from_numpy(xy)},
                 metadata={"sample_ids": json.dumps(features.sample_ids), "seconds": f"{seconds:.3f}"})
    return Projection(features.sample_ids, xy, seconds)


def map_frame(projection: Projection, preds: pd.DataFrame) -> pd.DataFrame:
    """The projection joined to the predictions: sample_id, x, y, label_name, pred_name,
    correctness, confidence (and mistakenness when the frame has it), in projection order."""
    xy = pd.DataFrame({"sample_id": projection.sample_ids, "x": projection.xy[:, 0], "y": projection.xy[:, 1]})
    keep = [c for c in ("sample_id", "label_name", "pred_name", "correct", "confidence", "mistakenness")
            if c in preds.columns]
    out = xy.merge(preds[keep].assign(sample_id=preds["sample_id"].astype(str)), on="sample_id", how="left")
    out["correctness"] = np.where(out["correct"].astype(bool), "correct", "wrong")
    return out


def selected_ids(event, frame: pd.DataFrame) -> list[str]:
    """Sample ids of the points a Plotly selection event (Streamlit's ``on_select``)
    holds: each point's customdata[0] when given, else its x, y matched in ``frame``."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    out = []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)) and cd:
            out.append(str(cd[0]))
        elif isinstance(cd, str):
            out.append(cd)
        elif "x" in p and "y" in p:
            hit = frame[np.isclose(frame["x"], p["x"]) & np.isclose(frame["y"], p["y"])]
            out += hit["sample_id"].astype(str).tolist()
    return list(dict.fromkeys(out))
