"""The backbone's pretraining pose family: 40 classes, none of them a demo class.

The demo (``core.synthetic.poses``: ``POSE_CLASSES``, ``CLASS_NAMES``) asks whether a
classifier tells its fifteen exercise classes apart. A backbone pretrained on those same
classes answers that question before the demo runs, so the shipped backbone is
pretrained on this *second* family instead: everyday, sport, yoga and exercise poses that
cover the body's configurations (standing, leaning, balancing, kneeling, sitting, lying,
upside down) under different names. Its class head (2048 -> ``len(PRETRAIN_CLASS_NAMES)``
logits) ships as the backbone's frozen final layer, the way ImageNet's fc gives logits of
1000 classes that are not the downstream task's. No demo, test or default dataset draws
from this family.

``PRETRAIN_CLASSES`` maps a name to a ``PoseTemplate`` exactly like ``POSE_CLASSES``;
``sample_pose(name, rng, family=PRETRAIN_CLASSES)`` samples one, and
``core.synthetic.scene.sample_scene(rng, classes=PRETRAIN_CLASS_NAMES)`` draws scenes of
them. The standing classes are in ``core.synthetic.pretrain_standing``; the floor,
kneeling, lying and inverted ones below. Lying bodies use the root orientations of
``poses`` (``_PRONE`` / ``_SUPINE``) and the two-group ``support`` levelling that keeps,
say, shoulders and heels both on the floor.
"""
from __future__ import annotations

from core.synthetic.poses import _HANDS, _PRONE, _SUPINE, _UPPER, POSE_CLASSES, PoseTemplate, _sym
from core.synthetic.pretrain_standing import _FEET, STANDING_CLASSES, _aim, _euler, _rot

_HIPS = ("left_hip", "right_hip")
_HEELS = ("left_heel", "right_heel")
_KNEES = ("left_knee", "right_knee")
# Kneeling: on the knees and on the tops of the feet (shins flat on the floor) ...
_INSTEPS = ("left_ankle", "right_ankle", "left_foot_index", "right_foot_index")
_KNEELING = (_KNEES, _INSTEPS, "x")
# ... or, reaching down to the floor, on the knees and on the feet or the hands,
# whichever are lower (the body tips until it rests on them, not on the hands alone).
_KNEELING_HANDS = (_KNEES, _INSTEPS + _HANDS, "x")


# --------------------------------------------------------------------------- sitting

def _cross_legged(rng, m, var):
    d: dict = {}
    for s, x, knee in (("left", 1, 128), ("right", -1, 136)):
        # Thigh forward and out, turned out about its own axis so that the knee's hinge
        # is about vertical and the shin folds across in front of the other one (the
        # two knee angles differ so the shins pass one above the other).
        d[f"{s}_hip"] = _euler(_rot((0, 50 * x, 0), (-88 - 6 * m, 0, 0), (0, 90 * x, 0)))
        d[f"{s}_knee"] = (knee, 0, 0)
    d["spine"] = (5, 0, 0)
    if var == "cross_legged_hands_in_lap":
        _sym(d, "shoulder", -20, 0, 8)
        _sym(d, "elbow", -70, 0, 0)
    else:  # cross_legged_hands_on_knees
        _sym(d, "shoulder", -28, 0, 20)
        _sym(d, "elbow", -30, 0, 0)
    return d, (0, 0, 0), None


def _seated_forward_fold(rng, m, var):
    d: dict = {}
    f = 40 + 15 * m                           # trunk folded over the straight legs (not into them)
    _sym(d, "hip", -90 - f, 0, 4)
    _sym(d, "ankle", -5)                      # toes up
    d["spine"] = (15, 0, 0)
    d["chest"] = (10, 0, 0)
    d["neck"] = (5, 0, 0)
    _sym(d, "shoulder", -100 - (f + 25), 0, 8)  # hands reach for the feet, a little up
    return d, (f, 0, 0), (_HIPS, _HEELS, "x")


def _boat_pose(rng, m, var):
    d: dict = {}
    lean = 35 + 10 * m                        # trunk leans back, balancing on the seat
    if var == "boat_pose_bent_knees":
        _sym(d, "hip", -135 + lean, 0, 4)
        _sym(d, "knee", 45)                   # shins level
    else:
        _sym(d, "hip", -130 + lean, 0, 4)
        _sym(d, "ankle", 20)
    _sym(d, "shoulder", -90 + lean, 0, 8)     # arms reach forward, level
    return d, (-lean, 0, 0), None


