"""InfiniteForm-layout pose data: the COCO-style reader and its splits.

One reader serves the real InfiniteForm (Weitz et al. 2021) and the project's synthetic
data (``core.synthetic.images``), because both use the same layout:

* **the real dataset**: ONE COCO-style JSON for all 60k scenes, no split; per scene
  ``{image_id}.rgb.png`` plus ``.cseg.png`` / ``.iseg.png`` / ``.depth.exr`` files that
  are labels, not samples. The images may sit beside the JSON or in sub-folders (the
  download comes as six archives); a file name that is not found where the JSON says is
  looked up by its base name anywhere under the JSON's folder.
* **PoseLab's synthetic data**: ``DIR/train/<one>.json`` + ``DIR/train/{id}.rgb.png`` and
  the same under ``DIR/test/`` (an optional ``DIR/val/`` is used when present).

``load_infiniteform(path)`` accepts the dataset folder or the JSON file itself.

Samples
    One ``Sample`` per annotated person (COCO annotation), never per image: a scene with
    three people gives three samples, each cropped around its own bbox, so each label is
    honest about what the crop shows. Classes are the sorted ``pose_category`` values of
    the usable annotations, never a hard-coded list. Only images referenced by an
    annotation are ever samples; companion files (segmentation, depth) never are.

Splits (deterministic, by scene, so no scene is in two splits)
    Scenes are ranked by a hash of their id, so the split does not depend on file order:
    with one JSON the first ``round(test_fraction * scenes)`` scenes form the test split
    (the paper used 50,000 / 10,000, hence 1/6). The test split does NOT depend on
    ``seed``: every run on a dataset is scored on the same test scenes. ``val_fraction``
    of the remaining (or given training) scenes are then carved out as validation, ranked
    by a hash of ``(seed, scene id)``.

Bad input
    An unreadable or non-COCO JSON raises ``DataError`` naming the file. A single bad
    annotation (no ``pose_category``, keypoints not 17 x 3 numbers, bad bbox, image file
    missing, ...) is skipped and counted in ``PoseIndex.skipped`` by reason;
    ``PoseIndex.summary()`` reports it. If nothing usable is left, ``DataError``.
    Images are only ``stat``-ed while indexing (60k decodes would take minutes); a
    truncated or corrupt image raises ``DataError`` naming the file when the sample is
    loaded.

Crops (``crop_box``, ``load_crop``, ``PoseDataset``) are in ``core.classification.crops``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.images import read_image_size
from core.keypoints import COCO17

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_MARGIN = 0.15
NUM_KEYPOINTS = len(COCO17)  # 17

# Files beside InfiniteForm's RGB renders that are labels, not pictures of the scene.
COMPANION_SUFFIXES: tuple[str, ...] = (".cseg.png", ".iseg.png", ".depth.exr")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Skip reasons (keys of PoseIndex.skipped).
SKIP_NOT_OBJECT = "annotation is not a JSON object"
SKIP_NO_IMAGE_ENTRY = "image_id not in the images list"
SKIP_CROWD = "crowd annotation (iscrowd=1)"
SKIP_NO_CATEGORY = "no pose_category"
SKIP_BAD_KEYPOINTS = "keypoints not 17 x 3 finite numbers"
SKIP_BAD_BBOX = "bbox missing or not 4 numbers with w, h > 0"
SKIP_NOT_RGB = "image is not an RGB render (segmentation/depth file)"
SKIP_MISSING_IMAGE = "image file missing"
SKIP_AMBIGUOUS_IMAGE = "image file name found in several folders"
SKIP_BAD_SIZE = "image size unknown (no width/height, unreadable header)"


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated person in one scene (eq=False: compared by identity, hashable)."""
    sample_id: str                   # f"{image_id}:{person_index}", unique in its PoseIndex
    image_path: Path                 # absolute path of the RGB image
    rel_path: str                    # image path relative to PoseIndex.root ('/' separated)
    image_id: int | str              # the JSON's image id
    scene_id: str                    # what splits group by (the image id, or a scene_id field)
    person_index: int                # position of this annotation among its image's ones (JSON order)
    label: int                       # index into PoseIndex.classes
    label_name: str                  # pose_category, e.g. "sideplank"
    bbox: tuple[float, float, float, float]  # COCO x, y, w, h in scene pixels
    keypoints: np.ndarray            # (17, 3) float32: x, y scene pixels, visibility 0/1/2
    image_size: tuple[int, int]      # (width, height) of the upright image
    pose_variation: str | None       # e.g. "sideplank_right"
    exercise_category: str | None    # "HIIT" or "Yoga"
    # Scene camera rotation as the JSON gives it: InfiniteForm stores the yaw (one
    # number), PoseLab's synthetic writer [pitch, yaw, roll] (a tuple here).
    camera_rotation_deg: float | tuple[float, ...] | None
    # The person's outline: COCO polygons [[x1, y1, x2, y2, ...], ...] in scene pixels
    # (PoseLab's renders: the visible silhouette's outline); None when not given.
    segmentation: tuple[tuple[float, ...], ...] | None = None


