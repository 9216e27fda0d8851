"""The standing half of the backbone's pretraining pose family (``core.synthetic.pretrain_poses``).

Each build function follows ``core.synthetic.poses``: ``(rng, m, variation) -> (degrees
dict, root Euler degrees, support)`` in the angle conventions of ``core.synthetic.body``.
Classes with a left and a right variation are built as the left one; the right one is
its mirror image (``PoseTemplate.mirrored``), so both draw the same random numbers.

Many of these poses pitch the whole body (root rotation) and give the standing leg the
opposite hip angle, so that the leg stays vertical while the trunk leans: a hip hinge is
the pelvis tipping over the thighs, not the spine folding above an upright pelvis. Feet
that must rest flat are aimed in world coordinates with ``_aim`` instead of by hand.
"""
from __future__ import annotations

import math

import numpy as np

from core.synthetic.body import euler_to_matrix
from core.synthetic.poses import _HANDS, PoseTemplate, _sym

_LR = frozenset  # shorthand for the mirrored variations of a template
_FEET = ("left_heel", "right_heel", "left_foot_index", "right_foot_index")


def _rot(*eulers) -> np.ndarray:
    """Product of rotations given as Euler degrees, outermost (root) first."""
    r = np.eye(3)
    for e in eulers:
        r = r @ euler_to_matrix(np.radians(np.asarray(e, dtype=np.float64)))
    return r


def _euler(r: np.ndarray) -> tuple[float, float, float]:
    """(rx, ry, rz) degrees of a rotation matrix ``Rz @ Ry @ Rx`` (the body's convention)."""
    ry = -math.asin(max(-1.0, min(1.0, float(r[2, 0]))))
    rx = math.atan2(float(r[2, 1]), float(r[2, 2]))
    rz = math.atan2(float(r[1, 0]), float(r[0, 0]))
    return math.degrees(rx), math.degrees(ry), math.degrees(rz)


def _aim(d: dict, joint: str, chain: tuple, world) -> None:
    """Set ``joint`` so that its segment has the world rotation ``world`` (Euler degrees),
    given the Euler degrees of the root and of every joint above it (``chain``): how a
    foot is put flat on the floor, or turned out, below a leg at any angle."""
    d[joint] = _euler(_rot(*chain).T @ _rot(world))


def _guard(d: dict) -> None:
    """Fists up in front of the chin, elbows down (boxing and kicking guard)."""
    _sym(d, "shoulder", -35, -20, 12)
    _sym(d, "elbow", -130, 0, 0)


# --------------------------------------------------------------------------- everyday

def _standing_relaxed(rng, m, var):
    d: dict = {}
    _sym(d, "hip", 0, 0, 4)
    d["left_knee"] = (rng.uniform(0, 12), 0, 0)  # weight on the right leg
    if var == "standing_hands_on_hips":
        _sym(d, "shoulder", -5, 0, 20)
        _sym(d, "elbow", -100, 0, -20)
    elif var == "standing_looking_at_phone":
        _sym(d, "shoulder", 0, 0, 6)
        d["right_shoulder"] = (-25, 0, -5)
        d["right_elbow"] = (-100, 0, 0)
        d["right_wrist"] = (0, -70, 0)   # screen towards the face
        d["neck"] = (25, 0, 0)
        d["head"] = (15, 0, 0)
    else:
        _sym(d, "shoulder", 0, 0, 6)
        _sym(d, "elbow", -10)
    return d, (0, 0, 0), None


def _walking(rng, m, var):
    d: dict = {}
    s = 0.6 + 0.4 * m                      # stride length
    d["left_hip"] = (-25 * s, 0, 3)
    d["left_knee"] = (5, 0, 0)
    d["left_ankle"] = (-10 * s, 0, 0)      # heel strike, toes up
    d["right_hip"] = (18 * s, 0, -3)
    d["right_knee"] = (25 * s, 0, 0)
    d["right_ankle"] = (30 * s, 0, 0)      # pushing off, heel up
    d["left_shoulder"] = (22 * s, 0, 6)     # arms swing against the legs
    d["right_shoulder"] = (-25 * s, 0, -6)
    _sym(d, "elbow", -25)
    return d, (3, 0, 0), (("left_heel",), ("right_foot_index",), "x")


