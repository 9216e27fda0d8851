"""The fifteen exercise pose classes: joint-angle templates, variations, repetitions.

``sample_pose(class_name, rng, phase)`` gives a random pose of one class (angles in the
conventions of ``core.synthetic.body``); classes with a movement take a ``phase`` in one
repetition, which ``core.synthetic.motion`` uses to animate them. Bodies that rest on two
supports (plank: hands and toes) are tilted until both touch the floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

import numpy as np

from core.synthetic.body import (
    JOINT_INDEX,
    BodyShape,
    Pose,
    axis_angle_matrix,
    euler_to_matrix,
    forward_kinematics,
    mirror_pose,
    mirror_rotation,
    pose_from_degrees,
    pose_to_array,
)


class PoseSample(NamedTuple):
    pose: Pose                # joint angles (radians)
    root_rotation: np.ndarray  # (3, 3) whole-body orientation before heading
    variation: str            # e.g. "side_plank_left"


@dataclass(frozen=True)
class PoseTemplate:
    category: str                               # "HIIT" or "Yoga" (pretraining: also "Everyday", "Sport", "Exercise")
    variations: tuple[str, ...]
    # (rng, m, variation) -> (degrees dict, root Euler degrees, support); m in [0, 1] is
    # the repetition's progress (0 = start position, 1 = the furthest point).
    build: Callable
    phase_range: tuple[float, float] = (0.0, 1.0)  # of m, when no phase is asked for
    moving: bool = False                        # has a repetition (phase matters)
    # Variations that ``build`` makes as their mirror image (e.g. side_plank_left is
    # side_plank_right reflected): data, not a list in sample_pose, so that every pose
    # family (core.synthetic.pretrain_poses too) can mirror its own.
    mirrored: frozenset[str] = frozenset()


def _sym(d: dict, joint: str, rx: float, ry: float = 0.0, rz: float = 0.0) -> None:
    """Set the left joint and its mirror image on the right."""
    d[f"left_{joint}"] = (rx, ry, rz)
    d[f"right_{joint}"] = (rx, -ry, -rz)


_HANDS = ("left_index", "right_index", "left_pinky", "right_pinky")
_TOES = ("left_foot_index", "right_foot_index")
_KNEES = ("left_knee", "right_knee")
_UPPER = ("left_shoulder", "right_shoulder", "head")
_PRONE = (90.0, 0.0, 0.0)    # root Euler: lying face down, head towards +z
_SUPINE = (-90.0, 0.0, 0.0)  # lying on the back, head towards -z


def _squat(rng, m, var):
    d: dict = {}
    if var == "squat_wide":  # sumo: wide stance, knees and toes turned out
        _sym(d, "hip", -10 - 75 * m, 35, 22 + 8 * m)
        _sym(d, "knee", 10 + 95 * m)
        _sym(d, "ankle", -5 - 10 * m)
    else:
        _sym(d, "hip", -10 - 90 * m, 0, 6 + 6 * m)
        _sym(d, "knee", 12 + 105 * m)
        _sym(d, "ankle", -2 - 15 * m)
    d["spine"] = (12 + 22 * m, 0, 0)
    if var == "squat_arms_forward":
        _sym(d, "shoulder", -20 - 65 * m, 0, 8)
        _sym(d, "elbow", -10)
    else:  # hands together in front of the chest
        _sym(d, "shoulder", -45, 0, 25)
        _sym(d, "elbow", -110, 0, -10)
    return d, (0, 0, 0), None


def _lunge(rng, m, var):
    d: dict = {}
    f, b = ("left", "right") if var == "lunge_left" else ("right", "left")
    d[f"{f}_hip"] = (-15 - 75 * m, 0, 0)
    d[f"{f}_knee"] = (15 + 75 * m, 0, 0)
    d[f"{f}_ankle"] = (0, 0, 0)
    d[f"{b}_hip"] = (20 + 5 * m, 0, 0)
    d[f"{b}_knee"] = (10 + 80 * m, 0, 0)
    d[f"{b}_ankle"] = (-30 - 30 * m, 0, 0)
    _sym(d, "shoulder", -5, 0, 20)
    _sym(d, "elbow", -100, 0, -20)  # hands on the hips
    d["spine"] = (rng.uniform(-3, 5), 0, 0)
    return d, (0, 0, 0), ((f"{f}_heel", f"{f}_foot_index"), (f"{b}_foot_index",), "x")


def _jumping_jack(rng, m, var):
    d: dict = {}
    _sym(d, "shoulder", 0, 0, 12 + 160 * m)
    _sym(d, "elbow", -5, 0, 0)
    _sym(d, "hip", 0, 0, 3 + 17 * m)
    _sym(d, "ankle", 0, 0, -3 - 14 * m)
    return d, (0, 0, 0), None


def _bicep_curl(rng, m, var):
    d: dict = {}
    curl = -10 - 130 * m
    rest = -10 - 130 * (1 - m) if var == "bicep_curl_alternating" else curl
    d["left_shoulder"] = (-8, 0, 8)
    d["right_shoulder"] = (-8, 0, -8)
    d["left_elbow"] = (curl, 0, 0)
    d["right_elbow"] = (rest, 0, 0)
    _sym(d, "wrist", 0, -80, 0)  # palms up, as when holding dumbbells
    _sym(d, "hip", 0, 0, 5)
    return d, (0, 0, 0), None


def _overhead_press(rng, m, var):
    d: dict = {}
    _sym(d, "shoulder", -10 * (1 - m), 0, 80 + 90 * m)
    _sym(d, "elbow", 0, 0, 100 * (1 - m))
    _sym(d, "hip", 0, 0, 6)
    return d, (0, 0, 0), None


def _plank(rng, m, var):
    d: dict = {}
    if var == "plank_forearm":
        _sym(d, "shoulder", -80, 0, 0)
        _sym(d, "elbow", -90, 0, 0)
        support = (("left_elbow", "right_elbow"), _TOES, "x")
    else:
        _sym(d, "shoulder", -72, 0, 0)
        _sym(d, "wrist", -80, 0, 0)   # palms flat, fingers forward
        support = (_HANDS, _TOES, "x")
    _sym(d, "ankle", -25)
    d["spine"] = (rng.uniform(-4, 4), 0, 0)
    return d, _PRONE, support


def _pushup(rng, m, var):
    d: dict = {}
    wide = 25 if var == "pushup_wide" else 8
    _sym(d, "shoulder", -75 + 65 * m, 0, wide)
    _sym(d, "elbow", -95 * m, 0, 0)
    _sym(d, "wrist", -80, 0, 0)       # palms flat, fingers forward
    _sym(d, "ankle", -25)
    return d, _PRONE, (_HANDS, _TOES, "x")


def _side_plank(rng, m, var):
    # Built as side_plank_right (lying on the right side, right arm down); mirrored.
    d: dict = {"right_shoulder": (0, 0, -72), "left_shoulder": (0, 0, 95 + rng.uniform(-10, 10))}
    _sym(d, "hip", 0, 0, -2)
    d["left_hip"] = (0, 0, rng.uniform(0, 15))
    return d, (0, 0, 90), (("right_index", "right_pinky"),
                           ("right_foot_index", "right_heel"), "z")


def _bridge(rng, m, var):
    d: dict = {}
    _sym(d, "hip", -20 - 30 * (1 - m), 0, 4)
    _sym(d, "knee", 85 + 25 * (1 - m))
    _sym(d, "ankle", -20)
    _sym(d, "shoulder", 10, 0, 12)
    if var == "bridge_single_leg":  # the left leg straight, in line with the thigh
        d["left_hip"] = (-30 - 30 * (1 - m), 0, 4)
        d["left_knee"] = (5, 0, 0)
        d["left_ankle"] = (10, 0, 0)
    return d, _SUPINE, (_UPPER, ("left_heel", "right_heel", "left_foot_index",
                                 "right_foot_index"), "x")


def _crunch(rng, m, var):
    d: dict = {}
    _sym(d, "hip", -55, 0, 6)
    _sym(d, "knee", 100)
    _sym(d, "ankle", -30)
    d["spine"] = (15 + 20 * m, 0, 0)
    d["chest"] = (10 + 20 * m, 0, 0)
    d["neck"] = (10 + 10 * m, 0, 0)
    if var == "crunch_hands_behind_head":
        _sym(d, "shoulder", -150, 0, 55)
        _sym(d, "elbow", -140, 0, 0)
    else:  # arms reaching towards the knees
        _sym(d, "shoulder", -35 - 25 * m, 0, 8)
    return d, _SUPINE, (("left_hip", "right_hip"), ("left_heel", "right_heel"), "x")


def _superman(rng, m, var):
    d: dict = {}
    if var == "superman_w":  # elbows bent, arms in a W beside the head
        _sym(d, "shoulder", -150, 0, 55)
        _sym(d, "elbow", -90, 0, 0)
    else:
        _sym(d, "shoulder", -170, 0, 15)
    d["spine"] = (-12 - 10 * m, 0, 0)
    d["chest"] = (-8 - 8 * m, 0, 0)
    d["neck"] = (-10, 0, 0)
    _sym(d, "hip", 12 + 10 * m, 0, 6)
    _sym(d, "ankle", 30)
    return d, _PRONE, None


def _bird_dog(rng, m, var):
    d: dict = {}
    # On hands and knees: the arms (to a flat hand) are longer than the thighs, so the
    # back tilts up ~12 degrees; the hips are opened by as much to keep the thighs
    # vertical and the shins flat on the floor.
    _sym(d, "shoulder", -80, 0, 0)
    _sym(d, "wrist", -85, 0, 0)   # palm flat, fingers forward
    _sym(d, "hip", -80, 0, 0)
    _sym(d, "knee", 90)
    _sym(d, "ankle", 35)
    arm, leg = ("left", "right") if var == "bird_dog_left" else ("right", "left")
    d[f"{arm}_shoulder"] = (-110 - 70 * m, 0, 0)
    d[f"{arm}_wrist"] = (0, 0, 0)
    d[f"{leg}_hip"] = (-80 + 90 * m, 0, 0)
    d[f"{leg}_knee"] = (90 * (1 - m), 0, 0)
    sup_arm = "right" if arm == "left" else "left"
    sup_leg = "right" if leg == "left" else "left"
    return d, _PRONE, ((f"{sup_arm}_wrist", f"{sup_arm}_index", f"{sup_arm}_pinky"),
                       (f"{sup_leg}_knee", f"{sup_leg}_foot_index"), "x")


def _downward_dog(rng, m, var):
    d: dict = {}
    _sym(d, "shoulder", -170, 0, 10)
    _sym(d, "hip", -95 + rng.uniform(-10, 10), 0, 5)
    _sym(d, "ankle", 10)
    d["neck"] = (20, 0, 0)
    if var == "downward_dog_leg_up":
        d["left_hip"] = (10, 0, 5)
    return d, (135, 0, 0), (_HANDS, ("right_heel", "right_foot_index"), "x")


def _tree(rng, m, var):
    d: dict = {}
    lift = "left" if var == "tree_left" else "right"
    sign = 1 if lift == "left" else -1
    # Knee out to the side, sole against the standing leg's inner thigh.
    d[f"{lift}_hip"] = (-25, -sign * 35, sign * 50)
    d[f"{lift}_knee"] = (135, 0, 0)
    if rng.random() < 0.5:  # arms overhead, palms together
        _sym(d, "shoulder", 0, 0, 165)
        _sym(d, "elbow", 0, 0, 15)
    else:  # hands together in front of the chest
        _sym(d, "shoulder", -30, 0, 25)
        _sym(d, "elbow", -120, 0, -25)
    return d, (0, 0, 0), None


def _warrior2(rng, m, var):
    # Built as warrior2_left (front knee towards the body's left); mirrored for right.
    d: dict = {}
    _sym(d, "shoulder", 0, 0, 90)
    d["left_hip"] = (0, 15, 55)
    d["left_knee"] = (0, 0, -50)
    d["left_ankle"] = (0, 0, -5)
    d["right_hip"] = (-5, 10, -35)
    d["right_ankle"] = (0, 0, 30)
    d["neck"] = (0, 70, 0)
    return d, (0, 0, 0), None


POSE_CLASSES: dict[str, PoseTemplate] = {
    "bicep_curl": PoseTemplate("HIIT", ("bicep_curl_both", "bicep_curl_alternating"),
                            _bicep_curl, (0.45, 1.0), True),
    "bird_dog": PoseTemplate("Yoga", ("bird_dog_left", "bird_dog_right"), _bird_dog, (0.8, 1.0), True),
    "bridge": PoseTemplate("Yoga", ("bridge", "bridge_single_leg"), _bridge, (0.7, 1.0), True),
    "crunch": PoseTemplate("HIIT", ("crunch_hands_behind_head", "crunch_arms_forward"), _crunch,
                        (0.3, 1.0), True),
    "downward_dog": PoseTemplate("Yoga", ("downward_dog", "downward_dog_leg_up"), _downward_dog),
    "jumping_jack": PoseTemplate("HIIT", ("jumping_jack",), _jumping_jack, (0.4, 1.0), True),
    "lunge": PoseTemplate("HIIT", ("lunge_left", "lunge_right"), _lunge, (0.6, 1.0), True),
    "overhead_press": PoseTemplate("HIIT", ("overhead_press",), _overhead_press, (0.0, 1.0), True),
    "plank": PoseTemplate("HIIT", ("plank_high", "plank_forearm"), _plank),
    "pushup": PoseTemplate("HIIT", ("pushup_standard", "pushup_wide"), _pushup, (0.0, 1.0), True),
    "side_plank": PoseTemplate("Yoga", ("side_plank_left", "side_plank_right"), _side_plank,
                               mirrored=frozenset({"side_plank_left"})),
    "squat": PoseTemplate("HIIT", ("squat_arms_forward", "squat_prayer", "squat_wide"), _squat,
                       (0.55, 1.0), True),
    "superman": PoseTemplate("Yoga", ("superman", "superman_w"), _superman, (0.3, 1.0), True),
    "tree": PoseTemplate("Yoga", ("tree_left", "tree_right"), _tree),
    "warrior2": PoseTemplate("Yoga", ("warrior2_left", "warrior2_right"), _warrior2,
                             mirrored=frozenset({"warrior2_right"})),
}
CLASS_NAMES: tuple[str, ...] = tuple(sorted(POSE_CLASSES))

# Joints that get a little random angle noise in every sample (natural variation).
_NOISY = ("spine", "chest", "neck", "left_shoulder", "right_shoulder", "left_elbow",
          "right_elbow", "left_hip", "right_hip", "left_knee", "right_knee", "left_wrist",
          "right_wrist")

_AVERAGE = BodyShape()


def repetition(phase: float) -> float:
    """Phase of a repetition in [0, 1] -> progress m: 0 at the start, 1 halfway, 0 again."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * phase)


