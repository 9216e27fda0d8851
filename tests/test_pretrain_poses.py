"""The backbone's pretraining pose family (core.synthetic.pretrain_poses): disjoint from the
demo's fifteen classes, every class and variation samples a body that rests on the floor
the way its kind of pose does, and scenes of the family render."""
from __future__ import annotations

import numpy as np
import pytest

from core.keypoints import BODY_JOINTS, flip_permutation, side_twin
from core.synthetic import body as B
from core.synthetic import poses
from core.synthetic import scene as S
from core.synthetic.pretrain_poses import PRETRAIN_CLASS_NAMES, PRETRAIN_CLASSES
from core.synthetic.render import render_scene

# How each class rests on the floor; the checks below hold a body to its kind.
KINDS = {
    "upright": ("standing_relaxed", "walking", "running", "waving", "arms_crossed", "hands_on_head",
                "t_pose", "reach_up", "side_bend", "high_knee", "quad_stretch", "front_kick", "boxing",
                "throwing", "dancer_pose"),
    "bent": ("toe_touch", "chair_pose", "warrior1", "warrior3", "triangle", "deadlift", "bent_over_row",
             "pistol_squat", "side_lunge", "malasana"),
    "sitting": ("cross_legged", "seated_forward_fold", "boat_pose", "hugging_knees", "russian_twist"),
    "kneeling": ("kneeling_upright", "camel"),
    "folded": ("childs_pose",),
    "lying": ("savasana", "lying_on_side", "leg_raise", "dead_bug"),
    "prone_arched": ("cobra",),
    "inverted": ("handstand",),
    "plank": ("mountain_climber",),
}
_FOOT = ("ankle", "heel", "foot_index")
_HAND = ("wrist", "index", "pinky", "thumb")