def _running(rng, m, var):
    d: dict = {}
    d["left_hip"] = (-55 - 15 * m, 0, 3)   # knee driving forward
    d["left_knee"] = (85, 0, 0)
    d["left_ankle"] = (-10, 0, 0)
    d["right_hip"] = (22, 0, -3)           # pushing off the back foot
    d["right_knee"] = (25, 0, 0)
    d["right_ankle"] = (35, 0, 0)
    d["left_shoulder"] = (40, 0, 8)
    d["left_elbow"] = (-80, 0, 0)
    d["right_shoulder"] = (-55, 0, -8)
    d["right_elbow"] = (-90, 0, 0)
    d["spine"] = (5, 0, 0)
    return d, (10, 0, 0), None


def _waving(rng, m, var):
    d: dict = {}
    _sym(d, "hip", 0, 0, 4)
    # Upper arm out and a little up, turned so that the bent forearm points up; the
    # wave sways the forearm.
    d["left_shoulder"] = (0, 90, 100)
    d["left_elbow"] = (-75 - 30 * m, 0, 0)
    d["left_wrist"] = (0, 0, 10)
    d["right_shoulder"] = (0, 0, -6)
    d["right_elbow"] = (-10, 0, 0)
    d["neck"] = (0, 10, 0)
    return d, (0, 0, 0), None


def _arms_crossed(rng, m, var):
    d: dict = {}
    _sym(d, "hip", 0, 0, 5)
    # Upper arms turned in, forearms folded across the chest, one above the other.
    d["left_shoulder"] = (-25, -65, 12)
    d["left_elbow"] = (-115, 0, 0)
    d["right_shoulder"] = (-30, 65, -12)
    d["right_elbow"] = (-100, 0, 0)
    if var == "arms_crossed_leaning":  # weight on one leg, head tilted
        d["left_knee"] = (15, 0, 0)
        d["left_hip"] = (-5, 0, 8)
        d["neck"] = (0, 0, rng.uniform(-12, -5))
    return d, (0, 0, 0), None


def _hands_on_head(rng, m, var):
    d: dict = {}
    _sym(d, "hip", 0, 0, 5)
    if var == "hands_behind_head":
        _sym(d, "shoulder", -150, 0, 55)
        _sym(d, "elbow", -140, 0, 0)
    else:  # palms on top of the head, elbows out to the sides
        _sym(d, "shoulder", 0, 90, 140)
        _sym(d, "elbow", -120, 0, 0)
    return d, (0, 0, 0), None


def _t_pose(rng, m, var):
    d: dict = {}
    if var == "lateral_raise":
        _sym(d, "shoulder", 0, 0, 55 + 35 * m)
        _sym(d, "elbow", -15)
        _sym(d, "hip", 0, 0, 6)
        _sym(d, "knee", 8)
    else:
        _sym(d, "shoulder", 0, 0, 90)
        _sym(d, "hip", 0, 0, 3)
    return d, (0, 0, 0), None


def _reach_up(rng, m, var):
    d: dict = {}
    _sym(d, "ankle", 30 + 10 * m)           # on tiptoe
    _sym(d, "hip", 0, 0, 3)
    if var == "reach_up_both":
        _sym(d, "shoulder", -172, 0, 12)
        d["spine"] = (-6, 0, 0)
    else:  # built as reach_up_left: one arm high, the body leaning away a little
        d["left_shoulder"] = (-172, 0, 12)
        d["right_shoulder"] = (0, 0, -8)
        d["right_elbow"] = (-15, 0, 0)
        d["spine"] = (0, 0, 6)
    return d, (0, 0, 0), None