@dataclass
class PoseIndex:
    """Everything ``load_infiniteform`` found: samples per split, classes, provenance."""
    root: Path                       # dataset folder; Sample.rel_path is relative to it
    sources: list[Path]              # annotation files read
    classes: list[str]               # sorted pose_category values; Sample.label indexes it
    splits: dict[str, list[Sample]]  # "train" / "val" / "test"
    fingerprint: str                 # JSON contents + image names/sizes (_fingerprint); not the split
    skipped: Counter = field(default_factory=Counter)  # reason -> number of annotations
    split_rule: str = ""             # how the splits were made, for the summary

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def samples(self) -> list[Sample]:
        """All samples, train then val then test."""
        return [s for name in SPLITS for s in self.splits[name]]

    def summary(self) -> str:
        """A few lines for the terminal: counts per split, classes, skips."""
        lines = [f"InfiniteForm-layout data at {self.root} (fingerprint {self.fingerprint})",
                 f"  annotation files: {', '.join(_rel(p, self.root) for p in self.sources)}",
                 f"  split: {self.split_rule}"]
        counts = []
        for name in SPLITS:
            ss = self.splits[name]
            counts.append(f"{name} {len(ss)} samples / {len({s.scene_id for s in ss})} scenes")
        lines.append("  " + " | ".join(counts))
        lines.append(f"  {len(self.classes)} classes: {', '.join(self.classes)}")
        missing = [c for i, c in enumerate(self.classes)
                   if not any(s.label == i for s in self.splits["train"])]
        if missing:
            lines.append(f"  warning: no training samples for {', '.join(missing)}")
        n_skip = sum(self.skipped.values())
        if n_skip:
            reasons = ", ".join(f"{r}: {n}" for r, n in self.skipped.most_common())
            lines.append(f"  skipped {n_skip} annotation(s): {reasons}")
        else:
            lines.append("  skipped 0 annotations")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- loading

def load_infiniteform(path: str | Path, *, val_fraction: float = 0.1,
                      test_fraction: float = 1 / 6, seed: int = 0) -> PoseIndex:
    """Index an InfiniteForm-layout dataset (folder or JSON file); see the module doc.

    ``test_fraction`` applies only when the data has no given test split (one JSON);
    ``val_fraction`` is the share of training scenes moved to validation (unless a
    ``val/`` folder is given). Raises ``DataError`` on unusable input.
    """
    if not 0.0 <= val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0:
        raise ValueError("val_fraction and test_fraction must be in [0, 1)")
    path = Path(path).expanduser().resolve()
    root, sources = _find_sources(path)

    parsed = {split: _read_coco(p) for split, p in sources.items()}
    prefix_ids = len(parsed) > 1 and _ids_collide([c.images for c in parsed.values()])

    skipped: Counter = Counter()
    file_sizes: dict[str, int] = {}
    records: dict[str | None, list[dict[str, Any]]] = {}
    for split, coco in parsed.items():
        # One JSON: its images live anywhere under the root; split folders hold their own.
        base = root if split is None else coco.path.parent
        records[split], skips, sizes = _collect(coco, root, base, split if prefix_ids else None)
        skipped.update(skips)
        file_sizes.update(sizes)
        if not records[split]:
            raise DataError(coco.path, "no usable annotations" + _skip_note(skipped))

    classes = sorted({r["label_name"] for rs in records.values() for r in rs})
    label_of = {c: i for i, c in enumerate(classes)}
    samples = {split: [Sample(label=label_of[r["label_name"]], **r) for r in rs]
               for split, rs in records.items()}

    if None in samples:  # one JSON: split by scene hash
        rest, test = _split_by_scene(samples[None], test_fraction, salt="test")
        train, val = _split_by_scene(rest, val_fraction, salt=f"val:{seed}")
        rule = (f"one annotation file; by scene hash: test {test_fraction:.4g} of scenes "
                f"(fixed), val {val_fraction:.4g} of the rest (seed {seed})")
    else:
        test = samples["test"]
        if "val" in samples:
            train, val = samples["train"], samples["val"]
            rule = "given train/val/test folders"
        else:
            train, val = _split_by_scene(samples["train"], val_fraction, salt=f"val:{seed}")
            rule = f"given train/test folders; val = {val_fraction:.4g} of train scenes (seed {seed})"
    if not train:
        raise DataError(path, "no training samples left after the split")

    splits = {"train": train, "val": val, "test": test}
    _check_disjoint(path, splits)
    src_list = list(sources.values())
    return PoseIndex(root=root, sources=src_list, classes=classes, splits=splits,
                     fingerprint=_fingerprint(parsed, file_sizes),
                     skipped=skipped, split_rule=rule)


