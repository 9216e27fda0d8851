"""Sequence datasets: folders of videos (``index.json`` + ``videos/*.npz``), loading any
supported layout into train/val/test, and writing datasets atomically.

A *dataset folder* is ``DIR/index.json`` + ``DIR/videos/<id>.npz`` (one video's format:
``core.temporal.videos``); index.json holds ``{"format": "poselab-sequences", "videos":
[{"id", "file", "split"?, "source"?, "group"?, "first_frame"?}, ...]}`` (``split`` in
train/val/test is respected when present; videos sharing a ``group`` are never split
apart). ``load_sequences`` accepts that folder or its index.json, a single ``.npz`` (then
cut in time into 60/20/20 parts, the only way one video can be trained and tested), a
folder of one's own ``.npz`` videos, or Penn Action and/or BRACE as their downloads unpack
(the study's pre-training mix; layouts and conventions in ``core.temporal.external``);
``convert_dataset`` writes those once as a dataset folder, so the estimator is not
re-simulated at every run.

The layouts are registered in ``READERS``. In a folder, each ``.json`` / ``.npz`` /
``.mat`` file is claimed by the first reader that recognises what it holds: an index, a PoseLab video (an .npz with ``heatmaps``), BRACE manual keypoints
(an .npz with ``coco_joints2d``), a Penn Action label file, a BRACE segment (a JSON object
keyed by frame ids) or another file; the groups then decide how the folder is loaded.
Other files of a download (BRACE's ``annotations/``, audio features) are skipped and
counted; one's own videos mixed with Penn Action / BRACE files are refused (a converted
dataset inside its own source folder would otherwise be read twice).

Splits are 60/20/20 *by video* (no video in two splits), a seeded permutation of the
sorted ids, so they are deterministic; pieces of one recording (a BRACE YouTube video's
segments) share a ``group`` and stay together.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import DataError
from core.io import fingerprint_files, read_json, release_staging, staging_dir, write_json
from core.keypoints import TEMPORAL25
from core.temporal.external import BRACE_MANUAL_ARRAY, is_brace_segment, read_brace, read_penn_action
from core.temporal.videos import WINDOW, K, Video, check, load_video, npz_arrays, save_video

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


SPLITS = ("train", "val", "test")


INDEX = "index.json"


FORMAT = "poselab-sequences"


@dataclass
class SequenceIndex:
    """What ``load_sequences`` returns: videos split by video, plus provenance."""
    root: Path                        # absolute dataset folder
    sources: list[str]                # annotation/index files read
    keypoints: tuple[str, ...]        # keypoint names (TEMPORAL25)
    joint_mask: np.ndarray            # (25,) bool: joints any video annotates
    splits: dict[str, list[Video]]    # "train", "val", "test"
    fingerprint: str                  # changes when any source file changes
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count: skipped, masked or replaced

    @property
    def heatmap_size(self) -> tuple[int, int]:
        for videos in self.splits.values():
            if videos:
                return videos[0].heatmap_size
        raise DataError(self.root, "no videos")

    @property
    def estimator(self) -> str:
        """What made the videos' heatmaps (run.json ``data.estimator``): "simulated",
        "blazepose ..." or "unknown" (an .npz that does not say), joined when mixed."""
        return ", ".join(sorted({v.estimator or "unknown" for vs in self.splits.values() for v in vs}))


def _cut(groups: list[str], seed: int, fractions: tuple[float, ...]) -> list[list[str]]:
    """Seeded permutation of sorted group names cut by ``fractions``; with at least as
    many groups as parts, every part after the first gets at least one."""
    names = sorted(groups)
    perm = np.random.default_rng(seed).permutation(len(names))
    sizes = [int(round(len(names) * f / sum(fractions))) for f in fractions[1:]]
    if len(names) >= len(fractions):
        sizes = [max(n, 1) for n in sizes]
    sizes = [len(names) - sum(sizes)] + sizes
    bounds = np.cumsum([0] + sizes)
    return [[names[i] for i in sorted(perm[a:b])] for a, b in zip(bounds[:-1], bounds[1:])]


def split_videos(videos: list[Video], seed: int = 0,
                 fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, list[Video]]:
    """60/20/20 by video, deterministic for a seed; a video's own ``split`` wins.

    The unit is the video's ``group`` (default its id): the pieces of one recording
    (BRACE segments of one YouTube video, the parts of a segment cut at a gap) share a
    group and so a split. Groups without a split are permuted (seeded, from sorted
    names) and cut by the fractions; with >= 3 groups, val and test get at least one.
    When some videos say "train" and none say "val" (Penn Action: train/test only), val
    is carved from the "train" groups in the proportion val : (train + val) = 0.2 : 0.8.
    """
    out: dict[str, list[Video]] = {s: [] for s in SPLITS}
    for v in videos:
        if v.split is not None and v.split not in out:
            raise DataError(v.path, f"split {v.split!r} is not one of train, val, test")

    def group(v: Video) -> str:
        return v.group or v.id

    fixed = {s: {group(v) for v in videos if v.split == s} for s in SPLITS}
    free = {group(v) for v in videos if v.split is None} - set().union(*fixed.values())
    if fixed["train"] and not fixed["val"]:
        train, val = _cut(list(fixed["train"]), seed, fractions[:2])
        fixed["train"], fixed["val"] = set(train), set(val)
    where = {g: s for s in SPLITS for g in fixed[s]}
    for s, names in zip(SPLITS, _cut(list(free), seed, fractions)):
        where.update((g, s) for g in names)
    for v in sorted(videos, key=lambda v: (group(v), v.first_frame, v.id)):
        out[where[group(v)]].append(v)
    return out


def _split_in_time(video: Video, k: int) -> dict[str, list[Video]]:
    """One video only: contiguous 60/20/20 parts (each >= k frames) as train/val/test."""
    t = video.num_frames
    if t < 3 * k:
        return {"train": [], "val": [], "test": [video]}
    n_val = max(k, int(round(t * SPLIT_FRACTIONS[1])))
    n_test = max(k, int(round(t * SPLIT_FRACTIONS[2])))
    n_train = t - n_val - n_test
    if n_train < k:
        return {"train": [], "val": [], "test": [video]}
    out = {}
    start = 0
    for s, n in zip(SPLITS, (n_train, n_val, n_test)):
        sl = slice(start, start + n)
        out[s] = [Video(id=f"{video.id}[{start}:{start + n}]", heatmaps=video.heatmaps[sl],
                        boxes=video.boxes[sl],
                        keypoints=None if video.keypoints is None else video.keypoints[sl],
                        joint_mask=video.joint_mask, image_size=video.image_size,
                        frame_paths=None if video.frame_paths is None else video.frame_paths[sl],
                        source=video.source, path=video.path, first_frame=video.first_frame + start)]
        start += n
    return out


def _read_index(index: Path) -> tuple[list[Video], list[Path]]:
    data = read_json(index)
    check(isinstance(data, dict) and isinstance(data.get("videos"), list), index,
           "expected an object with a 'videos' list")
    videos, files = [], [index]
    seen = set()
    for i, entry in enumerate(data["videos"]):
        check(isinstance(entry, dict) and "file" in entry, index, f"videos[{i}] needs a 'file'")
        file = (index.parent / entry["file"]).resolve()
        check(file.is_relative_to(index.parent.resolve()), index, f"videos[{i}]: file {entry['file']!r} is outside the dataset folder")
        check(file.is_file(), index, f"videos[{i}]: file {entry['file']!r} not found")
        v = load_video(file)
        v.id = str(entry.get("id", file.stem))
        check(v.id not in seen, index, f"video id {v.id!r} appears twice")
        seen.add(v.id)
        v.split = entry.get("split")
        check(v.split in (None, *SPLITS), index, f"videos[{i}]: split {v.split!r} is not train/val/test")
        v.source = str(entry.get("source", "npz"))
        v.group = entry.get("group")
        v.first_frame = int(entry.get("first_frame", 0))
        v.estimator = entry.get("estimator", v.estimator)
        videos.append(v)
        files.append(file)
    check(bool(videos), index, "lists no videos")
    return videos, files


# What a file holds, told by its content: its suffix, then its arrays or first key.
# UNKNOWN_JSON: not an object (damaged, or not data); read as a segment among Penn Action /
# BRACE files, so that a damaged one is named, and ignored beside one's own videos.
INDEX_FILE, VIDEO, PENN, SEGMENT, MANUAL, OTHER_JSON, UNKNOWN_JSON, OTHER_NPZ, REFINED = (
    "index", "video", "penn", "segment", "manual", "other json", "unknown json", "other npz", "refined")
REFINE_ARRAYS = {"refined", "run_id"}     # what ``python -m core refine`` writes beside its CSV
REFINE_OUTPUT = "refine output (not data)"
NOT_SEGMENT = "json file that is not a BRACE segment"
NOT_DATA_NPZ = "npz file that is neither a PoseLab video nor BRACE manual keypoints"


@dataclass
class _Loaded:
    """Videos read from one input, before the checks and the split."""
    videos: list[Video]
    files: list[Path]                 # files read, for sources and the fingerprint
    root: Path
    single: bool = False              # one video: cut in time into train/val/test
    simulated: bool = False           # simulated heatmaps: their settings enter the fingerprint
    skipped: Counter = field(default_factory=Counter)


# ----------------------------------------------------------------------------- the readers

@dataclass(frozen=True)
class Reader:
    """One layout a sequence dataset comes in. ``claim`` looks at one file (its suffix,
    then its arrays or first bytes) and returns its kind within this layout, or None;
    ``read_file`` reads one such file given alone; ``read_folder`` reads a folder from its
    files grouped by kind. ``external`` layouts are public datasets as they unpack (their
    heatmaps made here, by BlazePose or the simulated estimator); they may be read
    together, never mixed with PoseLab's own videos."""
    name: str
    summary: str
    claim: Callable[[Path], str | None]
    read_file: Callable[[Path, str, dict], _Loaded]
    read_folder: Callable[[Path, dict[str, list[Path]], dict], _Loaded]
    external: bool = False