def _toe_touch(rng, m, var):
    d: dict = {}
    p = 88 + 20 * m                          # hips fold forward, legs stay vertical
    d["spine"] = (15, 0, 0)
    d["chest"] = (12, 0, 0)
    d["neck"] = (10, 0, 0)
    if var == "toe_touch_wide":
        # Legs wide, so the hands reach the floor between the feet: palms down, the body
        # levelled on hands and feet.
        for s, x in (("left", 1), ("right", -1)):
            _aim(d, f"{s}_hip", ((p, 0, 0),), (0, 0, 22 * x))
            _aim(d, f"{s}_ankle", ((p, 0, 0), d[f"{s}_hip"]), (0, 0, 0))
        _sym(d, "shoulder", -(p + 27), 0, 12)       # arms hang straight down
        _sym(d, "wrist", -80)
        return d, (p, 0, 0), (_HANDS, _FEET, "x")
    _sym(d, "hip", -p, 0, 3)
    _sym(d, "shoulder", -(p + 27) + 40, 0, 4)       # fingers towards the toes, not on the floor
    return d, (p, 0, 0), None


def _chair_pose(rng, m, var):
    d: dict = {}
    p = 25 + 10 * m                          # trunk leans forward
    thigh = -(50 + 20 * m)                   # thigh's world angle (forward)
    _sym(d, "hip", thigh - p, 0, 4)
    _sym(d, "knee", 25 - thigh)              # shins lean forward 25 degrees
    _sym(d, "ankle", -25)
    if var == "chair_pose_arms_forward":
        _sym(d, "shoulder", -90 - p, 0, 6)
    else:
        _sym(d, "shoulder", -170, 0, 10)     # arms overhead, in line with the trunk
    return d, (p, 0, 0), None


def _warrior1(rng, m, var):
    # Built as warrior1_left: left knee bent over the ankle, right leg straight back with
    # the foot flat and turned out, hips square, arms overhead.
    d: dict = {}
    thigh = -(65 + 20 * m)
    d["left_hip"] = (thigh, 0, 4)
    d["left_knee"] = (-thigh, 0, 0)
    d["left_ankle"] = (0, 0, 0)
    d["right_hip"] = (40 + 5 * m, 0, -4)
    _aim(d, "right_ankle", ((0, 0, 0), d["right_hip"]), (0, -45, 0))
    _sym(d, "shoulder", -172, 0, 10)
    d["spine"] = (-6, 0, 0)
    return d, (0, 0, 0), (("left_heel", "left_foot_index"), ("right_heel", "right_foot_index"), "x")


def _warrior3(rng, m, var):
    # Built as warrior3_left: balancing on the left leg, trunk and right leg level.
    d: dict = {}
    p = 80 + 10 * m
    d["left_hip"] = (-p, 0, 2)
    d["left_knee"] = (5, 0, 0)
    d["left_ankle"] = (-5, 0, 0)
    d["right_hip"] = (rng.uniform(-5, 5), 0, -2)
    d["right_ankle"] = (20, 0, 0)
    _sym(d, "shoulder", -172, 0, 8)          # arms reach forward past the head
    d["neck"] = (-15, 0, 0)
    return d, (p, 0, 0), None


def _triangle(rng, m, var):
    # Built as triangle_left: legs wide, the left foot turned out, the trunk tipped over
    # the left leg, left hand to the shin, right arm up, face towards the raised hand.
    d: dict = {}
    tilt = 50 + 15 * m
    root = (0, 0, -tilt)
    d["left_hip"] = _euler(_rot(root).T @ _rot((0, 0, 32), (0, 85, 0)))
    _aim(d, "left_ankle", (root, d["left_hip"]), (0, 85, 0))
    d["right_hip"] = _euler(_rot(root).T @ _rot((0, 0, -32), (0, 10, 0)))
    _aim(d, "right_ankle", (root, d["right_hip"]), (0, 10, 0))
    _sym(d, "shoulder", 0, 0, 90)
    d["neck"] = (0, -45, 0)
    return d, root, (("left_heel", "left_foot_index"), ("right_heel", "right_foot_index"), "z")