def _find_sources(path: Path) -> tuple[Path, dict[str | None, Path]]:
    """(dataset root, {split or None: annotation file}) for a folder or a JSON file."""
    if not path.exists():
        raise DataError(path, "does not exist")
    if path.is_file():
        # COCO's own layout keeps the JSON in annotations/ beside the image folders.
        root = path.parent.parent if path.parent.name == "annotations" else path.parent
        return root, {None: path}
    split_dirs = {s: path / s for s in SPLITS if (path / s).is_dir()}
    if "train" in split_dirs or "test" in split_dirs:
        if not {"train", "test"} <= split_dirs.keys():
            raise DataError(path, "has a train/ or test/ folder but not both")
        return path, {s: _one_json(d) for s, d in split_dirs.items()}
    return path, {None: _one_json(path)}


def _one_json(folder: Path) -> Path:
    found = sorted(p for p in folder.glob("*.json") if p.is_file())
    if not found:
        raise DataError(folder, "no annotation file (.json) here; expected one COCO-style "
                                "JSON, or train/ and test/ folders each holding one")
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:5])
        raise DataError(folder, f"holds {len(found)} .json files ({names}); pass the "
                                "annotation file itself")
    return found[0]


@dataclass
class _Coco:
    path: Path
    sha256: str
    images: dict[Any, dict]          # image id -> image entry
    annotations: list


def _read_coco(path: Path) -> _Coco:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot be read ({e.strerror or e})") from None
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError:
        raise DataError(path, "not a text (UTF-8) JSON file") from None
    except json.JSONDecodeError as e:
        where = "truncated" if e.pos >= len(raw.rstrip()) else f"line {e.lineno} column {e.colno}"
        raise DataError(path, f"not valid JSON ({where}: {e.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list) \
            or not isinstance(obj.get("annotations"), list):
        raise DataError(path, "not a COCO-style annotation file (needs 'images' and "
                              "'annotations' lists)")
    images: dict[Any, dict] = {}
    for i, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), (int, str)) \
                or isinstance(im.get("id"), bool):
            raise DataError(path, f"images[{i}] has no integer or string 'id'")
        if im["id"] in images:
            raise DataError(path, f"image id {im['id']!r} appears twice in 'images'")
        images[im["id"]] = im
    return _Coco(path=path, sha256=hashlib.sha256(raw).hexdigest(), images=images,
                 annotations=obj["annotations"])


def _ids_collide(image_sets: list[dict]) -> bool:
    seen: set = set()
    for ims in image_sets:
        if seen & ims.keys():
            return True
        seen |= ims.keys()
    return False