def _claim_poselab(path: Path) -> str | None:
    if path.suffix == ".json":
        return INDEX_FILE if _is_index(path) else None
    if path.suffix == ".npz":
        names = set(npz_arrays(path))
        if REFINE_ARRAYS <= names:
            return REFINED
        return VIDEO if "heatmaps" in names else None if BRACE_MANUAL_ARRAY in names else OTHER_NPZ
    return None


def _claim_penn(path: Path) -> str | None:
    return PENN if path.suffix == ".mat" else None


def _claim_brace(path: Path) -> str | None:
    if path.suffix == ".json":
        return {True: SEGMENT, False: OTHER_JSON, None: UNKNOWN_JSON}[is_brace_segment(path)]
    if path.suffix == ".npz" and BRACE_MANUAL_ARRAY in npz_arrays(path):
        return MANUAL
    return None


def _read_poselab_file(path: Path, kind: str, sim: dict) -> _Loaded:
    if kind == INDEX_FILE:
        videos, files = _read_index(path)
        return _Loaded(videos, files, path.parent)
    if kind == REFINED:
        raise DataError(path, "is an output of python -m core refine (refined keypoints), not a video")
    return _Loaded([load_video(path)], [path], path.parent, single=True)   # load_video names what is missing


def _read_poselab_folder(root: Path, files: dict[str, list[Path]], sim: dict) -> _Loaded:
    own = sorted(files[VIDEO] + files[OTHER_NPZ])  # a stray .json beside them is not data
    videos = [load_video(p) for p in own]
    for v, p in zip(videos, own):
        v.id = str(p.relative_to(root).with_suffix(""))
    return _Loaded(videos, own, root, skipped=+Counter({REFINE_OUTPUT: len(files[REFINED])}))