def _hugging_knees(rng, m, var):
    d: dict = {}
    lean = 5 + 10 * m
    # Thighs 60 degrees up towards the chest, shins leaning forward to the feet flat on
    # the floor ahead of the seat (both legs the same length, the knees end up high).
    _sym(d, "hip", -150 + lean, 0, 6)
    _sym(d, "knee", 120)
    _sym(d, "ankle", 30)
    _sym(d, "shoulder", -60, -30, 25)         # arms around the shins, hands meeting in front
    _sym(d, "elbow", -30, 0, 0)
    d["spine"] = (20, 0, 0)
    d["neck"] = (10, 0, 0)
    return d, (-lean, 0, 0), (_HIPS, _FEET, "x")


def _russian_twist(rng, m, var):
    # Built as russian_twist_left: leaning back on the seat, feet up, the trunk turned to
    # the left and both hands together by the left hip.
    d: dict = {}
    lean = 35 + 10 * m
    _sym(d, "hip", -140 + lean, 0, 6)
    _sym(d, "knee", 50)
    d["spine"] = (0, 25 + 10 * m, 0)
    d["chest"] = (0, 20, 0)
    _sym(d, "shoulder", -30, -30, -5)         # hands together in front, turned with the trunk
    _sym(d, "elbow", -70)
    return d, (-lean, 0, 0), None


def _malasana(rng, m, var):
    d: dict = {}
    p = 20 + 10 * m
    root = (p, 0, 0)
    for s, x in (("left", 1), ("right", -1)):
        # Thighs forward-out and a little up, knees over the turned-out toes, heels down.
        d[f"{s}_hip"] = _euler(_rot(root).T @ _rot((0, 35 * x, 0), (-115 - 10 * m, 0, 0)))
        d[f"{s}_knee"] = (145 + 10 * m, 0, 0)
        _aim(d, f"{s}_ankle", (root, d[f"{s}_hip"], d[f"{s}_knee"]), (0, 35 * x, 0))
    if var == "malasana_arms_forward":
        _sym(d, "shoulder", -90 - p, 0, 10)
    else:  # malasana_prayer: palms together, elbows against the inner knees
        _sym(d, "shoulder", -40, 0, 35)
        _sym(d, "elbow", -110, 0, -15)
    return d, root, None


# --------------------------------------------------------------------------- kneeling

def _kneeling_upright(rng, m, var):
    d: dict = {}
    _sym(d, "hip", 0, 0, 4)
    _sym(d, "knee", 90)                       # shins flat on the floor behind
    _sym(d, "ankle", 88)                      # tops of the feet on the floor
    if var == "kneeling_praying":
        _sym(d, "shoulder", -35, 0, 25)
        _sym(d, "elbow", -115, 0, -20)
        d["neck"] = (15, 0, 0)
    else:
        _sym(d, "shoulder", 0, 0, 8)
        _sym(d, "elbow", -10)
    return d, (0, 0, 0), _KNEELING


def _camel(rng, m, var):
    d: dict = {}
    lean = 27 + 3 * m                         # the pelvis tips back over vertical thighs ...
    _sym(d, "hip", lean + 10, 0, 5)           # ... pushed a little forward of the knees
    _sym(d, "knee", 80)                       # shins flat on the floor behind
    _sym(d, "ankle", 88)
    bend = 28 + 2 * m                         # (a narrow range: the hands must meet the heels)
    d["spine"] = (-bend, 0, 0)
    d["chest"] = (-bend, 0, 0)
    d["neck"] = (-30, 0, 0)
    _sym(d, "shoulder", lean + 2 * bend + 30, 0, 12)  # hands reach back down to the heels
    return d, (-lean, 0, 0), _KNEELING_HANDS