def _collect(coco: _Coco, root: Path, base: Path, id_prefix: str | None
             ) -> tuple[list[dict], Counter, dict[str, int]]:
    """Validate every annotation of one file: (Sample field dicts of the usable ones,
    skip reason -> count, rel_path -> bytes of every image a sample uses)."""
    # One pass over the annotations with every check in order: the skip reasons are counted once per
    # annotation, which separate passes could not promise.
    skipped: Counter = Counter()
    file_sizes: dict[str, int] = {}
    finder = _ImageFinder(base, root)
    persons: Counter = Counter()            # image id -> annotations seen so far
    files: dict[Any, tuple[str, Path | None, str, int]] = {}  # image id -> finder.find(...)
    sizes: dict[Any, tuple[int, int] | None] = {}
    out: list[dict] = []
    for ann in coco.annotations:
        if not isinstance(ann, dict):
            skipped[SKIP_NOT_OBJECT] += 1
            continue
        image_id = ann.get("image_id")
        if not isinstance(image_id, (int, str)) or image_id not in coco.images:
            skipped[SKIP_NO_IMAGE_ENTRY] += 1
            continue
        image = coco.images[image_id]
        person_index = persons[image_id]    # counted before any skip: stable w.r.t. the JSON
        persons[image_id] += 1
        if ann.get("iscrowd"):
            skipped[SKIP_CROWD] += 1
            continue
        category = ann.get("pose_category")
        if not isinstance(category, str) or not category.strip():
            skipped[SKIP_NO_CATEGORY] += 1
            continue
        keypoints = _parse_keypoints(ann.get("keypoints"))
        if keypoints is None:
            skipped[SKIP_BAD_KEYPOINTS] += 1
            continue
        bbox = _parse_bbox(ann.get("bbox"))
        if bbox is None:
            skipped[SKIP_BAD_BBOX] += 1
            continue
        if image_id not in files:
            files[image_id] = finder.find(image.get("file_name") or f"{image_id}.rgb.png")
        problem, image_path, rel_path, nbytes = files[image_id]
        if problem:
            skipped[problem] += 1
            continue
        if image_id not in sizes:
            sizes[image_id] = _image_size(image, image_path)
        if sizes[image_id] is None:
            skipped[SKIP_BAD_SIZE] += 1
            continue
        file_sizes[rel_path] = nbytes
        key = f"{id_prefix}/{image_id}" if id_prefix else str(image_id)
        scene = image.get("scene_id", ann.get("scene_id"))
        scene_id = f"{id_prefix}/{scene}" if id_prefix and scene is not None else \
            (str(scene) if scene is not None else key)
        out.append(dict(
            sample_id=f"{key}:{person_index}",
            image_path=image_path,
            rel_path=rel_path,
            image_id=image_id,
            scene_id=scene_id,
            person_index=person_index,
            label_name=category.strip(),
            bbox=bbox,
            keypoints=keypoints,
            image_size=sizes[image_id],
            pose_variation=_opt_str(ann.get("pose_variation")),
            exercise_category=_opt_str(ann.get("exercise_category")),
            camera_rotation_deg=_rotation(image.get("camera_rotation_deg",
                                                    ann.get("camera_rotation_deg"))),
            segmentation=_polygons(ann.get("segmentation")),
        ))
    return out, skipped, file_sizes


