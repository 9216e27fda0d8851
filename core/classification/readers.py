"""The pose-classification datasets PoseLab reads, registered in one place: ``READERS``.

A reader turns a path (a folder or a file) into a ``PoseIndex``: the samples of each
split with their image, box, 17 COCO keypoints and class, the classes, the sources read
and a content fingerprint (``core.classification.dataset``). The trainer and the bench
call ``load_pose_dataset``, which asks each reader in turn whether the path is its kind.

Adding a format is one function ``(path, *, seed) -> PoseIndex`` and one ``Reader``
entry here; every part of PoseLab that takes ``--data`` then reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.classification.dataset import PoseIndex, load_infiniteform
from core.errors import DataError


@dataclass(frozen=True)
class Reader:
    name: str                                   # what the format is called
    summary: str                                # one line for errors and the docs
    accepts: Callable[[Path], bool]             # a cheap look at the path: is it this format?
    load: Callable[..., PoseIndex]              # (path, *, seed) -> PoseIndex (DataError on bad input)


def _infiniteform_like(path: Path) -> bool:
    # its loader names precisely what is missing from a folder or a JSON file, so it
    # takes both and is asked last
    return path.is_dir() or path.suffix.lower() == ".json"


READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("infiniteform", "InfiniteForm's layout: train/ and test/ folders (or one JSON) of COCO "
           "annotations with pose_category, images beside them", _infiniteform_like, load_infiniteform),
)}


def load_pose_dataset(path: str | Path, *, seed: int = 0) -> PoseIndex:
    """The dataset at ``path``, read by the first reader that accepts it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(path, "no such file or folder")
    for reader in READERS.values():
        if reader.accepts(path):
            return reader.load(path, seed=seed)
    raise DataError(path, "not a dataset PoseLab reads: " + "; ".join(f"{r.name} ({r.summary})"
                                                                   for r in READERS.values()))