def _read_penn_file(path: Path, kind: str, sim: dict) -> _Loaded:
    read = _read_penn([path], sim)
    check(bool(read.videos), path, "BlazePose found nobody in any frame of this video")
    read.videos[0].split = None  # one video is cut in time, whatever its flag says
    return _Loaded(read.videos, read.files, path.parent, single=True, simulated=True, skipped=read.counts)


def _read_brace_file(path: Path, kind: str, sim: dict) -> _Loaded:
    if kind == MANUAL:
        raise DataError(path, "holds BRACE manual keypoints; pass the folder that also holds "
                        "the segment JSONs (dataset/<year>/<video_id>/*.json)")
    read = read_brace([path], **_brace(sim))    # read_brace names what a non-segment lacks
    return _Loaded(read.videos, read.files, path.parent, simulated=True, skipped=read.counts)


def _read_external(root: Path, files: dict[str, list[Path]], sim: dict) -> _Loaded:
    """Penn Action and/or BRACE (the study's pre-training mix), as the downloads unpack."""
    check(bool(files[PENN] or files[SEGMENT] or files[UNKNOWN_JSON]), root,
          f"has {len(files[MANUAL])} BRACE manual keypoint file(s) but no BRACE segment JSONs "
          "(dataset/<year>/<video_id>/*.json) or Penn Action labels to go with them")
    penn = _read_penn(files[PENN], sim)
    brace = read_brace(files[SEGMENT] + files[UNKNOWN_JSON], files[MANUAL], **_brace(sim))
    skipped = penn.counts + brace.counts + Counter({NOT_SEGMENT: len(files[OTHER_JSON] + files[INDEX_FILE]),
                                                    NOT_DATA_NPZ: len(files[OTHER_NPZ])})
    return _Loaded(penn.videos + brace.videos, penn.files + brace.files, root, simulated=True, skipped=+skipped)


