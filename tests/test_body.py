"""The procedural body: skeleton, shapes, forward kinematics, poses, camera."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.keypoints import BODY_JOINTS, flip_permutation
from core.synthetic import body as B
from core.synthetic import camera, poses


def _random_pose(rng) -> np.ndarray:
    return rng.uniform(-math.pi, math.pi, (len(B.ALL_JOINTS), 3))


def test_skeleton_knows_every_keypoint_and_is_topological():
    assert set(BODY_JOINTS) <= set(B.ALL_JOINTS)
    for j, parent in enumerate(B.PARENTS):
        assert parent < j  # parents come first: forward kinematics in one pass
    pos = B.joint_positions(B.BodyShape(), B.rest_pose())
    assert pos.shape == (len(BODY_JOINTS), 3)
    assert np.isfinite(pos).all()


def test_rest_pose_conventions():
    """Upright, facing +z, left side at +x, y up (the module docstring's promises)."""
    p = B.all_joint_positions(B.BodyShape(height=1.8), B.rest_pose())
    at = {n: p[B.JOINT_INDEX[n]] for n in B.ALL_JOINTS}
    assert at["head"][1] > at["chest"][1] > at["pelvis"][1] > at["left_knee"][1] > at["left_ankle"][1]
    assert at["left_shoulder"][0] > 0 > at["right_shoulder"][0]
    assert at["left_hip"][0] > 0 > at["right_hip"][0]
    assert at["nose"][2] > at["head"][2]                       # the face looks along +z
    assert at["left_foot_index"][2] > at["left_heel"][2]       # toes point forward
    standing = B.pose_body(B.BodyShape(height=1.8), B.rest_pose())
    assert standing[:, 1].min() == pytest.approx(B.FLOOR_CLEARANCE)
    # head top ~ height: the head joint (its centre) sits a bit under it
    assert 1.55 < standing[B.JOINT_INDEX["head"], 1] < 1.8


@pytest.mark.parametrize("seed", range(5))
def test_bone_lengths_are_preserved_in_any_pose(seed):
    rng = np.random.default_rng(seed)
    shape = B.sample_shape(rng)
    root = B.euler_to_matrix(rng.uniform(-3, 3, 3))
    pos = B.all_joint_positions(shape, _random_pose(rng), root_position=rng.normal(size=3),
                                root_rotation=root)
    for (parent, child), length in shape.bone_lengths().items():
        d = np.linalg.norm(pos[B.JOINT_INDEX[child]] - pos[B.JOINT_INDEX[parent]])
        assert d == pytest.approx(length, abs=1e-9), (parent, child)


def test_batched_kinematics_equals_one_by_one():
    rng = np.random.default_rng(0)
    shape = B.sample_shape(rng)
    angles = rng.uniform(-1, 1, (4, len(B.ALL_JOINTS), 3))
    batch = B.joint_positions(shape, angles)
    for i in range(4):
        np.testing.assert_allclose(batch[i], B.joint_positions(shape, angles[i]), atol=1e-12)


def test_bone_lengths_vary_by_shape():
    rng = np.random.default_rng(1)
    shapes = [B.sample_shape(rng) for _ in range(20)]
    thigh = [s.bone_lengths()[("left_hip", "left_knee")] for s in shapes]
    forearm = [s.bone_lengths()[("left_elbow", "left_wrist")] for s in shapes]
    shoulders = [s.bone_offsets()[B.JOINT_INDEX["left_shoulder"], 0] for s in shapes]
    for values in (thigh, forearm, shoulders):
        assert np.std(values) / np.mean(values) > 0.02
    heights = [s.height for s in shapes]
    assert 1.5 <= min(heights) and max(heights) <= 1.95
    # proportions are not just a global scale: the thigh / forearm ratio changes too
    ratio = np.array(thigh) / np.array(forearm)
    assert np.std(ratio) > 0.01


def test_euler_convention_and_signs():
    # rx < 0 swings a hanging arm forward (+z); rz > 0 lifts the left arm sideways (+x).
    shape = B.BodyShape()
    i_sh, i_el = B.JOINT_INDEX["left_shoulder"], B.JOINT_INDEX["left_elbow"]
    fwd = B.all_joint_positions(shape, B.pose_from_degrees(left_shoulder=(-90, 0, 0)))
    arm = fwd[i_el] - fwd[i_sh]
    np.testing.assert_allclose(arm / np.linalg.norm(arm), [0, 0, 1], atol=1e-9)
    side = B.all_joint_positions(shape, B.pose_from_degrees(left_shoulder=(0, 0, 90)))
    arm = side[i_el] - side[i_sh]
    np.testing.assert_allclose(arm / np.linalg.norm(arm), [1, 0, 0], atol=1e-9)
    r = B.euler_to_matrix(np.radians([30.0, -20.0, 45.0]))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_blend_poses():
    a = B.pose_from_degrees(left_elbow=(-100, 0, 0))
    b = B.pose_from_degrees(left_elbow=(0, 0, 0), right_knee=(60, 0, 0))
    mid = B.blend_poses(a, b, 0.5)
    np.testing.assert_allclose(np.degrees(mid["left_elbow"]), [-50, 0, 0])
    np.testing.assert_allclose(np.degrees(mid["right_knee"]), [30, 0, 0])
    np.testing.assert_allclose(B.pose_to_array(B.blend_poses(a, b, 0.0)), B.pose_to_array(a))
    np.testing.assert_allclose(B.pose_to_array(B.blend_poses(a, b, 1.0)), B.pose_to_array(b))


def test_mirror_pose_mirrors_the_body():
    rng = np.random.default_rng(3)
    shape = B.BodyShape()  # symmetric shape
    pose = B.array_to_pose(rng.uniform(-1, 1, (len(B.ALL_JOINTS), 3)))
    root = B.euler_to_matrix(rng.uniform(-1, 1, 3))
    p = B.joint_positions(shape, pose, root_rotation=root)
    q = B.joint_positions(shape, B.mirror_pose(pose), root_rotation=B.mirror_rotation(root))
    expected = p[flip_permutation(BODY_JOINTS)] * np.array([-1, 1, 1])
    np.testing.assert_allclose(q, expected, atol=1e-9)


def test_every_class_and_variation_samples_a_finite_pose():
    assert len(poses.POSE_CLASSES) == 15
    assert {t.category for t in poses.POSE_CLASSES.values()} == {"HIIT", "Yoga"}
    rng = np.random.default_rng(0)
    for name, tpl in poses.POSE_CLASSES.items():
        for var in tpl.variations:
            pose, root, got = poses.sample_pose(name, rng, variation=var)
            assert got == var
            pos = B.pose_body(B.BodyShape(), pose, root)
            assert np.isfinite(pos).all()
            assert pos[:, 1].min() == pytest.approx(B.FLOOR_CLEARANCE)
    with pytest.raises(ValueError, match="unknown pose class"):
        poses.sample_pose("yoga_flying", rng)


def _height(name, pos):
    return pos[B.JOINT_INDEX[name], 1]


@pytest.mark.parametrize("name, a, b", [
    ("plank", ("left_index", "right_index", "left_pinky", "right_pinky"), ("left_foot_index", "right_foot_index")),
    ("pushup", ("left_index", "right_index", "left_pinky", "right_pinky"), ("left_foot_index", "right_foot_index")),
    ("downward_dog", ("left_index", "right_index", "left_pinky", "right_pinky"), ("right_heel", "right_foot_index")),
])
def test_supported_poses_rest_on_both_supports(name, a, b):
    """Plank-like poses are tilted so that hands and feet both touch the floor, for
    the body shape they were sampled for."""
    rng = np.random.default_rng(7)
    for _ in range(3):
        shape = B.sample_shape(rng)
        pose, root, var = poses.sample_pose(name, rng, shape=shape)
        support = ("left_elbow", "right_elbow") if var == "plank_forearm" else a
        pos = B.pose_body(shape, pose, root)
        low_a = min(_height(j, pos) for j in support)
        low_b = min(_height(j, pos) for j in b)
        assert abs(low_a - low_b) < 0.01
        # both feet rest on the floor, not one of them hovering (mirror-symmetric noise)
        assert abs(_height("left_foot_index", pos) - _height("right_foot_index", pos)) < 0.02 \
            or var == "downward_dog_leg_up"
        # and the body is really lying: the head is low, not 1.5 m up
        assert _height("head", pos) < 1.0


def test_lying_and_standing_classes():
    rng = np.random.default_rng(2)
    for name in ("plank", "pushup", "bridge", "crunch", "superman", "bird_dog", "side_plank"):
        pos = B.pose_body(B.BodyShape(), *poses.sample_pose(name, rng)[:2])
        assert _height("head", pos) < 1.0, name
    for name in ("tree", "warrior2", "jumping_jack", "overhead_press", "bicep_curl"):
        pos = B.pose_body(B.BodyShape(), *poses.sample_pose(name, rng)[:2])
        assert _height("head", pos) > 1.4, name


def test_phase_animates_the_repetition():
    shape = B.BodyShape()

    def at(name, phase, joint):
        pose, root, _ = poses.sample_pose(name, np.random.default_rng(0), phase=phase, noise_deg=0)
        return B.pose_body(shape, pose, root)[B.JOINT_INDEX[joint]]

    assert at("squat", 0.5, "pelvis")[1] < at("squat", 0.0, "pelvis")[1] - 0.25
    assert at("squat", 1.0, "pelvis")[1] == pytest.approx(at("squat", 0.0, "pelvis")[1])
    assert at("bicep_curl", 0.5, "left_wrist")[1] > at("bicep_curl", 0.0, "left_wrist")[1] + 0.2
    assert at("jumping_jack", 0.5, "left_wrist")[1] > at("jumping_jack", 0.0, "left_wrist")[1] + 0.8
    assert at("overhead_press", 0.5, "right_wrist")[1] > at("overhead_press", 0.0, "right_wrist")[1] + 0.2
    # a smooth movement: neighbouring phases give neighbouring poses
    a, b = at("squat", 0.30, "left_knee"), at("squat", 0.31, "left_knee")
    assert np.linalg.norm(a - b) < 0.03


def test_variations_are_mirror_images():
    rng = np.random.default_rng(0)
    shape = B.BodyShape()
    left = poses.sample_pose("side_plank", np.random.default_rng(5), variation="side_plank_left", noise_deg=0)
    right = poses.sample_pose("side_plank", np.random.default_rng(5), variation="side_plank_right", noise_deg=0)
    pl = B.joint_positions(shape, left.pose, root_rotation=left.root_rotation)
    pr = B.joint_positions(shape, right.pose, root_rotation=right.root_rotation)
    np.testing.assert_allclose(pl, pr[flip_permutation(BODY_JOINTS)] * np.array([-1, 1, 1]), atol=1e-9)
    del rng


def test_camera_projection():
    target = np.array([0.0, 1.0, 0.0])
    cam = camera.look_at_camera(target, yaw_deg=0, pitch_deg=0, distance=4.0, fov_deg=60, width=200, height=100)
    uv, depth = camera.project(cam, np.stack([target, target + [0.5, 0, 0], target + [0, 0.5, 0], target + [0, 0, 5]]))
    np.testing.assert_allclose(uv[0], [100, 50], atol=1e-9)
    assert depth[0] == pytest.approx(4.0)
    assert uv[1, 0] > 100   # camera on +z looking at -z: world +x is image right
    assert uv[2, 1] < 50    # up is up
    assert depth[3] < 0     # behind the camera
    assert cam.focal == pytest.approx(100 / math.tan(math.radians(30)))
    # a front view shows the body's left on the image's right
    pos = B.pose_body(B.BodyShape(), B.rest_pose())
    uv, _ = camera.project(cam, pos)
    assert uv[B.JOINT_INDEX["left_shoulder"], 0] > uv[B.JOINT_INDEX["right_shoulder"], 0]
    # pitch looks down from above; roll turns the picture
    high = camera.look_at_camera(target, yaw_deg=0, pitch_deg=30, distance=4.0)
    assert high.position[1] > target[1]
    # straight down is the limit of almost straight down (no degenerate "right" axis)
    down = camera.look_at_camera(target, yaw_deg=30, pitch_deg=90, distance=4.0)
    almost = camera.look_at_camera(target, yaw_deg=30, pitch_deg=89.999, distance=4.0)
    np.testing.assert_allclose(down.rotation, almost.rotation, atol=1e-4)
    rolled = camera.look_at_camera(target, yaw_deg=0, pitch_deg=0, distance=4.0, roll_deg=90, width=200, height=200)
    uv, _ = camera.project(rolled, (target + [0.5, 0, 0])[None])
    assert abs(uv[0, 0] - 100) < 1e-6 and uv[0, 1] != pytest.approx(100)


def test_sample_camera_ranges_and_determinism():
    target = np.array([0.0, 0.8, 0.0])
    cams = [camera.sample_camera(np.random.default_rng(i), target, radius=1.0) for i in range(50)]
    again = camera.sample_camera(np.random.default_rng(3), target, radius=1.0)
    np.testing.assert_array_equal(again.position, cams[3].position)
    yaws = np.array([c.yaw_deg for c in cams])
    assert yaws.min() < -90 and yaws.max() > 90                    # all around
    assert all(c.position[1] >= 0.25 - 1e-9 for c in cams)         # above the floor
    for c in cams:
        uv, depth = camera.project(c, target[None])
        np.testing.assert_allclose(uv[0], [c.width / 2, c.height / 2], atol=1e-6)
        assert depth[0] > 0