def _side_bend(rng, m, var):
    # Built as side_bend_left: bending to the left, the right arm arching over the head.
    d: dict = {}
    bend = 12 + 10 * m
    d["spine"] = (0, 0, -bend)
    d["chest"] = (0, 0, -bend)
    d["neck"] = (0, 0, -8)
    d["right_shoulder"] = (0, 0, -165)
    d["right_elbow"] = (0, 0, -10)
    d["left_shoulder"] = (0, 0, 4)
    _sym(d, "hip", 0, 0, 7)
    return d, (0, 0, 0), None


# --------------------------------------------------------------------------- exercise

def _high_knee(rng, m, var):
    # Built as high_knee_left: the left thigh up level, the opposite arm forward.
    d: dict = {}
    d["left_hip"] = (-85 - 15 * m, 0, 3)
    d["left_knee"] = (90 + 10 * m, 0, 0)
    d["left_ankle"] = (15, 0, 0)
    d["right_knee"] = (8, 0, 0)
    d["right_ankle"] = (20, 0, 0)          # on the ball of the foot
    d["right_shoulder"] = (-55, 0, -8)
    d["right_elbow"] = (-90, 0, 0)
    d["left_shoulder"] = (35, 0, 8)
    d["left_elbow"] = (-85, 0, 0)
    return d, (0, 0, 0), None


def _deadlift(rng, m, var):
    d: dict = {}
    p = 50 + 25 * m                           # trunk pitched forward from the hips, back flat
    knee = 15 + 10 * m
    _sym(d, "hip", -p - 8, 0, 5)
    _sym(d, "knee", knee)
    _sym(d, "ankle", 8 - knee)                # feet flat
    _sym(d, "shoulder", -p, 0, 6)             # arms hang straight down
    d["neck"] = (-25, 0, 0)                   # looking ahead
    return d, (p, 0, 0), None


def _bent_over_row(rng, m, var):
    d: dict = {}
    p = 65 + 10 * m
    _sym(d, "hip", -p - 10, 0, 6)
    _sym(d, "knee", 25)
    _sym(d, "ankle", -15)
    upper = 60 + 25 * m                       # elbows pulled up and back beside the trunk
    _sym(d, "shoulder", upper - p, 0, 14)
    _sym(d, "elbow", -upper - 5)              # forearms hang about vertical
    d["neck"] = (-20, 0, 0)
    return d, (p, 0, 0), None


def _quad_stretch(rng, m, var):
    # Built as quad_stretch_left: on the right leg, the left heel pulled to the buttock.
    d: dict = {}
    d["left_hip"] = (8, 0, 2)
    d["left_knee"] = (145, 0, 0)
    d["left_ankle"] = (30, 0, 0)
    d["left_shoulder"] = (28, 0, -8)
    d["left_elbow"] = (-10, 0, 0)
    d["right_shoulder"] = (rng.uniform(-90, -10), 0, -15)  # free arm out for balance
    d["right_hip"] = (0, 0, -2)
    return d, (0, 0, 0), None


def _pistol_squat(rng, m, var):
    # Built as pistol_squat_left: squatting on the left leg, the right leg out in front.
    d: dict = {}
    p = 25 + 10 * m
    thigh = -(95 + 20 * m)
    d["left_hip"] = (thigh - p, 0, 5)
    d["left_knee"] = (25 - thigh, 0, 0)
    d["left_ankle"] = (-25, 0, 0)
    d["right_hip"] = (-82 - 6 * m - p, 0, -3)
    d["right_ankle"] = (-10, 0, 0)
    _sym(d, "shoulder", -90 - p, 0, 8)        # arms level, forward for balance
    return d, (p, 0, 0), None