def _samples(name, var, n=6, seed=0):
    """n random bodies (shape, noise) of one variation, as world positions on the floor."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = B.sample_shape(rng)
        s = poses.sample_pose(name, rng, variation=var, shape=shape, family=PRETRAIN_CLASSES)
        yield shape, s, B.pose_body(shape, s.pose, s.root_rotation)


def _y(pos, joint):
    return pos[B.JOINT_INDEX[joint], 1]


def _lowest(pos) -> str:
    return B.ALL_JOINTS[int(np.argmin(pos[:, 1]))]


def test_family_is_big_and_disjoint_from_the_demo_classes():
    assert len(PRETRAIN_CLASSES) >= 36
    assert PRETRAIN_CLASS_NAMES == tuple(sorted(PRETRAIN_CLASSES))
    assert not set(PRETRAIN_CLASS_NAMES) & set(poses.CLASS_NAMES)
    assert len(poses.CLASS_NAMES) == 15                      # the demo's family is untouched
    assert sorted(c for k in KINDS.values() for c in k) == sorted(PRETRAIN_CLASS_NAMES)
    assert {t.category for t in PRETRAIN_CLASSES.values()} == {"Everyday", "Sport", "Yoga", "Exercise"}
    for name, tpl in PRETRAIN_CLASSES.items():
        assert 1 <= len(tpl.variations) <= 3, name
        assert tpl.mirrored <= set(tpl.variations), name
        # no variation is named like a demo class's (they'd be easy to confuse in a report)
        assert not {v for t in poses.POSE_CLASSES.values() for v in t.variations} & set(tpl.variations)


def test_demo_classes_mirror_the_same_variations_as_before():
    mirrored = {v for t in poses.POSE_CLASSES.values() for v in t.mirrored}
    assert mirrored == {"side_plank_left", "warrior2_right"}


@pytest.mark.parametrize("name", PRETRAIN_CLASS_NAMES)
def test_every_variation_rests_on_the_floor_as_its_kind_does(name):
    kind = next(k for k, names in KINDS.items() if name in names)
    for var in PRETRAIN_CLASSES[name].variations:
        for shape, s, pos in _samples(name, var):
            assert s.variation == var
            assert np.isfinite(pos).all()
            assert pos[:, 1].min() == pytest.approx(B.FLOOR_CLEARANCE)
            h = shape.height
            head, pelvis = _y(pos, "head") / h, _y(pos, "pelvis") / h
            low = _lowest(pos)
            knees = min(_y(pos, "left_knee"), _y(pos, "right_knee"))
            msg = f"{var}: head {head:.2f} pelvis {pelvis:.2f} (x height), lowest {low}"
            if kind == "upright":
                assert head > 0.72 and low.endswith(_FOOT), msg
            elif kind == "bent":    # on the feet (a wide forward fold: and the hands), trunk or hips low
                on = _FOOT + _HAND if var == "toe_touch_wide" else _FOOT
                assert 0.15 < head < 0.85 and pelvis > 0.1 and low.endswith(on), msg
            elif kind == "sitting":  # on the seat
                assert pelvis < 0.16 and 0.08 < head < 0.55, msg
            elif kind == "kneeling":
                assert knees < 0.07 and 0.3 < head < 0.8 and 0.2 < pelvis < 0.4, msg
            elif kind == "folded":   # sitting on the heels, forehead down
                assert knees < 0.12 and head < 0.17 and pelvis < 0.22, msg
            elif kind == "lying":
                assert pelvis < 0.22 and head < 0.3, msg
            elif kind == "prone_arched":  # hips down, chest up on the arms
                assert pelvis < 0.2 and 0.2 < head < 0.5, msg
            elif kind == "inverted":  # feet far above the head, on the hands
                feet = min(_y(pos, f"{s}_{j}") for s in ("left", "right") for j in _FOOT) / h
                assert feet > head + 0.5 and low.endswith(_HAND), msg
            elif kind == "plank":
                assert head < 0.6 and 0.15 < pelvis < 0.45 and low.endswith(_FOOT + _HAND), msg


def test_supports_touch_the_floor():
    """Every class built with two support groups (hands and feet, knees and face...) is
    levelled until both rest on the floor, for the body it was sampled for."""
    checked = 0
    for name, tpl in PRETRAIN_CLASSES.items():
        for var in tpl.variations:
            support = tpl.build(np.random.default_rng(0), 1.0, var)[2]
            if support is None:
                continue
            a, b, _ = support
            if var in tpl.mirrored:  # the build's groups are the other side's
                a, b = tuple(map(side_twin, a)), tuple(map(side_twin, b))
            for _, _, pos in _samples(name, var, n=4, seed=1):
                floor = pos[:, 1].min()
                for group in (a, b):
                    assert min(_y(pos, j) for j in group) - floor < 0.04, (var, group)
            checked += 1
    assert checked >= 10


def test_mirrored_variations_are_mirror_images():
    shape = B.BodyShape()
    pairs = 0
    for name, tpl in PRETRAIN_CLASSES.items():
        for var in tpl.mirrored:
            twin = var.replace("left", "@").replace("right", "left").replace("@", "right")
            assert twin in tpl.variations and twin not in tpl.mirrored, var
            a = poses.sample_pose(name, np.random.default_rng(5), variation=var, family=PRETRAIN_CLASSES)
            b = poses.sample_pose(name, np.random.default_rng(5), variation=twin, family=PRETRAIN_CLASSES)
            pa = B.joint_positions(shape, a.pose, root_rotation=a.root_rotation)
            pb = B.joint_positions(shape, b.pose, root_rotation=b.root_rotation)
            np.testing.assert_allclose(pa, pb[flip_permutation(BODY_JOINTS)] * np.array([-1, 1, 1]), atol=1e-9)
            assert np.abs(pa - pb).max() > 0.1                 # and really not symmetric poses
            pairs += 1
    assert pairs >= 15


def test_unknown_classes_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown pose class"):
        poses.sample_pose("squat", rng, family=PRETRAIN_CLASSES)   # a demo class, wrong family
    with pytest.raises(ValueError, match="unknown pose class"):
        poses.sample_pose("walking", rng)                          # the default family is the demo's
    with pytest.raises(ValueError, match="unknown pose class"):
        S.pose_family("yoga_flying")
    assert S.pose_family("walking") is PRETRAIN_CLASSES and S.pose_family("squat") is poses.POSE_CLASSES


def test_scenes_of_the_family_render_with_its_names():
    seen = set()
    for seed in range(3):
        scene = S.sample_scene(np.random.default_rng(seed), size=96, people_max=3, classes=PRETRAIN_CLASS_NAMES)
        res = render_scene(scene, rng=np.random.default_rng(seed))
        assert res.image.size == (96, 96) and len(res.people) == len(scene.people)
        for p in scene.people:
            tpl = PRETRAIN_CLASSES[p.class_name]
            assert p.variation in tpl.variations and p.category == tpl.category
            assert not p.dumbbells                                 # dumbbells are the demo's curls and presses
            assert p.joints[:, 1].min() == pytest.approx(B.FLOOR_CLEARANCE)
            seen.add(p.class_name)
    assert len(seen) >= 3


def test_deterministic_for_a_seed():
    a = poses.sample_pose("triangle", np.random.default_rng(11), family=PRETRAIN_CLASSES)
    b = poses.sample_pose("triangle", np.random.default_rng(11), family=PRETRAIN_CLASSES)
    assert a.variation == b.variation
    np.testing.assert_array_equal(B.pose_to_array(a.pose), B.pose_to_array(b.pose))
    np.testing.assert_array_equal(a.root_rotation, b.root_rotation)
    sa = S.sample_scene(np.random.default_rng(4), size=64, classes=PRETRAIN_CLASS_NAMES)
    sb = S.sample_scene(np.random.default_rng(4), size=64, classes=PRETRAIN_CLASS_NAMES)
    assert [p.class_name for p in sa.people] == [p.class_name for p in sb.people]
    for p, q in zip(sa.people, sb.people):
        np.testing.assert_array_equal(p.joints, q.joints)
