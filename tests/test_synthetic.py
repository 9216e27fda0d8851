"""Synthetic image renderer and the InfiniteForm-layout dataset writer."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from core import cli
from core.errors import DataError
from core.keypoints import BODY_JOINTS, COCO17
from core.polygons import polygons_to_mask
from core.synthetic import body as B
from core.synthetic import camera, poses
from core.synthetic import render as R
from core.synthetic import scene as S
from core.synthetic.images import (
    UNANNOTATED,
    ImageSpec,
    coco_annotation,
    render_image,
    scene_annotations,
    write_image_dataset,
)

SIZE = 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    write_image_dataset(out, ImageSpec(n_train=6, n_test=3, seed=11, size=SIZE, people_max=3), progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _standing_person(class_name="overhead_press", pose=None, heading=0.0, seed=0) -> S.Person:
    p = S.sample_person(np.random.default_rng(seed), class_name, (0.0, 0.0), heading)
    if pose is not None:
        shape = B.BodyShape()
        p = dataclasses.replace(p, shape=shape, joints=B.pose_body(shape, pose, heading=heading))
    return p


def test_layout_and_json_fields(dataset):
    train = json.loads((dataset / "train" / "annotations.json").read_text())
    test = json.loads((dataset / "test" / "annotations.json").read_text())
    assert set(train) == {"info", "images", "annotations", "categories"}
    assert len(train["images"]) == 6 and len(test["images"]) == 3
    ids = [im["id"] for im in train["images"] + test["images"]]
    assert len(set(ids)) == 9                                  # unique over the dataset
    ann_ids = [a["id"] for a in train["annotations"] + test["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    (cat,) = train["categories"]
    assert cat["name"] == "person" and cat["keypoints"] == list(COCO17)
    assert all(1 <= a <= 17 and 1 <= b <= 17 for a, b in cat["skeleton"])
    for split, data in (("train", train), ("test", test)):
        files = {p.name for p in (dataset / split).glob("*.rgb.png")}
        assert files == {im["file_name"] for im in data["images"]}
        per_image = {im["id"]: 0 for im in data["images"]}
        for im in data["images"]:
            assert im["file_name"] == f"{im['id']}.rgb.png"
            assert im["width"] == im["height"] == SIZE
            rot = im["camera_rotation_deg"]
            assert len(rot) == 3 and all(isinstance(v, float) for v in rot)
            assert -180 <= rot[1] <= 180
        for a in data["annotations"]:
            per_image[a["image_id"]] += 1
            assert a["category_id"] == 1 and a["iscrowd"] == 0
            kp = a["keypoints"]
            assert len(kp) == 51
            v = np.array(kp[2::3])
            assert set(v.tolist()) <= {0, 1, 2} and all(isinstance(x, int) for x in kp[2::3])
            assert a["num_keypoints"] == int((v > 0).sum())
            for name in UNANNOTATED:                           # the face is not annotated
                i = COCO17.index(name)
                assert kp[3 * i: 3 * i + 3] == [0, 0, 0]
            xy = np.array(kp).reshape(17, 3)[:, :2]
            assert (xy[v > 0] >= 0).all() and (xy[v > 0] < SIZE).all()
            assert (xy[v == 0] == 0).all()
            x, y, w, h = a["bbox"]
            assert len(a["bbox"]) == 4 and w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= SIZE + 1e-6 and y + h <= SIZE + 1e-6
            # visible keypoints lie inside the box
            assert ((xy[v == 2] >= [x - 1, y - 1]) & (xy[v == 2] <= [x + w + 1, y + h + 1])).all()
            assert isinstance(a["area"], float) and 0 < a["area"] <= w * h + 1
            assert a["segmentation"] and all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])
            assert a["pose_category"] in poses.POSE_CLASSES
            assert a["pose_variation"] in poses.POSE_CLASSES[a["pose_category"]].variations
            assert a["exercise_category"] == poses.POSE_CLASSES[a["pose_category"]].category
        assert all(1 <= n <= 3 for n in per_image.values())
    assert any(n > 1 for n in per_image.values()) or len(train["annotations"]) > 6  # multi-person scenes


def test_deterministic_for_a_seed_whatever_the_worker_count(dataset, tmp_path):
    again = tmp_path / "again"
    write_image_dataset(again, ImageSpec(n_train=6, n_test=3, seed=11, size=SIZE,
                                         people_max=3), workers=2, progress=False)
    assert _files(again) == _files(dataset)
    other = tmp_path / "other"
    write_image_dataset(other, ImageSpec(n_train=6, n_test=3, seed=12, size=SIZE, people_max=3), progress=False)
    a, b = _files(dataset), _files(other)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


def test_train_images_do_not_depend_on_the_test_count(dataset, tmp_path):
    out = tmp_path / "fewer"
    seen: list[float] = []
    write_image_dataset(out, ImageSpec(n_train=6, n_test=1, seed=11, size=SIZE,
                                       people_max=3), progress=False, on_progress=seen.append)
    assert seen == pytest.approx([i / 7 for i in range(1, 8)])
    for i in range(1, 7):
        name = f"train/{i}.rgb.png"
        assert (out / name).read_bytes() == (dataset / name).read_bytes()


def test_annotations_match_what_was_drawn(dataset):
    """Visible keypoints land on the drawn body: inside the person's silhouette, on a
    pixel that differs from the same scene drawn without people."""
    data = json.loads((dataset / "train" / "annotations.json").read_text())
    checked = 0
    for index in range(6):
        image_id = index + 1
        rng = np.random.default_rng([11, 0, index])
        scene = S.sample_scene(rng, size=SIZE, people_max=3)
        drawn = R.render_scene(scene)                        # noise-free, same geometry
        empty = R.render_scene(dataclasses.replace(scene, people=[]))
        img = np.asarray(drawn.image, dtype=int)
        bg = np.asarray(empty.image, dtype=int)
        anns = [a for a in data["annotations"] if a["image_id"] == image_id]
        shown = [(p, r) for p, r in zip(scene.people, drawn.people) if r.mask.any()]
        assert len(anns) == len(shown)
        for a, (person, pr) in zip(anns, shown):
            assert a == {"id": a["id"], "image_id": image_id, **coco_annotation(person, pr)}
            kp = np.array(a["keypoints"]).reshape(17, 3)
            for x, y, v in kp:
                if v == 2:
                    u, w = int(x), int(y)
                    assert pr.mask[w, u]
                    assert np.abs(img[w, u] - bg[w, u]).max() > 0
                    checked += 1
            assert pr.mask.sum() == a["area"]
            _assert_outline_traces(a["segmentation"], pr.mask)
    assert checked > 30


def _assert_outline_traces(polygons: list[list[float]], mask: np.ndarray) -> None:
    """The segmentation polygons give the silhouette back, up to the filled holes and the
    half-pixel simplification: nearly every person pixel is inside, few others are."""
    back = polygons_to_mask(polygons, mask.shape)
    assert (back & mask).sum() >= 0.97 * mask.sum()
    assert (back & ~mask).sum() <= 0.08 * mask.sum() + 4


def test_visibility_for_a_body_partly_out_of_frame():
    person = _standing_person(pose=B.pose_from_degrees(left_shoulder=(0, 0, 20), right_shoulder=(0, 0, -20)))
    # A close camera at knee height: the upper body is above the top of the image.
    cam = camera.look_at_camera((0.0, 0.5, 0.0), yaw_deg=0, pitch_deg=0, distance=1.6, fov_deg=50,
                           width=SIZE, height=SIZE)
    res = R.render_scene(S.Scene(camera=cam, people=[person]))
    kp = res.people[0].keypoints
    vis = dict(zip(BODY_JOINTS, kp[:, 2].astype(int)))
    uv, depth = camera.project(cam, person.joints[B.BODY_FROM_ALL])
    outside = (uv[:, 0] < 0) | (uv[:, 0] >= SIZE) | (uv[:, 1] < 0) | (uv[:, 1] >= SIZE)
    assert ((kp[:, 2] == 0) == outside).all()
    for name in ("left_shoulder", "right_shoulder", "nose", "left_ear", "right_eye"):
        assert vis[name] == 0, name
    for name in ("left_knee", "right_knee", "left_ankle", "right_ankle"):
        assert vis[name] == 2, name
    ann = coco_annotation(person, res.people[0])
    kp17 = np.array(ann["keypoints"]).reshape(17, 3)
    assert kp17[COCO17.index("left_shoulder")].tolist() == [0, 0, 0]
    assert ann["num_keypoints"] == int((kp17[:, 2] > 0).sum()) < 17


def test_visibility_behind_a_prop_and_behind_the_body():
    person = _standing_person(pose=B.rest_pose())
    cam = camera.look_at_camera((0.0, 0.9, 0.0), yaw_deg=0, pitch_deg=0, distance=4.0, fov_deg=50,
                           width=SIZE, height=SIZE)
    box = S.Prop("box", np.array([0.0, 0.0, 1.2]), 0.9, np.array([200, 120, 40.0]))
    res = R.render_scene(S.Scene(camera=cam, people=[person], props=[box]))
    vis = dict(zip(BODY_JOINTS, res.people[0].keypoints[:, 2].astype(int)))
    for name in ("left_ankle", "right_ankle", "left_knee", "right_knee"):
        assert vis[name] == 1, name                      # behind the box
    for name in ("left_shoulder", "right_shoulder", "left_elbow", "nose"):
        assert vis[name] == 2, name
    # From the body's left side, the far (right) shoulder and knee are hidden by the
    # torso and the near leg: self-occlusion gives 1 as well.
    side = camera.look_at_camera((0.0, 1.2, 0.0), yaw_deg=90, pitch_deg=0, distance=3.0, fov_deg=50,
                            width=SIZE, height=SIZE)
    res = R.render_scene(S.Scene(camera=side, people=[person]))
    vis = dict(zip(BODY_JOINTS, res.people[0].keypoints[:, 2].astype(int)))
    assert vis["left_shoulder"] == 2 and vis["right_shoulder"] == 1
    assert vis["left_knee"] == 2 and vis["right_knee"] == 1
    assert vis["left_ankle"] == 2 and vis["right_ankle"] == 1


def test_a_person_hidden_entirely_is_not_annotated():
    front = _standing_person(pose=B.rest_pose())
    back = S.sample_person(np.random.default_rng(1), "squat", (0.0, -2.6), heading=0.0)
    cam = camera.look_at_camera((0.0, 0.6, 0.0), yaw_deg=0, pitch_deg=0, distance=4.0, fov_deg=50,
                           width=SIZE, height=SIZE)
    # a 1.4 x 1.12 x 1.4 m box between the two hides the squatter behind it
    wall = S.Prop("box", np.array([0.0, 0.0, -1.0]), 1.4, np.array([90, 90, 90.0]))
    scene = S.Scene(camera=cam, people=[front, back], props=[wall])
    res = R.render_scene(scene)
    assert res.people[0].mask.any() and not res.people[1].mask.any()
    anns = scene_annotations(scene, res)
    assert len(anns) == 1 and anns[0]["pose_category"] == front.class_name


def _silhouette(class_name: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = S.sample_person(rng, class_name, (0.0, 0.0), heading=0.4)
    lo, hi = p.joints.min(0), p.joints.max(0)
    cam = camera.look_at_camera(0.5 * (lo + hi), yaw_deg=25, pitch_deg=20, distance=4.5, fov_deg=50,
                           width=64, height=64)
    res = R.render_scene(S.Scene(camera=cam, people=[p]))
    return res.people[0].mask


def test_every_class_renders_and_classes_have_different_silhouettes():
    masks = {c: _silhouette(c) for c in poses.CLASS_NAMES}
    for c, m in masks.items():
        assert m.sum() > 40, c
    names = list(masks)
    worst = 0.0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            inter = (masks[a] & masks[b]).sum()
            union = (masks[a] | masks[b]).sum()
            worst = max(worst, inter / union)
    assert worst < 0.8
    # and a class is not just noise: the same class with another body stays closer to
    # itself than to a very different class
    plank2, squat = _silhouette("plank", seed=1), masks["squat"]
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    assert iou(masks["plank"], plank2) > iou(masks["plank"], squat)


def test_sampled_scenes_are_physically_sane():
    for i in range(40):
        scene = S.sample_scene(np.random.default_rng([99, i]), size=64, people_max=4)
        assert 1 <= len(scene.people) <= 4
        cam_off = np.abs(scene.camera.position - scene.room_centre)[[0, 2]]
        assert (cam_off < scene.room_half).all()                 # the camera is in the room
        assert scene.camera.position[1] > 0.2
        for k, p in enumerate(scene.people):
            assert p.joints[:, 1].min() == pytest.approx(B.FLOOR_CLEARANCE)  # standing on the floor
            for q in scene.people[k + 1:]:                       # nobody inside anybody
                d = np.linalg.norm(p.joints[:, None, [0, 2]] - q.joints[None, :, [0, 2]], axis=-1)
                assert d.min() >= 0.35
        for prop in scene.props:
            assert prop.position[1] == 0.0 and prop.kind in S.PROP_KINDS


def test_render_image_is_a_pure_function():
    a = render_image(5, "test", 3, size=64, people_max=2)
    b = render_image(5, "test", 3, size=64, people_max=2)
    c = render_image(5, "train", 3, size=64, people_max=2)
    assert a == b
    assert a[0] != c[0]


def test_bad_arguments_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="at least one image"):
        write_image_dataset(tmp_path / "a", ImageSpec(n_train=0, n_test=0, seed=0, size=64, people_max=1))
    with pytest.raises(DataError, match="--size"):
        write_image_dataset(tmp_path / "a", ImageSpec(n_train=1, n_test=0, seed=0, size=8, people_max=1))
    with pytest.raises(DataError, match="--people-max"):
        write_image_dataset(tmp_path / "a", ImageSpec(n_train=1, n_test=0, seed=0, size=64, people_max=0))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        write_image_dataset(tmp_path / "file", ImageSpec(n_train=1, n_test=0, seed=0, size=64, people_max=1))


def test_cli_synth_images(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["synth", "images", "--out", str(out), "--train", "2", "--test", "1",
                     "--size", "64", "--people-max", "2"]) == 0
    assert (out / "train" / "annotations.json").is_file()
    assert len(list((out / "test").glob("*.rgb.png"))) == 1
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["synth", "images", "--out", str(out), "--size", "4"]) == 2
    assert "--size" in capsys.readouterr().err


@pytest.mark.parametrize("yaw", [0.0, 30.0, -30.0, 180.0, 150.0])
def test_the_front_of_a_body_differs_from_its_back(yaw, monkeypatch):
    """Eyes, brows and mouth, and the shirt's lower front neckline, are drawn only on the
    side that faces the camera: without them a body seen from behind looks mirrored, and
    BlazePose swapped left and right in a quarter of the rendered frames (13.5 % with
    them, 16 demo clips, 2026-12-03)."""
    person = _standing_person(heading=0.0)
    cam = camera.look_at_camera(person.joints[B.JOINT_INDEX["neck"]], yaw_deg=yaw, pitch_deg=10, distance=3.0,
                                width=256, height=256)
    uv, z = camera.project(cam, person.joints)
    head_r = cam.focal * 0.097 / z[B.JOINT_INDEX["head"]]
    face = R._face_features(person, uv, z, head_r)
    neck = R._neckline(person, cam, 1.0)
    front = abs(yaw) < 90
    assert bool(face) == front and bool(neck) == front
    if front:   # two eyes, two brows and a mouth, all on the head's disc
        assert len(face) == 5
        centre = uv[B.JOINT_INDEX["head"]]
        assert all(np.linalg.norm(s[1] - centre) < head_r for s in face)
    scene = S.Scene(camera=cam, people=[person])
    drawn = np.asarray(R.render_scene(scene).image)
    monkeypatch.setattr(R, "_face_features", lambda *a: [])
    monkeypatch.setattr(R, "_neckline", lambda *a: [])
    plain = np.asarray(R.render_scene(scene).image)
    assert (drawn != plain).any() == front                    # the pixels change only in front