def _side_lunge(rng, m, var):
    # Built as side_lunge_left: sitting into the bent left leg, the right leg straight
    # out to the side, both feet flat.
    d: dict = {}
    p = 20 + 10 * m
    root = (p, 0, 0)
    d["left_hip"] = _euler(_rot(root).T @ _rot((0, 0, 40), (-60 - 20 * m, 0, 0)))
    d["left_knee"] = (90 + 25 * m, 0, 0)
    _aim(d, "left_ankle", (root, d["left_hip"], d["left_knee"]), (0, 20, 0))
    d["right_hip"] = _euler(_rot(root).T @ _rot((0, 0, -55 - 10 * m), (0, -20, 0)))
    _aim(d, "right_ankle", (root, d["right_hip"]), (0, -20, 0))
    _sym(d, "shoulder", -45 - p, 0, 25)       # hands together in front of the chest
    _sym(d, "elbow", -110, 0, -10)
    return d, root, (("left_heel", "left_foot_index"), ("right_heel", "right_foot_index"), "z")


# --------------------------------------------------------------------------- sport

def _front_kick(rng, m, var):
    # Built as front_kick_left: the left leg kicking straight out at hip height.
    d: dict = {}
    d["left_hip"] = (-70 - 20 * m, 0, 3)
    d["left_knee"] = (10 * (1 - m), 0, 0)
    d["left_ankle"] = (-15, 0, 0)
    d["right_knee"] = (15, 0, 0)
    d["right_ankle"] = (-10, 0, 0)
    d["spine"] = (-10, 0, 0)                  # leaning back against the kick
    _guard(d)
    return d, (0, 0, 0), None


def _boxing(rng, m, var):
    d: dict = {}
    d["left_hip"] = (-18, 0, 6)               # left foot forward, knees soft
    d["left_knee"] = (15, 0, 0)
    d["right_hip"] = (15, -20, -6)
    d["right_knee"] = (18, 0, 0)
    d["right_ankle"] = (20, 0, 0)             # back heel up
    _guard(d)
    if var == "boxing_cross":                 # the right fist out, the trunk turned into it
        d["right_shoulder"] = (-88, 0, 10)
        d["right_elbow"] = (-5, 0, 0)
        d["spine"] = (5, 20, 0)
        d["chest"] = (0, 15, 0)
    else:                                     # boxing_jab: the left fist out
        d["left_shoulder"] = (-88, 0, -5)
        d["left_elbow"] = (-5, 0, 0)
        d["spine"] = (5, -8, 0)
    return d, (0, 0, 0), None


def _throwing(rng, m, var):
    # Built as throwing_right_arm: the right hand cocked back above the shoulder, the left
    # arm pointing at the target, the left foot striding forward.
    d: dict = {}
    d["right_shoulder"] = (25, -90, -95)
    d["right_elbow"] = (-95 - 15 * m, 0, 0)
    d["left_shoulder"] = (-95, 0, 15)
    d["left_elbow"] = (-10, 0, 0)
    d["spine"] = (-5, -20, 0)
    d["chest"] = (0, -15, 0)
    d["left_hip"] = (-35, 0, 4)
    d["left_knee"] = (15, 0, 0)
    d["right_hip"] = (15, 0, -4)
    d["right_knee"] = (20, 0, 0)
    d["right_ankle"] = (20, 0, 0)
    return d, (0, 0, 0), (("left_heel",), ("right_foot_index",), "x")


def _dancer_pose(rng, m, var):
    # Built as dancer_pose_left: on the right leg, the trunk forward, the left foot held
    # high behind by the left hand, the right arm reaching forward and up.
    d: dict = {}
    p = 35 + 10 * m
    d["right_hip"] = (-p, 0, -2)
    d["left_hip"] = (60 + 10 * m, 0, 5)
    d["left_knee"] = (90, 0, 0)
    d["left_ankle"] = (25, 0, 0)
    d["left_shoulder"] = (70 + 5 * m, 0, 8)
    d["left_elbow"] = (-5, 0, 0)
    d["right_shoulder"] = (-175, 0, -8)
    d["neck"] = (-10, 0, 0)
    return d, (p, 0, 0), None


