"""Synthetic fitness-pose images in InfiniteForm's layout.

``python -m core synth images --out DIR --train N --test N --seed S --size PX --people-max M``
(or ``write_image_dataset``) writes::

    DIR/train/annotations.json      COCO-style JSON, as InfiniteForm publishes it
    DIR/train/{image_id}.rgb.png    RGB, size x size pixels
    DIR/test/annotations.json
    DIR/test/{image_id}.rgb.png

Image ids are unique over the whole dataset (train 1..N, test N+1..N+M) and annotation
ids likewise, so the two JSON files could be merged into one, like InfiniteForm's.

``annotations.json``:

* ``images``: ``id``, ``file_name`` (``"{id}.rgb.png"``), ``width``, ``height``,
  ``camera_rotation_deg`` ``[pitch, yaw, roll]`` of the camera around the scene's
  centre (pitch > 0 looks down; yaw about the vertical, 0 = from the world's +z side;
  people have random headings, so yaw says nothing about the view of a body; roll
  about the viewing axis), ``camera_fov_deg`` (horizontal), ``camera_distance_m``.
* ``annotations``: one per person with at least one visible pixel: ``id``, ``image_id``, ``category_id`` (1, person),
  ``keypoints`` (17 x [x, y, v] flat, COCO-17 order, pixels; v = 0 outside the frame,
  1 inside but occluded, 2 visible; x = y = 0 when v = 0; nose, eyes and ears are not
  annotated (0, 0, 0), as in InfiniteForm), ``num_keypoints`` (count of v > 0),
  ``bbox`` (COCO xywh of the whole body including occluded parts, clipped to the
  image), ``area`` (pixels where the person is visible), ``segmentation`` (COCO polygons
  tracing the visible silhouette, one per connected part, holes filled:
  ``core.polygons.mask_to_polygons``),
  ``iscrowd`` 0, ``pose_category`` (class name, e.g. ``"side_plank"``),
  ``pose_variation`` (e.g. ``"side_plank_left"``), ``exercise_category`` (``"HIIT"`` /
  ``"Yoga"``).
* ``categories``: the COCO person category with its 17 keypoint names and skeleton.
* ``info``: generator, seed, split, size, people_max.

Scenes, bodies and the visibility rule are described in ``core.synthetic.render`` and
``core.synthetic.body``. Every image has its own random generator seeded by
``(seed, split, index)``, so a dataset is byte-identical for the same arguments, images
can be rendered in any order by any number of processes, and the train images do
not change when ``--test`` changes.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from core.errors import DataError
from core.io import atomic_write, write_json
from core.keypoints import BODY_JOINTS, COCO17, COCO17_SKELETON
from core.polygons import mask_to_polygons
from core.synthetic import poses
from core.synthetic.render import PersonRender, RenderResult, render_scene
from core.synthetic.scene import Person, Scene, sample_scene

SPLITS = ("train", "test")
SPLIT_CODE = {"train": 0, "test": 1}  # enters each image's seed: (seed, SPLIT_CODE[split], index)
# InfiniteForm does not annotate the face: these COCO keypoints are always (0, 0, 0).
UNANNOTATED = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
_COCO_FROM_BODY = np.array([BODY_JOINTS.index(n) for n in COCO17])
_ANNOTATED = np.array([n not in UNANNOTATED for n in COCO17])
# PNG zlib level: 1 is ~4x faster to write than PIL's default 6 for ~20% more bytes.
PNG_COMPRESS_LEVEL = 1


def categories() -> list[dict]:
    return [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17),
             "skeleton": [[a + 1, b + 1] for a, b in COCO17_SKELETON]}]


IMAGE_FORMATS = {"png": ".rgb.png", "jpeg": ".rgb.jpg"}   # format -> file suffix
JPEG_QUALITY = 95
# annotations.json's info.version: 2 = segmentation traces the silhouette (1 was its convex
# hull, which counted the background between the limbs as person)
ANNOTATIONS_VERSION = 2


def render_image(seed: int, split: str, index: int, *, size: int = 224, people_max: int = 3,
                 supersample: int = 2, image_format: str = "png") -> tuple[bytes, dict, list[dict]]:
    """Render one scene -> (PNG or JPEG bytes, image entry without id/file_name,
    annotations without id/image_id). Pure function of its arguments."""
    rng = np.random.default_rng([seed, SPLIT_CODE[split], index])
    scene = sample_scene(rng, size=size, people_max=people_max)
    result = render_scene(scene, supersample=supersample, rng=rng)
    buf = io.BytesIO()
    if image_format == "jpeg":      # for the GPU (nvJPEG) decode path: InfiniteForm itself is PNG
        result.image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        result.image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    cam = scene.camera
    image = {"width": size, "height": size,
             "camera_rotation_deg": [round(cam.pitch_deg, 3), round(cam.yaw_deg, 3), round(cam.roll_deg, 3)],
             "camera_fov_deg": round(cam.fov_deg, 3),
             "camera_distance_m": round(cam.distance, 3)}
    return buf.getvalue(), image, scene_annotations(scene, result)


def scene_annotations(scene: Scene, result: RenderResult) -> list[dict]:
    """Annotations of the people in a rendered scene, in drawing order. A person hidden
    entirely (behind a box, behind another person, out of the frame) has nothing to
    learn from and is not annotated."""
    return [coco_annotation(person, pr) for person, pr in zip(scene.people, result.people)
            if pr.mask.any() and pr.bbox[2] >= 1 and pr.bbox[3] >= 1]


def coco_annotation(person: Person, rendered: PersonRender) -> dict:
    """One person's COCO/InfiniteForm annotation (without ``id`` / ``image_id``)."""
    kp = rendered.keypoints[_COCO_FROM_BODY].copy()            # (17, 3) u, v, vis
    kp[~_ANNOTATED] = 0
    kp[kp[:, 2] == 0, :2] = 0
    flat: list = []
    for x, y, v in kp:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {
        "category_id": 1,
        "keypoints": flat,
        "num_keypoints": int((kp[:, 2] > 0).sum()),
        "bbox": [round(v, 2) for v in rendered.bbox],
        "area": float(rendered.mask.sum()),
        "segmentation": mask_to_polygons(rendered.mask),
        "iscrowd": 0,
        "pose_category": person.class_name,
        "pose_variation": person.variation,
        "exercise_category": person.category,
    }