def _childs_pose(rng, m, var):
    d: dict = {}
    # Sitting on the heels (thighs on the shins), the trunk forward and a little down
    # over the thighs, the forehead on the floor in front of the knees.
    p = 75 + 8 * m
    _sym(d, "hip", -65 - p, 0, 8)
    _sym(d, "knee", 155)                      # shins flat behind
    _sym(d, "ankle", 90)                      # tops of the feet on the floor
    d["spine"] = (12, 0, 0)
    d["chest"] = (8, 0, 0)
    d["neck"] = (20, 0, 0)                    # forehead down to the floor
    if var == "childs_pose_arms_back":        # arms alongside the legs, palms up
        _sym(d, "shoulder", 100 - (p + 20), 0, 8)
    else:                                     # arms stretched forward on the floor
        _sym(d, "shoulder", -92 - (p + 20), 0, 12)
    # Not levelled: the angles above put knees, shins and forehead on the floor
    # together, which one tilt could not; the arms rest just above it.
    return d, (p, 0, 0), None


# --------------------------------------------------------------------------- lying

def _savasana(rng, m, var):
    d: dict = {}
    _sym(d, "hip", 0, 25, 7)                  # legs apart, feet falling out
    if var == "savasana_arms_overhead":
        # Overhead, resting a little above the floor: noise and the levelling tilt would
        # push arms laid exactly flat into it, and the body would float on its hands.
        _sym(d, "shoulder", -160, 0, 18)
    else:
        # Arms out a little, palms up, the hands a little off the floor: angle noise in
        # chest, shoulder and elbow moves them by +-0.15 m, and a hand pushed into the
        # floor would lift the whole body (the levelling knows only back and heels).
        _sym(d, "shoulder", -15, 40, 22)
    return d, _SUPINE, (_UPPER, _HEELS, "x")


def _lying_on_side(rng, m, var):
    # Built as lying_on_side_right (on the right side, like side_plank_right): the lower
    # arm stretched out under the head, the upper hand on the floor in front, knees bent.
    # The lower arm a little past overhead, i.e. up off the floor, so that angle noise
    # does not push the hand into it and lift the body.
    d: dict = {"right_shoulder": (-5, 0, -192), "left_shoulder": (-75, -35, 0)}
    d["left_elbow"] = (-40, 0, 0)
    d["right_hip"] = (-30 - 10 * m, 0, 0)
    d["right_knee"] = (40, 0, 0)
    d["left_hip"] = (-45 - 10 * m, 0, 0)
    d["left_knee"] = (50, 0, 0)
    d["neck"] = (0, 0, 25)                    # the head rests on the lower arm
    return d, (0, 0, 90), None


def _leg_raise(rng, m, var):
    d: dict = {}
    _sym(d, "hip", -45 - 40 * m, 0, 4)
    _sym(d, "ankle", 20)
    _sym(d, "shoulder", -15, 0, 12)           # arms along the floor, hands as savasana's
    return d, _SUPINE, (_UPPER, _HIPS, "x")


def _dead_bug(rng, m, var):
    # Built as dead_bug_left: the left arm and the right leg reach out low, the right arm
    # up and the left knee over the hip.
    d: dict = {}
    d["left_shoulder"] = (-165, 0, 8)
    d["right_shoulder"] = (-90, 0, -5)
    d["left_hip"] = (-90, 0, 4)
    d["left_knee"] = (90, 0, 0)
    d["right_hip"] = (-20 - 10 * m, 0, -4)
    d["right_ankle"] = (15, 0, 0)
    return d, _SUPINE, (_UPPER, _HIPS, "x")


def _cobra(rng, m, var):
    # The pelvis tips up from the floor (root pitch below _PRONE's 90, the hips open by as
    # much so the legs stay flat) and the spine arches: the shoulders come up ~0.35-0.4 m,
    # as high as the bent arms below them are long, so hands (or forearms) and hips rest
    # on the floor together. Not levelled: the hands are too close to the pelvis for a
    # tilt about it to lift them, it would only swing the legs up.
    d: dict = {}
    if var == "sphinx":                       # propped on the forearms, elbows by the shoulders
        lift, bend = 20 + 4 * m, 20 + 4 * m
        trunk = 90 - lift - 2 * bend           # the upper trunk's pitch from vertical
        _sym(d, "shoulder", -25 - trunk, 0, 10)  # upper arms about vertical
        _sym(d, "elbow", -65)                    # forearms flat on the floor
    else:                                     # hands flat beside the ribs, elbows bent back
        lift, bend = 25 + 5 * m, 30 + 4 * m
        trunk = 90 - lift - 2 * bend           # the upper trunk's pitch from vertical
        _sym(d, "shoulder", 70 - trunk, 0, 12)  # upper arms down and back
        _sym(d, "elbow", -85)                   # forearms down and forward
        _sym(d, "wrist", -75)                   # palms flat, fingers forward
    _sym(d, "hip", lift, 0, 5)
    _sym(d, "ankle", 85)                      # tops of the feet on the floor
    d["spine"] = (-bend, 0, 0)
    d["chest"] = (-bend, 0, 0)
    d["neck"] = (-5, 0, 0)
    return d, (90 - lift, 0, 0), None