STANDING_CLASSES: dict[str, PoseTemplate] = {
    "standing_relaxed": PoseTemplate(
        "Everyday", ("standing_relaxed", "standing_hands_on_hips", "standing_looking_at_phone"),
        _standing_relaxed),
    "walking": PoseTemplate("Everyday", ("walking_left", "walking_right"), _walking,
                            mirrored=_LR({"walking_right"})),
    "running": PoseTemplate("Sport", ("running_left", "running_right"), _running,
                            mirrored=_LR({"running_right"})),
    "waving": PoseTemplate("Everyday", ("waving_left", "waving_right"), _waving,
                           mirrored=_LR({"waving_right"})),
    "arms_crossed": PoseTemplate("Everyday", ("arms_crossed", "arms_crossed_leaning"), _arms_crossed),
    "hands_on_head": PoseTemplate("Everyday", ("hands_on_head", "hands_behind_head"), _hands_on_head),
    "t_pose": PoseTemplate("Exercise", ("t_pose", "lateral_raise"), _t_pose, (0.4, 1.0)),
    "reach_up": PoseTemplate("Everyday", ("reach_up_both", "reach_up_left", "reach_up_right"), _reach_up,
                             mirrored=_LR({"reach_up_right"})),
    "toe_touch": PoseTemplate("Exercise", ("toe_touch", "toe_touch_wide"), _toe_touch),
    "chair_pose": PoseTemplate("Yoga", ("chair_pose_arms_up", "chair_pose_arms_forward"), _chair_pose),
    "warrior1": PoseTemplate("Yoga", ("warrior1_left", "warrior1_right"), _warrior1,
                             mirrored=_LR({"warrior1_right"})),
    "warrior3": PoseTemplate("Yoga", ("warrior3_left", "warrior3_right"), _warrior3,
                             mirrored=_LR({"warrior3_right"})),
    "triangle": PoseTemplate("Yoga", ("triangle_left", "triangle_right"), _triangle,
                             mirrored=_LR({"triangle_right"})),
    "side_bend": PoseTemplate("Exercise", ("side_bend_left", "side_bend_right"), _side_bend,
                              mirrored=_LR({"side_bend_right"})),
    "high_knee": PoseTemplate("Exercise", ("high_knee_left", "high_knee_right"), _high_knee,
                              mirrored=_LR({"high_knee_right"})),
    "deadlift": PoseTemplate("Exercise", ("deadlift",), _deadlift),
    "bent_over_row": PoseTemplate("Exercise", ("bent_over_row",), _bent_over_row),
    "quad_stretch": PoseTemplate("Exercise", ("quad_stretch_left", "quad_stretch_right"), _quad_stretch,
                                 mirrored=_LR({"quad_stretch_right"})),
    "pistol_squat": PoseTemplate("Exercise", ("pistol_squat_left", "pistol_squat_right"), _pistol_squat,
                                 mirrored=_LR({"pistol_squat_right"})),
    "side_lunge": PoseTemplate("Exercise", ("side_lunge_left", "side_lunge_right"), _side_lunge,
                               mirrored=_LR({"side_lunge_right"})),
    "front_kick": PoseTemplate("Sport", ("front_kick_left", "front_kick_right"), _front_kick,
                               mirrored=_LR({"front_kick_right"})),
    "boxing": PoseTemplate("Sport", ("boxing_jab", "boxing_cross"), _boxing),
    "throwing": PoseTemplate("Sport", ("throwing_right_arm", "throwing_left_arm"), _throwing,
                             mirrored=_LR({"throwing_left_arm"})),
    "dancer_pose": PoseTemplate("Yoga", ("dancer_pose_left", "dancer_pose_right"), _dancer_pose,
                                mirrored=_LR({"dancer_pose_right"})),
}