def _render_to_file(task: tuple) -> tuple[int, dict, list[dict]]:
    out_dir, seed, split, index, image_id, size, people_max, image_format = task
    data, image, anns = render_image(seed, split, index, size=size, people_max=people_max,
                                     image_format=image_format)
    with atomic_write(Path(out_dir) / f"{image_id}{IMAGE_FORMATS[image_format]}") as f:
        f.write(data)
    return index, image, anns


@dataclass(frozen=True)
class ImageSpec:
    """What ``python -m core synth images`` renders (the output is a pure function of it)."""
    n_train: int                   # training scenes
    n_test: int                    # test scenes
    seed: int = 0                  # scene i of a split draws from default_rng([seed, split code, i])
    size: int = 224                # scene side, pixels
    people_max: int = 3            # most people in one scene
    image_format: str = "png"      # "png" (InfiniteForm's) or "jpeg" (quality 95: what the GPU decoder reads)


def write_image_dataset(out: Path, spec: ImageSpec, *, workers: int | None = None, progress: bool = True,
                        on_progress: Callable[[float], None] | None = None) -> dict:
    """Render ``spec.n_train`` + ``spec.n_test`` scenes into ``out`` (layout in the module
    docstring).

    ``workers``: processes (None = one per CPU, fewer for small sets); the output does
    not depend on it. ``progress``: a tqdm bar; ``on_progress(fraction)`` is called after
    every image (for the dashboard's demo builder). Returns a summary dict and prints it
    in two lines."""
    # Render, write and index a split in one piece: the temp folder, the process pool and the atomic
    # rename must share one cleanup path.
    out = Path(out)
    n_train, n_test, seed, size = spec.n_train, spec.n_test, spec.seed, spec.size
    people_max, image_format = spec.people_max, spec.image_format
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise DataError(out, f"need at least one image (got --train {n_train} --test {n_test})")
    if not 32 <= size <= 4096:
        raise DataError(out, f"--size must be between 32 and 4096 pixels (got {size})")
    if image_format not in IMAGE_FORMATS:
        raise DataError(out, f"--format must be one of {', '.join(IMAGE_FORMATS)} (got {image_format!r})")
    if people_max < 1:
        raise DataError(out, f"--people-max must be at least 1 (got {people_max})")
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    t0 = time.perf_counter()
    counts = {"train": n_train, "test": n_test}
    first_id = {"train": 1, "test": n_train + 1}
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, (n_train + n_test) // 32))
    summary: dict = {"out": str(out.resolve()), "seed": seed, "size": size,
                     "people_max": people_max, "splits": {}}
    next_ann_id = 1
    done, total = 0, n_train + n_test
    # fork, not spawn: spawn re-runs the parent's __main__ (``python -m core`` would start
    # the CLI again in every worker), and the workers only need numpy and PIL.
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        for split in SPLITS:
            n = counts[split]
            split_dir = out / split
            split_dir.mkdir(parents=True, exist_ok=True)
            tasks = [(str(split_dir), seed, split, i, first_id[split] + i, size, people_max, image_format)
                     for i in range(n)]
            results: list = [None] * n
            it = pool.imap_unordered(_render_to_file, tasks, chunksize=4) if pool else map(_render_to_file, tasks)
            for index, image, anns in tqdm(it, total=n, desc=f"render {split}", unit="img",
                                           disable=not progress or n == 0, leave=False):
                results[index] = (image, anns)
                done += 1
                if on_progress is not None:
                    on_progress(done / total)
            images, annotations = [], []
            classes: Counter = Counter()
            for i, (image, anns) in enumerate(results):
                image_id = first_id[split] + i
                images.append({"id": image_id, "file_name": f"{image_id}{IMAGE_FORMATS[image_format]}",
                               **image})
                for a in anns:
                    annotations.append({"id": next_ann_id, "image_id": image_id, **a})
                    classes[a["pose_category"]] += 1
                    next_ann_id += 1
            # The JSON goes last: a folder with annotations.json is a finished split.
            write_json(split_dir / "annotations.json", {
                "info": {"description": "PoseLab synthetic fitness poses (InfiniteForm layout)",
                         "generator": "core.synthetic.images", "version": ANNOTATIONS_VERSION, "seed": seed,
                         "split": split, "size": size, "people_max": people_max},
                "images": images, "annotations": annotations, "categories": categories(),
            })
            summary["splits"][split] = {"images": n, "people": len(annotations),
                                        "classes": dict(sorted(classes.items()))}
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["workers"] = workers
    s = summary["splits"]
    print(f"wrote {out}: train {s['train']['images']} images / {s['train']['people']} people, "
          f"test {s['test']['images']} images / {s['test']['people']} people, "
          f"{len(poses.CLASS_NAMES)} classes, {size}px, seed {seed}")
    print(f"  {summary['seconds']} s with {workers} process(es)")
    return summary