# Asked in this order; adding a layout is its claim and read functions and one entry here.
READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("poselab", "PoseLab's own: a dataset folder (index.json + videos/*.npz), its index.json, "
           "one .npz video, or a folder of .npz videos", _claim_poselab, _read_poselab_file, _read_poselab_folder),
    Reader("penn-action", "Penn Action as it unpacks: labels/*.mat (+ frames/ for BlazePose's heatmaps)",
           _claim_penn, _read_penn_file, _read_external, external=True),
    Reader("brace", "BRACE as it unpacks: segment .json files (+ manual keypoint .npz)", _claim_brace,
           _read_brace_file, _read_external, external=True),
)}


def load_sequences(path: str | Path, *, seed: int = 0, heatmap: int = 64, noise: float = 1.0,
                   estimator: str = "auto") -> SequenceIndex:
    """A sequence dataset, split by video, in any layout of ``READERS``: a dataset folder
    or its index.json, one .npz, a Penn Action .mat or BRACE segment .json, or a folder
    (searched recursively) of one's own .npz videos or of Penn Action and/or BRACE as they
    unpack (each file's layout told by its content). Penn Action videos with their
    ``frames/`` get BlazePose's heatmaps (``estimator="auto"``); for BRACE, and for Penn
    Action without frames (or ``estimator="simulated"``), the estimator is simulated at
    ``heatmap`` px and ``noise`` (deterministic for ``seed``). ``seed`` also drives the
    split."""
    path = Path(path).expanduser()
    check(path.exists(), path, "no such file or folder")
    if path.is_dir() and (path / INDEX).is_file():
        path = path / INDEX
    sim = dict(heatmap=heatmap, noise=noise, seed=seed, penn_estimator=estimator)
    loaded = _load_file(path, sim) if path.is_file() else _load_folder(path, sim)
    return _index(path, loaded, seed, f"{heatmap}/{noise}/{seed}/{estimator}" if loaded.simulated else "")


def _classify(path: Path) -> tuple[Reader, str] | None:
    """The first reader that claims ``path``, and the kind it says the file is."""
    for reader in READERS.values():
        kind = reader.claim(path)
        if kind is not None:
            return reader, kind
    return None


def _load_file(path: Path, sim: dict) -> _Loaded:
    found = _classify(path)
    if found is None:
        raise DataError(path, "expected a dataset folder, index.json, .npz, .mat or BRACE .json")
    reader, kind = found
    return reader.read_file(path, kind, sim)


_SUFFIXES = (".json", ".npz", ".mat")
_KINDS = (INDEX_FILE, VIDEO, PENN, SEGMENT, MANUAL, OTHER_JSON, UNKNOWN_JSON, OTHER_NPZ, REFINED)


def _data_files(root: Path) -> tuple[dict[str, list[Path]], set[str]]:
    """The folder's data files by kind, sorted, and the readers that claimed them;
    hidden files and macOS archive leftovers (``__MACOSX``, ``._*``) are not data."""
    by_kind: dict[str, list[Path]] = {k: [] for k in _KINDS}
    readers: set[str] = set()
    for p in sorted(p for p in root.rglob("*") if p.suffix in _SUFFIXES):
        if not any(s.startswith(".") or s == "__MACOSX" for s in p.relative_to(root).parts) and p.is_file():
            found = _classify(p)
            if found is not None:
                by_kind[found[1]].append(p)
                if found[1] not in (REFINED, OTHER_JSON, UNKNOWN_JSON, OTHER_NPZ, INDEX_FILE):
                    readers.add(found[0].name)
    return by_kind, readers


def _load_folder(root: Path, sim: dict) -> _Loaded:
    files, readers = _data_files(root)
    external = [n for n in readers if READERS[n].external]
    if files[VIDEO] and external:
        ext = (files[PENN] + files[SEGMENT] + files[MANUAL])[0]
        raise DataError(root, f"holds both PoseLab .npz videos ({_rel(files[VIDEO][0], root)}, ...) and "
                        f"Penn Action / BRACE annotations ({_rel(ext, root)}, ...); pass one of them")
    own = files[VIDEO] + files[OTHER_NPZ]
    if external or (files[UNKNOWN_JSON] and not own):
        return _read_external(root, files, sim)
    if own:
        return READERS["poselab"].read_folder(root, files, sim)
    raise DataError(root, f"no {INDEX}, .npz, Penn Action .mat or BRACE .json files found")