def sample_pose(class_name: str, rng: np.random.Generator, phase: float | None = None,
                *, variation: str | None = None, shape: BodyShape | None = None,
                noise_deg: float = 5.0, family: Mapping[str, PoseTemplate] = POSE_CLASSES) -> PoseSample:
    """A random pose of one class of ``family`` (the fifteen exercise classes by default;
    ``core.synthetic.pretrain_poses.PRETRAIN_CLASSES`` is the other family).

    ``phase`` in [0, 1] is the point in one repetition (0 and 1 = start position, 0.5 =
    the furthest point: bottom of a squat, arms up in a jumping jack); None picks a
    point where the exercise is recognisable in a still image. Classes without a
    movement ignore it. ``variation`` (one of ``family[c].variations``) is drawn
    at random when None. Angle noise is drawn from ``rng`` (so fix the rng per body
    to animate one person through phases). For bodies supported at two places (plank:
    hands and toes), the root is tilted so that both rest on the floor for ``shape``
    (average body when None).
    """
    try:
        tpl = family[class_name]
    except KeyError:
        raise ValueError(f"unknown pose class {class_name!r}; known: {', '.join(sorted(family))}")
    if variation is None:
        variation = tpl.variations[int(rng.integers(len(tpl.variations)))]
    elif variation not in tpl.variations:
        raise ValueError(f"{class_name} has no variation {variation!r}")
    if phase is None:
        m = float(rng.uniform(*tpl.phase_range))
    else:
        m = repetition(float(phase)) if tpl.moving else 1.0
    mirrored = variation in tpl.mirrored
    degrees, root_deg, support = tpl.build(rng, m, variation)
    pose = pose_from_degrees(**degrees)
    noise = {j: np.radians(rng.normal(0.0, noise_deg, 3)) for j in _NOISY}
    if support is not None:
        # A body resting on both hands and both feet keeps them level: the limbs get
        # mirror images of the same noise, else one hand or foot would hover.
        for j in ("shoulder", "elbow", "wrist", "hip", "knee"):
            noise[f"right_{j}"] = noise[f"left_{j}"] * np.array([1.0, -1.0, -1.0])
        for j in ("spine", "chest"):   # and the trunk bends, but does not twist or tilt
            noise[j] = noise[j] * np.array([1.0, 0.0, 0.0])
    for j, n in noise.items():
        pose[j] = pose.get(j, np.zeros(3)) + n
    root = euler_to_matrix(np.radians(np.asarray(root_deg, dtype=np.float64)))
    if support is not None:
        root = _level(shape or _AVERAGE, pose, root, support)
    if mirrored:
        pose, root = mirror_pose(pose), mirror_rotation(root)
    return PoseSample(pose, root, variation)


