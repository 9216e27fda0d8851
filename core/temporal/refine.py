"""``python -m core refine``: a finished temporal run refines every frame of a dataset.

Each video is cut into windows of the run's k frames that cover it exactly once: windows
at 0, k, 2k, ... and, when T is not a multiple of k, one last window ending at the last
frame, of which only the frames not yet refined are kept (a video shorter than k frames
is padded with its last frame). Every frame therefore gets exactly one refined location
per keypoint, computed with as much context as the run was trained with.

Heatmap sizes: a run trained on S-px heatmaps refines S-px heatmaps; larger maps whose
side is a multiple of S (BlazePose's 64 for a run trained on 32) are average-pooled first,
their affines adapted, as ``python -m core synth sequences --heatmap`` pools them.

Outputs: a CSV with one row per (video, frame): ``video, frame, found`` then ``<keypoint>_x,
<keypoint>_y`` for the 25 TEMPORAL25 keypoints in image pixels, and an ``.npz`` beside it
with ``refined`` and ``estimator`` (N, 25, 2) image pixels, ``video`` and ``frame`` (N,),
``found`` (N,) and the run's id.

Outputs never replace inputs: an ``--out`` whose CSV or ``.npz`` is a file of the dataset
being read, or an existing file that is not a refine output (another dataset's video,
a user's own CSV), is refused before anything is computed. A refine ``.npz`` left among
videos is recognised as such and skipped by the readers
(``core.temporal.sequences.is_refine_output``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from core.errors import DataError, RunError
from core.heatmaps import decode_heatmaps, pool_heatmaps, to_image
from core.io import atomic_path, atomic_write
from core.keypoints import TEMPORAL25
from core.runs import Run, load_run
from core.temporal.models import model_from_run
from core.temporal.sequences import INDEX, _read_index, is_refine_output
from core.temporal.videos import Video, load_video
from core.temporal.windows import video_frames


@dataclass
class Refined:
    """One video refined: image-pixel locations per frame."""
    video: str
    refined: np.ndarray          # (T, 25, 2) the run's output
    estimator: np.ndarray        # (T, 25, 2) the estimator's own peaks
    found: np.ndarray            # (T,) bool


def read_videos(path: str | Path, *, confine: bool = False) -> list[Video]:
    """Every video of a sequence dataset (folder or index.json), a folder of .npz, or one
    .npz, unsplit. ``confine``: a file of a folder that is a link leading out of it is
    refused (index.json entries always are), for a folder typed into the dashboard."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / INDEX).is_file():
        path = path / INDEX
    if path.is_file() and path.name == INDEX:
        return _read_index(path)[0]
    if path.is_file() and path.suffix == ".npz":
        return [load_video(path, min_frames=1)]
    if path.is_dir():
        files = sorted(path.rglob("*.npz"))
        for p in files if confine else []:          # before any is opened
            if not p.resolve().is_relative_to(path.resolve()):
                raise DataError(path, f"{p.relative_to(path)} is a link that leads out of this folder")
        files = [p for p in files if not is_refine_output(p)]
        if files:
            return [load_video(p, min_frames=1) for p in files]
    raise DataError(path, "expected a sequence dataset folder, its index.json, or .npz videos")


def window_starts(num_frames: int, k: int) -> list[int]:
    """Starts of windows of k frames that cover ``num_frames`` frames, each frame once
    through ``keep_from``: 0, k, 2k, ... and T - k last when k does not divide T."""
    if num_frames <= k:
        return [0]
    starts = list(range(0, num_frames - k + 1, k))
    if starts[-1] + k < num_frames:
        starts.append(num_frames - k)
    return starts


def _matching(video: Video, size: tuple[int, int] | None) -> Video:
    """``video`` with its heatmaps pooled to the run's ``size`` (None: as they are)."""
    if size is None or tuple(size) == video.heatmap_size:
        return video
    h, w = video.heatmap_size
    factor = h // size[0]
    if factor < 1 or h != factor * size[0] or w != factor * size[1]:
        raise DataError(video.path, f"heatmaps are {h}x{w}; the run was trained on {size[0]}x{size[1]} "
                                    "and only larger maps with a multiple of its side can be pooled to it")
    maps, affines = pool_heatmaps(np.asarray(video.heatmaps, np.float32), video.affines(), factor)
    return Video(**{**video.__dict__, "heatmaps": maps, "heatmap_affine": affines})


@torch.no_grad()
def refine_video(model: torch.nn.Module, video: Video, *, k: int, size: tuple[int, int] | None = None,
                 batch_size: int = 16) -> Refined:
    """Refine every frame of ``video`` (see the module docstring)."""
    video = _matching(video, size)
    frames = video_frames(video)                                    # input (T, K, H, W) float16
    x = torch.from_numpy(frames["input"].astype(np.float32))
    t = x.shape[0]
    if t < k:                                                       # pad with the last frame
        x = torch.cat([x, x[-1:].expand(k - t, *x.shape[1:])])
    starts = window_starts(t, k)
    out = np.zeros((max(t, k), x.shape[1], 2), np.float32)
    covered = 0                                                     # frames refined so far
    for a in range(0, len(starts), batch_size):
        chunk = starts[a:a + batch_size]
        windows = torch.stack([x[s:s + k] for s in chunk])          # (B, k, K, H, W)
        y = model(windows)
        pts = y if getattr(model, "output_kind", "heatmaps") == "coords" else decode_heatmaps(y.float())[0]
        for s, p in zip(chunk, pts.float().numpy()):                 # p (k, K, 2)
            out[covered:s + k] = p[covered - s:]                    # only frames not refined yet
            covered = s + k
    affines = video.affines()
    refined = to_image(out[:t], affines).astype(np.float32)
    estimator = to_image(frames["input_keypoints"], affines).astype(np.float32)
    found = video.found if video.found is not None else np.ones(t, bool)
    return Refined(video.id, refined, estimator, np.asarray(found, bool))