def _read_penn(paths: list[Path], sim: dict):
    return read_penn_action(paths, heatmap=sim["heatmap"], noise=sim["noise"], seed=sim["seed"],
                            estimator=sim["penn_estimator"])


def _brace(sim: dict) -> dict:
    return {k: v for k, v in sim.items() if k != "penn_estimator"}


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def _index(path: Path, loaded: _Loaded, seed: int, settings: str) -> SequenceIndex:
    """Checks across videos, the split, the joint mask and the fingerprint."""
    videos = loaded.videos
    check(bool(videos), path, "no video has enough frames for a window")
    ids = [v.id for v in videos]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    check(not dup, path, f"video id {dup[0]!r} appears twice; video ids must be unique" if dup else "")
    sizes = {v.heatmap_size for v in videos}
    check(len(sizes) == 1, path, f"videos have different heatmap sizes {sorted(sizes)}")
    splits = _split_in_time(videos[0], WINDOW) if loaded.single else split_videos(videos, seed)
    mask = np.zeros(K, bool)
    for v in videos:
        mask |= v.joint_mask
    root = loaded.root.resolve()
    fp = fingerprint_files([Path(f).resolve() for f in loaded.files], root)
    if settings:  # simulated heatmaps depend on the simulation settings too
        fp = hashlib.sha256(f"{fp}/{settings}".encode()).hexdigest()[:16]
    return SequenceIndex(root=root, sources=[str(Path(f).resolve()) for f in loaded.files],
                         keypoints=TEMPORAL25, joint_mask=mask, splits=splits, fingerprint=fp,
                         skipped=dict(loaded.skipped))


def _is_index(path: Path) -> bool:
    if path.name == INDEX:
        return True
    try:  # a BRACE segment is keyed by frame; an index has "videos"
        with open(path, "rb") as f:
            head = f.read(4096)
        return b'"videos"' in head and b'"format"' in head
    except OSError:
        return False


def staging_folder(out: str | Path) -> Path:
    """A new temporary folder beside ``out`` to build a dataset in (frames first), then
    hand to ``write_dataset(..., staged=)``; on error the caller calls ``discard_staging``.
    Locked while its process lives (``core.io.staging_dir``), so a killed build's folder is
    told from a live one and removed by the next build of ``out``."""
    return staging_dir(check_out(out))


def discard_staging(staged: Path) -> None:
    """Remove a staging folder (a build that failed) and drop its lock."""
    shutil.rmtree(staged, ignore_errors=True)
    release_staging(staged)


