"""Estimated keypoints for the classifier: BlazePose on each sample's crop, cached.

A deployed classifier has no annotated keypoints: a person detector gives the box and a
pose estimator the keypoints. So ``--keypoints estimated`` runs BlazePose
(``core.estimator.blazepose``) on exactly the crop the classifier sees (``load_crop``: the
square around the person's box with the run's margin, at the scene's resolution), takes
the largest person it finds there, and maps BlazePose's 33 landmarks to COCO-17
(``coco17_from_blazepose``: visibility 2 at a landmark visibility >= 0.5, 1 at >= 0.1,
else 0). The keypoints then enter the model in the same convention as the annotation's
(``core.classification.crops.keypoints_in_crop``): x, y as fractions of the crop's side,
and COCO visibility; a crop where BlazePose finds nobody has every keypoint at
visibility 0 (the model sees "no keypoints").

Cache: ``<runs>/_cache/keypoints/<data fingerprint>-<estimator id>-m<margin>.npz`` holding
``sample_ids``, ``keypoints`` (N, 17, 3) and ``found`` (N,), keyed like the feature cache
(data fingerprint) plus the estimator's version (model files, runtime), so a new model
never mixes with old estimates. Rows are added under a lock, as the feature cache does.
"""
from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from core.classification.crops import DEFAULT_MARGIN, keypoints_in_box, load_crop
from core.errors import DataError
from core.estimator.blazepose import BlazePose, coco17_from_blazepose, model_version
from core.images import open_image
from core.io import atomic_write, file_lock

KEYPOINT_SOURCES = ("annotation", "estimated")
CACHE_DIR = "_cache/keypoints"
CHUNK = 32                     # samples per pool task (a scene's people are neighbours)
_WORKER: dict = {}             # the per-process estimator (made after the fork)


def estimator_id(version: str | None = None) -> str:
    """Short id of the estimator's version (cache key, run.json)."""
    return hashlib.sha256((version or model_version()).encode()).hexdigest()[:12]


def cache_path(runs_dir: str | Path, fingerprint: str, margin: float = DEFAULT_MARGIN) -> Path:
    return Path(runs_dir) / CACHE_DIR / f"{fingerprint}-{estimator_id()}-m{margin:g}.npz"


def estimate_crop(crop: np.ndarray, estimator: BlazePose) -> tuple[np.ndarray, bool]:
    """(17, 3) float32 COCO keypoints of the largest person in ``crop`` (H, W, 3) uint8,
    as fractions of the crop's side with COCO visibility, and whether anyone was found."""
    poses = estimator.estimate_image(crop, max_people=1)
    if not poses:
        return np.zeros((17, 3), np.float32), False
    kp = coco17_from_blazepose(poses[0].landmarks, poses[0].visibility)
    return keypoints_in_box(kp, (0, 0, crop.shape[1], crop.shape[0])), True


def _estimate_chunk(task: tuple) -> tuple[int, np.ndarray, np.ndarray, str | None]:
    start, samples, margin = task
    if "estimator" not in _WORKER:
        _WORKER["estimator"] = BlazePose(num_threads=1)
    kps, found, last = [], [], (None, None)
    try:
        for s in samples:
            scene = last[1] if last[0] == s.image_path else open_image(s.image_path)
            last = (s.image_path, scene)
            kp, ok = estimate_crop(np.asarray(load_crop(s, margin, image=scene)), _WORKER["estimator"])
            kps.append(kp)
            found.append(ok)
    except DataError as e:                   # a damaged image: named by the parent
        return start, np.zeros((0, 17, 3), np.float32), np.zeros(0, bool), str(e)
    return start, np.stack(kps), np.asarray(found), None


def estimated_keypoints(samples: Sequence, *, fingerprint: str, runs_dir: str | Path,
                        margin: float = DEFAULT_MARGIN, workers: int | None = None,
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """((N, 17, 3) keypoints in the crop convention, (N,) found) for ``samples``, in their
    order: read from the cache, the missing ones estimated (one process per CPU) and added."""
    path = cache_path(runs_dir, fingerprint, margin)
    ids = [str(s.sample_id) for s in samples]
    have = _read(path)
    todo = [i for i, k in enumerate(ids) if k not in have]
    if todo:
        new = _estimate([samples[i] for i in todo], margin=margin, workers=workers, progress=progress)
        have = _add(path, {ids[i]: (new[0][j], new[1][j]) for j, i in enumerate(todo)})
    return (np.stack([have[k][0] for k in ids]).astype(np.float32),
            np.array([have[k][1] for k in ids], bool))


def _estimate(samples: list, *, margin: float, workers: int | None, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    n = len(samples)
    workers = workers or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
                             -(-n // CHUNK))
    tasks = [(a, samples[a:a + CHUNK], margin) for a in range(0, n, CHUNK)]
    kps, found = np.zeros((n, 17, 3), np.float32), np.zeros(n, bool)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap_unordered(_estimate_chunk, tasks)
        else:
            results = map(_estimate_chunk, tasks)
        with tqdm(total=n, desc="estimated keypoints", unit="crop", disable=not progress, leave=False) as bar:
            for start, kp, ok, error in results:
                if error is not None:
                    raise DataError(None, f"estimated keypoints: {error}")
                kps[start:start + len(kp)], found[start:start + len(kp)] = kp, ok
                bar.update(len(kp))
    return kps, found


def _read(path: Path) -> dict[str, tuple[np.ndarray, bool]]:
    """sample id -> (keypoints, found); an unreadable cache is a miss, not an error."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, kps, found = z["sample_ids"], z["keypoints"], z["found"]
    except (OSError, ValueError, KeyError):
        return {}
    if not (len(ids) == len(kps) == len(found)) or kps.shape[1:] != (17, 3):
        return {}
    return {str(k): (kp, bool(f)) for k, kp, f in zip(ids, kps, found)}


def _add(path: Path, rows: dict[str, tuple[np.ndarray, bool]]) -> dict[str, tuple[np.ndarray, bool]]:
    """Add rows under the lock (keeping rows other processes added meanwhile)."""
    with file_lock(path):
        have = _read(path)
        have.update({k: v for k, v in rows.items() if k not in have})
        ids = list(have)
        with atomic_write(path) as f:
            np.savez(f, sample_ids=np.asarray(ids, dtype=str),
                     keypoints=np.stack([have[k][0] for k in ids]).astype(np.float32),
                     found=np.array([have[k][1] for k in ids], bool))
    return have