def _level(shape: BodyShape, pose: Pose, root: np.ndarray, support) -> np.ndarray:
    """Tilt the root about a world axis until both support groups touch the floor.

    f(tilt) = lowest height of group A - lowest height of group B; bisection on a sign
    change within +-40 degrees, else the tilt with the smallest |f|."""
    group_a, group_b, axis = support
    ia = [JOINT_INDEX[j] for j in group_a]
    ib = [JOINT_INDEX[j] for j in group_b]
    axis_v = {"x": np.array([1.0, 0, 0]), "z": np.array([0, 0, 1.0])}[axis]
    local = euler_to_matrix(pose_to_array(pose))
    offsets = shape.bone_offsets()

    def f(tilt: float) -> float:
        p = forward_kinematics(offsets, local, axis_angle_matrix(axis_v, tilt) @ root, np.zeros(3))
        return p[ia, 1].min() - p[ib, 1].min()

    lo, hi = math.radians(-40), math.radians(40)
    flo, fhi = f(lo), f(hi)
    if flo * fhi > 0:
        best = min((abs(flo), lo), (abs(f(0.0)), 0.0), (abs(fhi), hi))[1]
        return axis_angle_matrix(axis_v, best) @ root
    for _ in range(12):  # 80 deg / 2**12: well under a tenth of a degree
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if fm * flo > 0:
            lo, flo = mid, fm
        else:
            hi = mid
    return axis_angle_matrix(axis_v, 0.5 * (lo + hi)) @ root