def refine_dataset(*, run: str | Path, data: str | Path, out: str | Path | None = None,
                   progress: bool = True) -> Path:
    """``python -m core refine``: every frame of every video in ``data`` refined by the
    finished temporal ``run``; writes ``out`` (CSV, default ``<data>/refined-<run id>.csv``)
    and the ``.npz`` beside it. Returns the CSV's path."""
    r = load_run(run, require_finished=True)
    if r.kind != "temporal":
        raise RunError(r.path, f"is a {r.kind} run; refine needs a temporal one")
    videos = read_videos(data)
    if not videos:
        raise DataError(data, "holds no video")
    data_dir = Path(data) if Path(data).is_dir() else Path(data).parent
    out = Path(out) if out is not None else data_dir / f"refined-{r.id}.csv"
    check_refine_out(out, inputs=[v.path for v in videos if v.path is not None] + _index_files(data))
    model = model_from_run(r).eval()
    k = int(r.info.config["model"].get("frames", 5))
    size = _run_heatmap_size(r)
    results = []
    # The bar is closed (its line ended) before an error propagates, so the CLI's error
    # line never shares a line with it.
    with tqdm(videos, desc="refine", unit="video", disable=not progress) as bar:
        for v in bar:
            results.append(refine_video(model, v, k=k, size=size))
    write_refined(out, results, run_id=r.id)
    if progress:
        n = sum(len(x.found) for x in results)
        print(f"refined {n} frames of {len(results)} video(s) with {r.name} ({r.id}): {out} and {out.with_suffix('.npz')}")
    return out


def check_refine_out(out: Path, *, inputs: list[Path]) -> None:
    """Refuse an ``--out`` that would replace an input or a file that is not refine's own:
    the CSV and the ``.npz`` beside it are checked alike (see the module docstring)."""
    if out.suffix.lower() != ".csv":
        raise DataError(out, "--out must name a .csv file (the .npz is written beside it)")
    read = {Path(p).resolve() for p in inputs}
    for target in (out, out.with_suffix(".npz")):
        if target.resolve() in read:
            raise DataError(target, "is a file of the dataset being refined; refine never writes over its "
                                    "input: choose another --out")
        if target.is_dir():
            raise DataError(target, "is a folder; --out names a .csv file (the .npz is written beside it)")
        if target.exists() and not is_refine_output(target):
            raise DataError(target, "exists and is not an output of refine (another dataset's file, or "
                                    "your own?); refusing to overwrite it: choose another --out")


def _index_files(data: str | Path) -> list[Path]:
    """The dataset's index.json, when ``data`` is one (it is an input too)."""
    data = Path(data).expanduser()
    index = data / INDEX if data.is_dir() else data
    return [index] if index.name == INDEX and index.is_file() else []


def _run_heatmap_size(run: Run) -> tuple[int, int] | None:
    """The heatmap size the run was trained on (None for runs that did not record it)."""
    size = run.info.data.heatmap_size
    return tuple(int(v) for v in size) if size else None


def refined_frame(results: list[Refined]) -> pd.DataFrame:
    """The CSV's rows: one per (video, frame), keypoints as ``<name>_x, <name>_y``."""
    parts = []
    for res in results:
        t = len(res.found)
        cols = {"video": [res.video] * t, "frame": np.arange(t), "found": res.found}
        for j, name in enumerate(TEMPORAL25):
            cols[f"{name}_x"] = res.refined[:, j, 0]
            cols[f"{name}_y"] = res.refined[:, j, 1]
        parts.append(pd.DataFrame(cols))
    return pd.concat(parts, ignore_index=True)


def write_refined(out: Path, results: list[Refined], *, run_id: str) -> None:
    """CSV + .npz, each atomically (see the module docstring; ``check_refine_out`` first)."""
    if out.suffix.lower() != ".csv":
        raise DataError(out, "--out must name a .csv file (the .npz is written beside it)")
    with atomic_path(out) as tmp:
        refined_frame(results).to_csv(tmp, index=False, float_format="%.2f")
    with atomic_write(out.with_suffix(".npz")) as f:
        np.savez(f, refined=np.concatenate([r.refined for r in results]),
                 estimator=np.concatenate([r.estimator for r in results]),
                 found=np.concatenate([r.found for r in results]),
                 video=np.concatenate([[r.video] * len(r.found) for r in results]).astype(str),
                 frame=np.concatenate([np.arange(len(r.found)) for r in results]),
                 keypoints=np.asarray(TEMPORAL25), run_id=np.asarray(run_id))
