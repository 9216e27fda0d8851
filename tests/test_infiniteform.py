"""core.classification.dataset: layouts, splits, crops, keypoint normalisation, bad input.

Every dataset here is a few tiny PNGs + a COCO-style JSON written by the test.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.classification import dataset as inf
from core.classification.crops import PoseDataset, crop_box, keypoints_in_crop, load_crop, model_keypoints
from core.classification.dataset import load_infiniteform
from core.errors import DataError
from core.images import IMAGENET_MEAN_RGB8, tensor_to_image

CLASSES = ["squat", "plank", "tree"]


def _kp(points: dict[int, tuple[float, float, int]] | None = None) -> list[float]:
    kp = [0.0] * 51
    for j, (x, y, v) in (points or {}).items():
        kp[3 * j:3 * j + 3] = [x, y, v]
    return kp


def _ann(ann_id, image_id, category="squat", bbox=(10, 10, 20, 30), keypoints=None, **extra):
    a = {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": list(bbox),
         "keypoints": keypoints if keypoints is not None else _kp({5: (15, 15, 2), 11: (20, 30, 1)}),
         "num_keypoints": 2, "area": bbox[2] * bbox[3], "segmentation": [],
         "pose_category": category, "pose_variation": f"{category}_left",
         "exercise_category": "HIIT"}
    a.update(extra)
    if category is None:
        del a["pose_category"]
    return a


def _write_scene(folder: Path, image_id, size=(64, 48), colour=(90, 140, 200), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(folder / f"{image_id}.rgb.png")
    # companions that must never become samples
    Image.new("L", size, 3).save(folder / f"{image_id}.cseg.png")
    Image.new("L", size, 7).save(folder / f"{image_id}.iseg.png")
    (folder / f"{image_id}.depth.exr").write_bytes(b"\x76\x2f\x31\x01 not really exr")


def _coco(images, annotations) -> dict:
    return {"info": {"description": "test"}, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}]}


def _image_entry(image_id, size=(64, 48), **extra):
    return {"id": image_id, "file_name": f"{image_id}.rgb.png", "width": size[0],
            "height": size[1], "camera_rotation_deg": 30.0, **extra}


def _single(tmp_path: Path, n_scenes=30, people=lambda i: 1 + (i % 2)) -> Path:
    """One JSON for all scenes (the real InfiniteForm layout); returns the folder."""
    root = tmp_path / "if"
    images, anns = [], []
    for i in range(n_scenes):
        _write_scene(root, i, colour=((37 * i) % 256, 100, 200))   # each scene its own colour
        images.append(_image_entry(i))
        for p in range(people(i)):
            anns.append(_ann(len(anns), i, category=CLASSES[(i + p) % 3], bbox=(5 + p * 20, 5, 15, 30)))
    (root / "labels.json").write_text(json.dumps(_coco(images, anns)))
    return root


def _split_layout(tmp_path: Path, n_train=12, n_test=4, test_only_class=None) -> Path:
    """Synthetic-writer layout: DIR/train/ and DIR/test/, each one JSON + PNGs. Image ids
    restart at 0 in each split (a writer may well do that)."""
    root = tmp_path / "synth"
    for split, n in (("train", n_train), ("test", n_test)):
        images, anns = [], []
        for i in range(n):
            _write_scene(root / split, i)
            images.append(_image_entry(i))
            cat = CLASSES[i % 3]
            if split == "test" and i == 0 and test_only_class:
                cat = test_only_class
            anns.append(_ann(i, i, category=cat))
        (root / split / "annotations.json").write_text(json.dumps(_coco(images, anns)))
    return root


# ----------------------------------------------------------------------------- layouts

def test_single_json_folder_and_file_give_the_same_index(tmp_path):
    root = _single(tmp_path)
    a = load_infiniteform(root)
    b = load_infiniteform(root / "labels.json")
    assert a.root == b.root == root.resolve()
    assert a.sources == [root.resolve() / "labels.json"]
    for split in ("train", "val", "test"):
        assert [s.sample_id for s in a.splits[split]] == [s.sample_id for s in b.splits[split]]
    assert a.fingerprint == b.fingerprint
    assert sum(len(v) for v in a.splits.values()) == 45          # 15 scenes x1 + 15 x2
    s = a.splits["train"][0]
    assert s.image_path.is_absolute() and s.image_path.name.endswith(".rgb.png")
    assert (a.root / s.rel_path) == s.image_path
    assert s.camera_rotation_deg == 30.0 and s.exercise_category == "HIIT"
    assert s.pose_variation == f"{s.label_name}_left"
    assert s.keypoints.shape == (17, 3) and s.keypoints.dtype == np.float32
    assert s.image_size == (64, 48)


def test_companion_files_are_never_samples(tmp_path):
    root = _single(tmp_path, n_scenes=6)
    coco = json.loads((root / "labels.json").read_text())
    # an image entry that points at a segmentation file, with an annotation on it
    coco["images"].append(_image_entry(99) | {"file_name": "0.cseg.png"})
    coco["annotations"].append(_ann(999, 99))
    (root / "labels.json").write_text(json.dumps(coco))
    idx = load_infiniteform(root)
    paths = [s.image_path.name for s in idx.samples()]
    assert paths and all(p.endswith(".rgb.png") for p in paths)
    assert idx.skipped == {inf.SKIP_NOT_RGB: 1}
    # 9 annotations on 6 scenes: nothing was made out of the 18 companion files
    assert len(paths) == 9


def test_split_layout_with_restarting_ids(tmp_path):
    root = _split_layout(tmp_path, n_train=12, n_test=4)
    idx = load_infiniteform(root, val_fraction=0.25)
    assert [p.relative_to(root.resolve()).as_posix() for p in idx.sources] == \
        ["train/annotations.json", "test/annotations.json"]
    assert len(idx.splits["test"]) == 4
    assert all(s.rel_path.startswith("test/") for s in idx.splits["test"])
    assert len(idx.splits["val"]) == 3 and len(idx.splits["train"]) == 9     # 25 % of 12 scenes
    assert all(s.rel_path.startswith("train/") for s in idx.splits["val"])
    ids = [s.sample_id for s in idx.samples()]
    assert len(set(ids)) == len(ids) == 16          # ids 0..3 exist in both files
    assert "test/0:0" in ids and "train/0:0" in ids


def test_given_val_folder_is_used(tmp_path):
    root = _split_layout(tmp_path, n_train=6, n_test=3)
    shutil.copytree(root / "test", root / "val")
    # ids collide in three files now; each keeps its split prefix
    idx = load_infiniteform(root)
    assert (len(idx.splits["train"]), len(idx.splits["val"]), len(idx.splits["test"])) == (6, 3, 3)
    assert "given train/val/test" in idx.summary()


def test_images_found_in_archive_subfolders(tmp_path):
    """The real download comes as several archives: images in sub-folders, the JSON
    naming only the file."""
    root = _single(tmp_path, n_scenes=6)
    for i, p in enumerate(sorted(root.glob("*.rgb.png"))):
        part = root / f"part{i % 2}"
        part.mkdir(exist_ok=True)
        p.rename(part / p.name)
    idx = load_infiniteform(root)
    assert not idx.skipped
    assert all(s.rel_path.startswith("part") for s in idx.samples())
    assert all(s.image_path.is_file() for s in idx.samples())


def test_coco_annotations_folder_layout(tmp_path):
    root = tmp_path / "coco"
    _write_scene(root / "images", 1)
    _write_scene(root / "images", 2)
    (root / "annotations").mkdir()
    coco = _coco([_image_entry(1) | {"file_name": "images/1.rgb.png"}, _image_entry(2)],
                 [_ann(1, 1), _ann(2, 2, category="tree")])
    (root / "annotations" / "person_keypoints.json").write_text(json.dumps(coco))
    idx = load_infiniteform(root / "annotations" / "person_keypoints.json", test_fraction=0.5)
    assert idx.root == root.resolve()
    assert sorted(s.rel_path for s in idx.samples()) == ["images/1.rgb.png", "images/2.rgb.png"]


def test_camera_rotation_scalar_or_vector(tmp_path):
    root = tmp_path / "rot"
    for i in range(3):
        _write_scene(root, i)
    images = [_image_entry(0), _image_entry(1) | {"camera_rotation_deg": [7.5, -40.0, 2.0]},
              {k: v for k, v in _image_entry(2).items() if k != "camera_rotation_deg"}]
    (root / "labels.json").write_text(json.dumps(_coco(images, [_ann(i, i) for i in range(3)])))
    got = {s.image_id: s.camera_rotation_deg
           for s in load_infiniteform(root, test_fraction=0.0, val_fraction=0.0).samples()}
    assert got == {0: 30.0, 1: (7.5, -40.0, 2.0), 2: None}


def test_bad_paths(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_infiniteform(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no annotation file"):
        load_infiniteform(tmp_path / "empty")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.json").write_text("{}")
    (two / "b.json").write_text("{}")
    with pytest.raises(DataError, match=r"two: holds 2 \.json files"):
        load_infiniteform(two)
    half = tmp_path / "half"
    (half / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="not both"):
        load_infiniteform(half)


# ----------------------------------------------------------------------------- classes

def test_classes_come_from_the_json(tmp_path):
    root = _split_layout(tmp_path, test_only_class="zebra_pose")
    idx = load_infiniteform(root)
    assert idx.classes == ["plank", "squat", "tree", "zebra_pose"]
    for s in idx.samples():
        assert idx.classes[s.label] == s.label_name
    assert "no training samples for zebra_pose" in idx.summary()


# ----------------------------------------------------------------------------- splits

def test_split_by_scene_is_disjoint_deterministic_and_order_free(tmp_path):
    root = _single(tmp_path, n_scenes=60)
    idx = load_infiniteform(root)
    scenes = {k: {s.scene_id for s in v} for k, v in idx.splits.items()}
    assert not (scenes["train"] & scenes["val"] or scenes["train"] & scenes["test"]
                or scenes["val"] & scenes["test"])
    assert len(scenes["test"]) == 10                     # 60 / 6, as the paper's 50k/10k
    assert len(scenes["val"]) == 5                       # 10 % of the remaining 50
    # both people of every two-person scene are in the same split
    split_of = {s.sample_id: k for k, v in idx.splits.items() for s in v}
    for i in range(1, 60, 2):
        assert split_of[f"{i}:0"] == split_of[f"{i}:1"]

    # the same data in another file order gives the same split
    path = root / "labels.json"
    coco = json.loads(path.read_text())
    random.Random(1).shuffle(coco["images"])
    random.Random(2).shuffle(coco["annotations"])
    path.write_text(json.dumps(coco))
    again = load_infiniteform(root)
    for k in idx.splits:
        assert sorted(s.sample_id for s in again.splits[k]) == sorted(s.sample_id for s in idx.splits[k])

    # the seed moves validation scenes but never the test scenes
    other = load_infiniteform(root, seed=1)
    assert {s.scene_id for s in other.splits["test"]} == scenes["test"]
    assert {s.scene_id for s in other.splits["val"]} != scenes["val"]
    assert other.fingerprint == again.fingerprint        # same data, other split


def test_scene_id_field_groups_images(tmp_path):
    root = _single(tmp_path, n_scenes=20, people=lambda i: 1)
    coco = json.loads((root / "labels.json").read_text())
    for im in coco["images"]:
        im["scene_id"] = f"s{im['id'] // 2}"             # two images per scene
    (root / "labels.json").write_text(json.dumps(coco))
    idx = load_infiniteform(root, test_fraction=0.3)
    where = {}
    for k, v in idx.splits.items():
        for s in v:
            assert where.setdefault(s.scene_id, k) == k
    assert len(where) == 10 and sum(1 for k in where.values() if k == "test") == 3


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("content, message", [
    (b"this is not json", r"labels\.json: not valid JSON"),
    (b'{"images": [{"id": 1}], "annotations": [{"id"', r"labels\.json: not valid JSON \(truncated"),
    (b'[1, 2, 3]', r"labels\.json: not a COCO-style annotation file"),
    (b'{"images": []}', r"labels\.json: not a COCO-style annotation file"),
    (b'{"images": {}, "annotations": []}', r"labels\.json: not a COCO-style annotation file"),
    (b'{"images": [{"file_name": "a.png"}], "annotations": []}', r"images\[0\] has no integer or string 'id'"),
    (b'{"images": [{"id": 1}, {"id": 1}], "annotations": []}', "image id 1 appears twice"),
    (b'{"images": "\xff\xff"}', r"labels\.json: not a text"),
])
def test_not_coco_json_raises_naming_the_file(tmp_path, content, message):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "labels.json").write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        load_infiniteform(root)
    assert str(root / "labels.json") in str(e.value)


def test_bad_annotations_are_skipped_and_counted(tmp_path):
    root = tmp_path / "mixed"
    for i in range(5):
        _write_scene(root, i)
    (root / "3.rgb.png").unlink()                                # missing image
    anns = [
        _ann(0, 0),                                              # good
        _ann(1, 0, category=None),                               # no pose_category
        _ann(2, 1, keypoints=[1.0] * 50),                        # wrong length
        _ann(3, 1, keypoints=[1.0] * 50 + ["x"]),                # not numbers
        _ann(4, 2, bbox=(0, 0, 0, 5)),                           # empty bbox
        _ann(5, 3),                                              # image file missing
        _ann(6, 77),                                             # unknown image id
        _ann(7, 4, iscrowd=1),                                   # crowd region
        _ann(8, 4, category="  "),                               # blank category
        "not an object",
        _ann(9, 4, category="plank"),                            # good
    ]
    images = [_image_entry(i) for i in range(5)]
    (root / "labels.json").write_text(json.dumps(_coco(images, anns)))
    idx = load_infiniteform(root, test_fraction=0.0, val_fraction=0.0)
    assert sorted(s.sample_id for s in idx.samples()) == ["0:0", "4:2"]   # person index from the JSON
    assert idx.skipped == {inf.SKIP_NO_CATEGORY: 2, inf.SKIP_BAD_KEYPOINTS: 2,
                           inf.SKIP_BAD_BBOX: 1, inf.SKIP_MISSING_IMAGE: 1,
                           inf.SKIP_NO_IMAGE_ENTRY: 1, inf.SKIP_CROWD: 1, inf.SKIP_NOT_OBJECT: 1}
    summary = idx.summary()
    assert "skipped 9 annotation(s)" in summary
    assert f"{inf.SKIP_NO_CATEGORY}: 2" in summary and f"{inf.SKIP_MISSING_IMAGE}: 1" in summary
    assert "train 2 samples / 2 scenes" in summary


def test_nothing_usable_raises(tmp_path):
    root = tmp_path / "allbad"
    _write_scene(root, 0)
    coco = _coco([_image_entry(0)], [_ann(0, 0, category=None), _ann(1, 0, keypoints=[0] * 34)])
    (root / "labels.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"labels\.json: no usable annotations .*no pose_category: 1"):
        load_infiniteform(root)


def test_missing_width_height_read_from_header(tmp_path):
    root = tmp_path / "nosize"
    _write_scene(root, 0, size=(40, 30))
    entry = {"id": 0, "file_name": "0.rgb.png"}
    (root / "labels.json").write_text(json.dumps(_coco([entry], [_ann(0, 0)])))
    idx = load_infiniteform(root, test_fraction=0.0)
    assert idx.splits["train"][0].image_size == (40, 30)


def test_truncated_image_fails_at_getitem_naming_the_file(tmp_path):
    root = _single(tmp_path, n_scenes=4, people=lambda i: 1)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    target = root / "2.rgb.png"
    noisy.save(target)
    target.write_bytes(target.read_bytes()[:400])
    idx = load_infiniteform(root, test_fraction=0.0, val_fraction=0.0)   # indexing only stats
    ds = PoseDataset(idx.splits["train"], image_size=16)
    i = next(k for k, s in enumerate(ds.samples) if s.image_path == target.resolve())
    with pytest.raises(DataError, match=r"2\.rgb\.png: truncated or corrupt"):
        ds[i]
    ds[(i + 1) % len(ds)]                                               # others still load


def test_annotation_size_mismatch_is_reported(tmp_path):
    root = tmp_path / "mismatch"
    _write_scene(root, 0, size=(64, 48))
    (root / "labels.json").write_text(json.dumps(_coco([_image_entry(0, size=(100, 80))], [_ann(0, 0)])))
    idx = load_infiniteform(root, test_fraction=0.0)
    with pytest.raises(DataError, match=r"0\.rgb\.png: image is 64x48 pixels but the annotation says 100x80"):
        PoseDataset(idx.splits["train"])[0]


@pytest.mark.parametrize("mode, colour, expected", [
    ("L", (90, 140, 200), None),                  # grey: R = G = B = luma
    ("RGBA", (90, 140, 200), (90, 140, 200)),     # opaque alpha: unchanged
    ("I;16", None, (128, 128, 128)),              # 16-bit grey 32896 -> 128
])
def test_grayscale_rgba_16bit_scenes_are_converted(tmp_path, mode, colour, expected):
    root = tmp_path / mode.replace(";", "")
    root.mkdir()
    if mode == "I;16":
        Image.fromarray(np.full((48, 64), 32896, np.uint16)).save(root / "0.rgb.png")
    else:
        _write_scene(root, 0, colour=colour, mode=mode)
    (root / "labels.json").write_text(json.dumps(_coco([_image_entry(0)], [_ann(0, 0)])))
    idx = load_infiniteform(root, test_fraction=0.0)
    crop = np.asarray(load_crop(idx.splits["train"][0]))
    if expected is None:
        luma = round(0.299 * 90 + 0.587 * 140 + 0.114 * 200)
        expected = (luma, luma, luma)
    assert np.abs(crop[crop.shape[0] // 2, crop.shape[1] // 2].astype(int) - expected).max() <= 1
    item = PoseDataset(idx.splits["train"], image_size=8)[0]
    assert item["image"].shape == (3, 8, 8)


# ----------------------------------------------------------------------------- crops

def test_crop_box_hand_computed():
    # bbox 20 x 40 at (40, 20) in a 200 x 100 scene, margin 0.25: side 40 * 1.5 = 60,
    # centre (50, 40) -> (20, 10, 80, 70): fits, no shift
    assert crop_box((40, 20, 20, 40), (200, 100), 0.25) == (20, 10, 80, 70)
    # default margin 0.15: side = ceil(40 * 1.3) = 52
    assert crop_box((40, 20, 20, 40), (200, 100)) == (24, 14, 76, 66)
    # near the left/top border: shifted inside, still square, still holds the bbox
    assert crop_box((2, 1, 30, 20), (200, 100), 0.25) == (0, 0, 45, 45)
    # near the right/bottom border
    assert crop_box((180, 80, 20, 20), (200, 100), 0.0) == (180, 80, 200, 100)
    # taller than the image: centred on the person, runs past top and bottom (padded)
    assert crop_box((90, 0, 20, 100), (200, 100), 0.1) == (40, -10, 160, 110)


def test_multi_person_scene_gives_one_crop_per_person(tmp_path):
    root = tmp_path / "multi"
    root.mkdir()
    scene = Image.new("RGB", (200, 100), (255, 255, 255))
    scene.paste((255, 0, 0), (40, 20, 60, 60))       # person 0: red, bbox (40, 20, 20, 40)
    scene.paste((0, 0, 255), (150, 30, 170, 90))     # person 1: blue, bbox (150, 30, 20, 60)
    scene.save(root / "7.rgb.png")
    anns = [_ann(0, 7, "squat", bbox=(40, 20, 20, 40),
                 keypoints=_kp({5: (50, 40, 2), 6: (26, 64, 1), 0: (99, 99, 0)})),
            _ann(1, 7, "tree", bbox=(150, 30, 20, 60))]
    (root / "labels.json").write_text(json.dumps(_coco([_image_entry(7, size=(200, 100))], anns)))
    idx = load_infiniteform(root, test_fraction=0.0)
    s0, s1 = idx.splits["train"]
    assert (s0.sample_id, s0.person_index, s0.label_name) == ("7:0", 0, "squat")
    assert (s1.sample_id, s1.person_index, s1.label_name) == ("7:1", 1, "tree")
    assert s0.scene_id == s1.scene_id == "7"

    margin = 0.25
    c0, c1 = load_crop(s0, margin), load_crop(s1, margin)
    assert c0.size == (60, 60) and c1.size == (90, 90)
    assert c0.getpixel((30, 30)) == (255, 0, 0)            # each crop centred on its person
    assert c1.getpixel((c1.width // 2, c1.height // 2)) == (0, 0, 255)
    assert (0, 0, 255) not in {c0.getpixel((x, y)) for x in range(60) for y in range(60)}

    # keypoints relative to the crop (20, 10, 80, 70), side 60
    kp = keypoints_in_crop(s0, margin)
    assert kp[5].tolist() == pytest.approx([0.5, 0.5, 2.0])            # (50-20)/60, (40-10)/60
    assert kp[6].tolist() == pytest.approx([0.1, 0.9, 1.0])            # (26-20)/60, (64-10)/60
    assert kp[0].tolist() == [0.0, 0.0, 0.0]                           # not in frame: zeroed
    m = model_keypoints(s0, margin)
    assert m[5].tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert m[6].tolist() == pytest.approx([0.1, 0.9, 1.0])             # occluded counts as present
    assert m[0].tolist() == [0.0, 0.0, 0.0]
    assert (m[2:5] == 0).all()

    ds = PoseDataset(idx.splits["train"], image_size=24, margin=margin)
    item = ds[0]
    # one decoded scene, two crops: red person, then blue person
    assert tensor_to_image(item["image"])[12, 12].tolist() == [255, 0, 0]
    assert tensor_to_image(ds[1]["image"])[12, 12].tolist() == [0, 0, 255]
    assert set(item) == {"image", "label", "keypoints", "index"}
    assert item["image"].shape == (3, 24, 24) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].item() == idx.classes.index("squat")
    assert item["keypoints"].shape == (17, 3) and torch.allclose(item["keypoints"], torch.from_numpy(m))
    assert item["index"] == 0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 24, 24) and batch["label"].tolist() == [
        idx.classes.index("squat"), idx.classes.index("tree")]


def test_scene_reuse_gives_the_same_items(tmp_path):
    root = _single(tmp_path, n_scenes=4)                 # scenes 1 and 3 hold two people
    ss = load_infiniteform(root, test_fraction=0.0, val_fraction=0.0).samples()
    assert [s.image_id for s in ss][:3] == [0, 1, 1]
    seq = PoseDataset(ss, image_size=16)
    items = [seq[i] for i in range(len(ss))]              # sequential: reuses decoded scenes
    for i in range(len(ss)):
        fresh = PoseDataset(ss, image_size=16)[i]         # decodes its own scene
        assert torch.equal(items[i]["image"], fresh["image"])
        assert torch.equal(items[i]["keypoints"], fresh["keypoints"])


def test_padding_uses_the_imagenet_mean(tmp_path):
    root = tmp_path / "pad"
    _write_scene(root, 0, size=(40, 20), colour=(255, 255, 255))
    ann = _ann(0, 0, bbox=(10, 0, 20, 20), keypoints=_kp({9: (20, 10, 2)}))
    (root / "labels.json").write_text(json.dumps(_coco([_image_entry(0, size=(40, 20))], [ann])))
    s = load_infiniteform(root, test_fraction=0.0).splits["train"][0]
    # side = ceil(20 * 1.3) = 26 > 20 rows: box (7, -3, 33, 23)
    assert crop_box(s.bbox, s.image_size) == (7, -3, 33, 23)
    crop = load_crop(s)
    assert crop.size == (26, 26)
    assert crop.getpixel((13, 0)) == IMAGENET_MEAN_RGB8 and crop.getpixel((13, 25)) == IMAGENET_MEAN_RGB8
    assert crop.getpixel((13, 13)) == (255, 255, 255)
    assert keypoints_in_crop(s)[9].tolist() == pytest.approx([13 / 26, 13 / 26, 2.0])
    t = PoseDataset([s], image_size=26)[0]["image"]
    assert t[:, 0, 13].abs().max() < 0.01                # padding is ~0 after normalisation


def test_augment_jitters_colour_only(tmp_path):
    root = _single(tmp_path, n_scenes=2, people=lambda i: 1)
    s = load_infiniteform(root, test_fraction=0.0, val_fraction=0.0).splits["train"][0]
    plain = PoseDataset([s], image_size=16)[0]
    torch.manual_seed(0)
    aug = PoseDataset([s], image_size=16, augment=True)[0]
    assert torch.equal(aug["keypoints"], plain["keypoints"])            # geometry untouched
    assert not torch.equal(aug["image"], plain["image"])


# ----------------------------------------------------------------------------- fingerprint

def test_fingerprint_survives_a_move_and_tracks_content(tmp_path):
    root = _single(tmp_path, n_scenes=6)
    fp = load_infiniteform(root).fingerprint
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, moved)
    assert load_infiniteform(moved).fingerprint == fp
    coco = json.loads((moved / "labels.json").read_text())
    coco["annotations"][0]["keypoints"][15] = 17.0
    (moved / "labels.json").write_text(json.dumps(coco))
    assert load_infiniteform(moved).fingerprint != fp
    (root / "0.rgb.png").write_bytes((root / "0.rgb.png").read_bytes() + b"\0")   # image size changes
    assert load_infiniteform(root).fingerprint != fp


# ----------------------------------------------------------------------------- CLI

def test_cli_bad_dataset_exits_2_naming_the_file(tmp_path, capsys):
    from core.cli import main
    root = tmp_path / "bad"
    root.mkdir()
    (root / "labels.json").write_text('{"images": [')
    runs = tmp_path / "runs"
    assert main(["train", "classifier", "--data", str(root), "--preset", "model1",
                 "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {root / 'labels.json'}: not valid JSON (truncated: Expecting value)"]
    assert not runs.exists() or not any(runs.iterdir())


# ----------------------------------------------------------------------------- synthetic

def test_reads_the_synthetic_writers_output(tmp_path):
    """The contract with core.synthetic.images: its folder loads as is."""
    from core.synthetic.images import ImageSpec, write_image_dataset
    out = tmp_path / "synth"
    write_image_dataset(out, ImageSpec(n_train=6, n_test=3, seed=3, size=64, people_max=2), workers=1, progress=False)
    idx = load_infiniteform(out)
    written = {split: json.loads((out / split / "annotations.json").read_text())
               for split in ("train", "test")}
    assert len(idx.splits["test"]) == len(written["test"]["annotations"])
    assert len(idx.splits["train"]) + len(idx.splits["val"]) == len(written["train"]["annotations"])
    assert idx.classes == sorted({a["pose_category"] for w in written.values() for a in w["annotations"]})
    assert not idx.skipped
    item = PoseDataset(idx.splits["test"], image_size=32)[0]
    assert item["image"].shape == (3, 32, 32) and torch.isfinite(item["image"]).all()
    m = item["keypoints"]
    assert ((m[:, 2] == 0) | ((m[:, :2] >= 0) & (m[:, :2] <= 1)).all(1)).all()