# --------------------------------------------------------------------------- supported

def _handstand(rng, m, var):
    d: dict = {}
    _sym(d, "shoulder", -178, 0, 8)           # arms straight overhead, i.e. down to the floor
    _sym(d, "wrist", -85)                     # palms flat
    _sym(d, "ankle", 35)                      # toes pointed
    if var == "handstand_split":
        d["left_hip"] = (-45 - 15 * m, 0, 0)
        d["right_hip"] = (45 + 15 * m, 0, 0)
    d["neck"] = (-20, 0, 0)
    return d, (180, 0, 0), (("left_index", "left_pinky"), ("right_index", "right_pinky"), "z")


def _mountain_climber(rng, m, var):
    # Built as mountain_climber_left: a high plank with the left knee driven to the chest.
    d: dict = {}
    _sym(d, "shoulder", -72, 0, 0)
    _sym(d, "wrist", -80, 0, 0)
    _sym(d, "ankle", -25)
    d["left_hip"] = (-120 - 10 * m, 0, 4)
    d["left_knee"] = (135, 0, 0)
    d["left_ankle"] = (75, 0, 0)              # toes pointed back, clear of the floor
    return d, _PRONE, (_HANDS, ("right_foot_index",), "x")


_LR = frozenset
FLOOR_CLASSES: dict[str, PoseTemplate] = {
    "cross_legged": PoseTemplate("Everyday", ("cross_legged_hands_on_knees", "cross_legged_hands_in_lap"),
                                 _cross_legged),
    "seated_forward_fold": PoseTemplate("Yoga", ("seated_forward_fold",), _seated_forward_fold),
    "boat_pose": PoseTemplate("Yoga", ("boat_pose", "boat_pose_bent_knees"), _boat_pose),
    "hugging_knees": PoseTemplate("Everyday", ("hugging_knees",), _hugging_knees),
    "russian_twist": PoseTemplate("Exercise", ("russian_twist_left", "russian_twist_right"), _russian_twist,
                                  mirrored=_LR({"russian_twist_right"})),
    "malasana": PoseTemplate("Yoga", ("malasana_prayer", "malasana_arms_forward"), _malasana),
    "kneeling_upright": PoseTemplate("Everyday", ("kneeling_upright", "kneeling_praying"), _kneeling_upright),
    "camel": PoseTemplate("Yoga", ("camel",), _camel),
    "childs_pose": PoseTemplate("Yoga", ("childs_pose_arms_forward", "childs_pose_arms_back"), _childs_pose),
    "savasana": PoseTemplate("Yoga", ("savasana", "savasana_arms_overhead"), _savasana),
    "lying_on_side": PoseTemplate("Everyday", ("lying_on_side_left", "lying_on_side_right"), _lying_on_side,
                                  mirrored=_LR({"lying_on_side_left"})),
    "leg_raise": PoseTemplate("Exercise", ("leg_raise",), _leg_raise),
    "dead_bug": PoseTemplate("Exercise", ("dead_bug_left", "dead_bug_right"), _dead_bug,
                             mirrored=_LR({"dead_bug_right"})),
    "cobra": PoseTemplate("Yoga", ("cobra", "sphinx"), _cobra),
    "handstand": PoseTemplate("Sport", ("handstand", "handstand_split"), _handstand),
    "mountain_climber": PoseTemplate("Exercise", ("mountain_climber_left", "mountain_climber_right"),
                                     _mountain_climber, mirrored=_LR({"mountain_climber_right"})),
}

PRETRAIN_CLASSES: dict[str, PoseTemplate] = {**STANDING_CLASSES, **FLOOR_CLASSES}
PRETRAIN_CLASS_NAMES: tuple[str, ...] = tuple(sorted(PRETRAIN_CLASSES))
# The point of the family: it shares no class with the demo's.
assert not set(PRETRAIN_CLASSES) & set(POSE_CLASSES)
assert len(PRETRAIN_CLASSES) == len(STANDING_CLASSES) + len(FLOOR_CLASSES)