def write_dataset(out: str | Path, videos: list[Video], *, meta: dict | None = None,
                  staged: Path | None = None) -> Path:
    """Write videos as a dataset folder (``videos/<id>.npz`` + index.json), atomically.

    Built in a temporary sibling folder (``staged``, from ``staging_folder``, when the
    caller has already put the frames there) and renamed into place, so an interrupted
    write leaves any previous dataset at ``out`` untouched. Nothing of the user's is
    lost: files in a previous dataset at ``out`` that are not its own (``foreign_files``:
    notes, a marker file) are kept, hard-linked into the new folder before the swap, so at
    every moment they are in the dataset at ``out``; results refined from the previous
    dataset (refine's CSV / .npz) would no longer describe it, so ``check_out`` refuses
    to replace it while they are there. Returns the index.json path.
    """
    out = check_out(out)
    tmp = staged if staged is not None else staging_folder(out)
    try:
        entries = []
        for v in videos:
            fname = f"videos/{_safe_name(v.id)}.npz"
            save_video(tmp / fname, v)
            entry = {"id": v.id, "file": fname, "source": v.source, "num_frames": v.num_frames}
            if v.split:
                entry["split"] = v.split
            if v.group:
                entry["group"] = v.group
            if v.first_frame:
                entry["first_frame"] = v.first_frame
            if v.estimator:
                entry["estimator"] = v.estimator
            entries.append(entry)
        size = videos[0].heatmap_size if videos else None
        write_json(tmp / INDEX, {"format": FORMAT, "version": 1, "keypoints": list(TEMPORAL25),
                                 "heatmap_size": size, **(meta or {}), "videos": entries})
        if out.exists():
            _keep_foreign(out, tmp)
            old = out.with_name(f".{out.name}.old-{time.time_ns()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
        release_staging(tmp)
    except BaseException:
        discard_staging(tmp)
        raise
    return out / INDEX


def foreign_files(out: str | Path) -> list[Path]:
    """Files under the dataset folder ``out`` that are not the dataset's own (index.json,
    the videos it lists and their frames), relative to ``out``; [] when there is no
    dataset at ``out``. OS litter (``.DS_Store``, ``Thumbs.db``) does not count."""
    out = Path(out).expanduser().resolve()
    if not (out / INDEX).is_file():
        return []
    own = {out / INDEX}
    try:
        data = read_json(out / INDEX)
    except DataError:                         # a damaged index names no file: all are kept
        data = {}
    for entry in data.get("videos", []) if isinstance(data, dict) else []:
        file = (out / str(entry.get("file", ""))).resolve() if isinstance(entry, dict) else None
        if file is None or not file.is_file() or not file.is_relative_to(out):
            continue
        own.add(file)
        with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
            with np.load(file, allow_pickle=False) as z:
                if "frame_paths" in z.files:
                    own.update((file.parent / str(p)).resolve() for p in z["frame_paths"])
    return sorted(p.relative_to(out) for p in out.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name not in _OS_LITTER and p.resolve() not in own)


_OS_LITTER = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _keep_foreign(out: Path, tmp: Path) -> None:
    """Hard-link (else copy) the files of ``out`` that are not the dataset's own into the
    new dataset ``tmp``; a name the new dataset writes itself is refused, not replaced."""
    for rel in foreign_files(out):
        target = tmp / rel
        if target.exists() or target.is_symlink():
            raise DataError(out / rel, "is not a file of the dataset, and the new dataset writes a file "
                                       "of that name; move it away first")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(out / rel, target, follow_symlinks=False)
        except OSError:                        # a filesystem without hard links
            shutil.copy2(out / rel, target, follow_symlinks=False)


def check_out(out: str | Path) -> Path:
    """Where a dataset may be (re)written: a new/empty folder, or an existing dataset
    without results refined from it (see ``write_dataset``)."""
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or (not (out / INDEX).is_file() and any(out.iterdir()))):
        raise DataError(out, "exists and is not a sequence dataset; refusing to overwrite it")
    results = [p for p in foreign_files(out) if is_refine_output(out / p)]
    if results:
        shown = ", ".join(p.as_posix() for p in results[:3]) + (f" and {len(results) - 3} more"
                                                              if len(results) > 3 else "")
        raise DataError(out, f"holds {len(results)} file(s) of results refined from this dataset ({shown}); "
                             "replacing it would leave them describing frames that are gone: move them "
                             "away or write elsewhere")
    return out


def dataset_warnings(path: str | Path) -> list[str]:
    """What a dataset's index.json records as ``warnings`` (``python -m core estimate
    --allow-truncated`` on a cut or damaged video); [] for anything else."""
    path = Path(path)
    index = path / INDEX if path.is_dir() else path
    if index.name != INDEX or not index.is_file():
        return []
    data = read_json(index)
    warnings = data.get("warnings") if isinstance(data, dict) else None
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def is_refine_output(path: Path) -> bool:
    """Whether ``path`` is a CSV or .npz that ``python -m core refine`` wrote."""
    try:
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8") as f:
                return f.readline().startswith("video,frame,found")
        return path.suffix.lower() == ".npz" and REFINE_ARRAYS <= set(npz_arrays(path))
    except (OSError, UnicodeDecodeError, DataError):
        return False


def _safe_name(vid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in vid)


def convert_dataset(src: str | Path, out: str | Path, *, heatmap: int = 64, noise: float = 1.0,
                    seed: int = 0, estimator: str = "auto") -> Path:
    """Penn Action / BRACE (or any ``load_sequences`` input) -> a dataset folder of .npz,
    so the estimator (BlazePose on Penn Action's frames, or the simulated one) runs once.
    Splits are recorded in index.json."""
    index = load_sequences(src, seed=seed, heatmap=heatmap, noise=noise, estimator=estimator)
    videos = []
    for s in SPLITS:
        for v in index.splits[s]:
            v.split = s
            videos.append(v)
    return write_dataset(out, videos, meta={"converted_from": str(index.root), "noise": noise, "seed": seed})