class _ImageFinder:
    """Resolves the JSON's file names to files, beside the JSON or in sub-folders.

    Works on strings with one ``stat`` per image: at 60k images pathlib's ``resolve``
    and a second ``stat`` for the fingerprint dominated the indexing time.
    """

    def __init__(self, base: Path, root: Path):
        self.base = str(base)
        self.root = str(root)
        self._by_name: dict[str, list[str]] | None = None  # built on the first miss

    def find(self, file_name: Any) -> tuple[str, Path | None, str, int]:
        """(problem or "", absolute path, path relative to root, size in bytes)."""
        if not isinstance(file_name, str) or not file_name:
            return SKIP_MISSING_IMAGE, None, "", 0
        lower = file_name.lower()
        if lower.endswith(COMPANION_SUFFIXES) or not lower.endswith(IMAGE_SUFFIXES):
            return SKIP_NOT_RGB, None, "", 0
        found = self._file(os.path.normpath(os.path.join(self.base, file_name)))
        if found is None:
            hits = self._index().get(os.path.basename(file_name), [])
            if len(hits) != 1:
                return (SKIP_AMBIGUOUS_IMAGE if hits else SKIP_MISSING_IMAGE), None, "", 0
            found = self._file(hits[0])
            if found is None:
                return SKIP_MISSING_IMAGE, None, "", 0
        path, nbytes = found
        rel = path[len(self.root) + 1:] if path.startswith(self.root + os.sep) \
            else os.path.relpath(path, self.root)
        return "", Path(path), rel.replace(os.sep, "/"), nbytes

    @staticmethod
    def _file(path: str) -> tuple[str, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (path, st.st_size) if stat.S_ISREG(st.st_mode) else None

    def _index(self) -> dict[str, list[str]]:
        if self._by_name is None:
            self._by_name = {}
            for dirpath, _dirs, names in os.walk(self.base):
                for n in names:
                    low = n.lower()
                    if low.endswith(IMAGE_SUFFIXES) and not low.endswith(COMPANION_SUFFIXES):
                        self._by_name.setdefault(n, []).append(os.path.join(dirpath, n))
        return self._by_name


def _parse_keypoints(kp: Any) -> np.ndarray | None:
    if not isinstance(kp, list) or len(kp) != NUM_KEYPOINTS * 3:
        return None
    try:
        a = np.asarray(kp, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(a).all():
        return None
    a[:, 2] = np.clip(np.rint(a[:, 2]), 0, 2)  # visibility: 0 out of frame, 1 occluded, 2 visible
    out = a.astype(np.float32)
    out.setflags(write=False)                 # Sample is frozen; so is its array
    return out


def _parse_bbox(b: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(b, (list, tuple)) or len(b) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in b)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return (x, y, w, h)


def _image_size(image: dict, path: Path) -> tuple[int, int] | None:
    w, h = image.get("width"), image.get("height")
    if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
        return (w, h)
    try:
        return read_image_size(path)
    except DataError:
        return None


def _polygons(v: Any) -> tuple[tuple[float, ...], ...] | None:
    """COCO polygon segmentation (a list of flat x, y lists); RLE masks and malformed
    values give None (the outline is optional, nothing is skipped for it)."""
    if not isinstance(v, list) or not v:
        return None
    out = []
    for poly in v:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            return None
        try:
            vals = tuple(float(x) for x in poly)
        except (TypeError, ValueError):
            return None
        if not all(math.isfinite(x) for x in vals):
            return None
        out.append(vals)
    return tuple(out)


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _rotation(v: Any) -> float | tuple[float, ...] | None:
    if isinstance(v, list) and v:
        parts = tuple(_opt_float(x) for x in v)
        return None if None in parts else parts
    return _opt_float(v)


def _opt_float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _scene_rank(scene_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}\0{scene_id}".encode()).hexdigest()


def _split_by_scene(samples: list[Sample], fraction: float, *, salt: str
                    ) -> tuple[list[Sample], list[Sample]]:
    """(kept, carved): ``round(fraction * scenes)`` scenes, chosen by hash rank, go to
    ``carved``; at least one when fraction > 0 and there are two or more scenes, and
    never all of them. Sample order within each part is the input order."""
    scenes = sorted({s.scene_id for s in samples}, key=lambda sc: _scene_rank(sc, salt))
    n = round(fraction * len(scenes))
    if fraction > 0 and len(scenes) >= 2:
        n = min(max(n, 1), len(scenes) - 1)
    carved_scenes = set(scenes[:n])
    return ([s for s in samples if s.scene_id not in carved_scenes],
            [s for s in samples if s.scene_id in carved_scenes])


def _check_disjoint(path: Path, splits: dict[str, list[Sample]]) -> None:
    ids = Counter(s.sample_id for ss in splits.values() for s in ss)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise DataError(path, f"sample id {dup[0]!r} occurs in more than one place "
                              "(the same image id in two annotation files?)")


def _fingerprint(parsed: dict, file_sizes: dict[str, int]) -> str:
    """16 hex digits of a sha256 over each annotation file's content hash and the
    relative name and byte size of every sample image.

    It identifies the data, not the split: feature caches keyed by it (and by sample
    id) stay valid across seeds and split fractions. It changes when an annotation or
    an image file's size changes, and stays the same when the dataset folder is copied
    or moved (no absolute paths, no mtimes). Image contents are not hashed: reading
    60k images would take minutes.
    """
    h = hashlib.sha256()
    for split in sorted(parsed, key=str):
        h.update(f"json {split} {parsed[split].sha256}\n".encode())
    for rel in sorted(file_sizes):
        h.update(f"img {rel} {file_sizes[rel]}\n".encode())
    return h.hexdigest()[:16]


def _skip_note(skipped: Counter) -> str:
    if not skipped:
        return ""
    return " (skipped: " + ", ".join(f"{r}: {n}" for r, n in skipped.most_common()) + ")"


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)
