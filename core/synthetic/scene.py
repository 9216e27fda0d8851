"""What a synthetic scene holds, and how one is drawn at random.

A ``Scene`` is a room (floor pattern, walls with windows and posters, yoga mats, a light),
1..N ``Person``s from ``core.synthetic.body`` each doing one exercise of
``core.synthetic.poses`` (or one pose of the backbone's pretraining family,
``core.synthetic.pretrain_poses``), a few ``Prop``s (ball, box, plant, kettlebell) and a camera.
``core.synthetic.render`` draws it.

``sample_scene`` draws every choice from one ``numpy.random.Generator``, in a fixed order
(people, camera, mats, props, room), so a seed gives the same scene on every machine. The
ranges it draws from are the named constants below; each part is its own function so a
video generator can keep the room and the people's looks while the bodies move.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from core.synthetic import body as B
from core.synthetic.camera import Camera, project, sample_camera
from core.synthetic.poses import CLASS_NAMES, POSE_CLASSES, PoseTemplate, sample_pose
from core.synthetic.pretrain_poses import PRETRAIN_CLASSES

# --------------------------------------------------------------------------- palettes

# Skin tones from light to dark (sRGB), jittered per person.
SKIN_TONES = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 140, 96),
                       (160, 105, 70), (120, 78, 50), (82, 54, 38)], dtype=np.float64)
HAIR_COLOURS = np.array([(20, 16, 14), (60, 40, 25), (110, 75, 40), (200, 160, 90),
                         (150, 60, 30), (170, 170, 170)], dtype=np.float64)
FLOOR_STYLES = ("tiles", "wood", "plain", "checker")
PROP_KINDS = ("ball", "box", "plant", "kettlebell")
DUMBBELL_CLASSES = ("bicep_curl", "overhead_press")
# The pose families people come from: the demo's fifteen classes and the backbone's
# pretraining classes. Their names are disjoint, so a class name says its family.
POSE_FAMILIES: tuple[Mapping[str, PoseTemplate], ...] = (POSE_CLASSES, PRETRAIN_CLASSES)

# --------------------------------------------------------------------------- sampling ranges

TIGHT_FRAMING = 0.25          # share of one-person scenes framed so tightly that joints leave the frame
TIGHT_FILL = (1.4, 2.1)       # ... how many times the people fill the view then
TIGHT_MIN_DISTANCE = 1.6      # ... and the closest camera (metres)
IN_FRAME_SHARE = 0.7          # share of every person's joints the camera must keep in frame
IN_FRAME_SHARE_TIGHT = 0.6
PEOPLE_SPREAD = 2.2           # other people stand within +-this (metres) of the first
PEOPLE_GAP = 0.35             # closest two bodies' footprints may come (metres)
LONG_SLEEVES, SHORTS = 0.35, 0.4   # shares of people wearing them
DUMBBELL_SHARE = 0.85         # share of curls / presses done with dumbbells
MAT_SHARE = 0.3               # share of HIIT people on a mat (every Yoga pose has one)
PROPS_MAX = 3
PROP_SIZES = {"ball": (0.15, 0.33), "box": (0.25, 0.55), "plant": (0.5, 1.0), "kettlebell": (0.12, 0.18)}
PROP_IN_FRONT = 0.45          # share of props put between a person and the camera
PANELS_MAX = 3                # windows and posters on the walls
WINDOW_SHARE = 0.4
LIGHT_ELEVATION_DEG = (35, 80)
AMBIENT = (0.45, 0.65)        # share of light that does not depend on orientation
SENSOR_NOISE = (0.5, 3.0)     # std of the sensor noise, 8-bit levels


def hsv_colour(rng: np.random.Generator, s_range=(0.3, 0.9), v_range=(0.25, 0.95)) -> np.ndarray:
    h = rng.uniform(0, 1)
    s = rng.uniform(*s_range)
    v = rng.uniform(*v_range)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


# --------------------------------------------------------------------------- scene

@dataclass
class Person:
    shape: B.BodyShape
    class_name: str                # pose category, e.g. "side_plank"
    variation: str                 # e.g. "side_plank_left"
    category: str                  # "HIIT" or "Yoga"
    joints: np.ndarray             # (len(ALL_JOINTS), 3) world positions, metres
    skin: np.ndarray               # (3,) RGB
    hair: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray
    long_sleeves: bool
    shorts: bool
    heading: float                 # radians about y (for the mat under the person)
    dumbbells: bool = False        # holds a dumbbell in each hand (curls, presses)
    dumbbell_colour: np.ndarray = field(default_factory=lambda: np.array([55, 55, 60.0]))


@dataclass
class Prop:
    kind: str                      # one of PROP_KINDS
    position: np.ndarray           # (3,) centre of its footprint on the floor
    size: float                    # metres (radius of a ball, side of a box...)
    colour: np.ndarray
    yaw: float = 0.0


@dataclass
class Scene:
    camera: Camera
    people: list[Person]
    props: list[Prop] = field(default_factory=list)
    floor_style: str = "plain"     # one of FLOOR_STYLES
    floor_colours: np.ndarray = field(default_factory=lambda: np.array([[150, 140, 130], [120, 110, 100.0]]))
    floor_scale: float = 0.5       # tile / plank size, metres
    wall_colour: np.ndarray = field(default_factory=lambda: np.array([200, 200, 195.0]))
    room_half: float = 6.0         # the room is a box |x|,|z| < room_half around room_centre
    room_centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.8, 0.5]) / np.linalg.norm([0.3, 0.8, 0.5]))
    ambient: float = 0.55          # share of light that does not depend on orientation
    # (centre xz, yaw, colour) of yoga mats (2.0 x 0.64 m) lying on the floor
    mats: list[tuple[np.ndarray, float, np.ndarray]] = field(default_factory=list)
    # (wall 0..3 = -x, +x, -z, +z side; centre along the wall from room_centre, width,
    # bottom, top (metres), colour) of windows and posters
    wall_panels: list[tuple[int, float, float, float, float, np.ndarray]] = field(default_factory=list)
    noise: float = 0.0             # sensor noise std, 8-bit levels


# --------------------------------------------------------------------------- people

def sample_look(rng: np.random.Generator, class_name: str) -> dict:
    """A person's appearance (skin, hair, clothes, dumbbells): the ``Person`` fields that
    do not depend on the pose."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05, 3)
    return dict(
        skin=np.clip(skin, 0, 255),
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        shirt=hsv_colour(rng), pants=hsv_colour(rng, (0.05, 0.7), (0.1, 0.7)),
        shoes=hsv_colour(rng, (0.0, 0.6), (0.2, 1.0)),
        long_sleeves=bool(rng.random() < LONG_SLEEVES), shorts=bool(rng.random() < SHORTS),
        dumbbells=class_name in DUMBBELL_CLASSES and bool(rng.random() < DUMBBELL_SHARE),
        dumbbell_colour=(np.array([55, 55, 60.0]) if rng.random() < 0.6
                         else hsv_colour(rng, (0.5, 0.9), (0.3, 0.7))))


def pose_family(class_name: str) -> Mapping[str, PoseTemplate]:
    """The family (``POSE_FAMILIES``) that holds ``class_name``."""
    for family in POSE_FAMILIES:
        if class_name in family:
            return family
    known = ", ".join(sorted(c for f in POSE_FAMILIES for c in f))
    raise ValueError(f"unknown pose class {class_name!r}; known: {known}")


def sample_person(rng: np.random.Generator, class_name: str, position_xz, heading: float) -> Person:
    family = pose_family(class_name)
    shape = B.sample_shape(rng)
    sample = sample_pose(class_name, rng, shape=shape, family=family)
    joints = B.pose_body(shape, sample.pose, sample.root_rotation, position_xz, heading)
    return Person(shape=shape, class_name=class_name, variation=sample.variation,
                  category=family[class_name].category, joints=joints, heading=heading,
                  **sample_look(rng, class_name))


def _footprint_clear(joints: np.ndarray, others: list[Person], gap: float = PEOPLE_GAP) -> bool:
    for o in others:
        d = np.linalg.norm(joints[:, None, [0, 2]] - o.joints[None, :, [0, 2]], axis=-1)
        if d.min() < gap:
            return False
    return True


def sample_people(rng: np.random.Generator, people_max: int, classes: tuple[str, ...]) -> list[Person]:
    """1..people_max people, each its own class and heading, footprints apart. ``classes``
    may come from any of ``POSE_FAMILIES``."""
    n_people = int(rng.integers(1, max(1, people_max) + 1))
    people: list[Person] = []
    for i in range(n_people):
        cls = classes[int(rng.integers(len(classes)))]
        heading = float(rng.uniform(-math.pi, math.pi))
        for _ in range(20):
            xz = (0.0, 0.0) if i == 0 else tuple(rng.uniform(-PEOPLE_SPREAD, PEOPLE_SPREAD, 2))
            p = sample_person(rng, cls, xz, heading)
            if _footprint_clear(p.joints, people):
                people.append(p)
                break
    return people


def extent(people: list[Person]) -> tuple[np.ndarray, float]:
    """(centre (3,), radius) of a sphere around every person's joints."""
    pts = np.concatenate([p.joints for p in people])
    lo, hi = pts.min(0), pts.max(0)
    return 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo)) + 0.1


def in_frame_fraction(cam: Camera, joints: np.ndarray) -> float:
    """Share of a body's keypoint joints that project inside the image, in front of it."""
    uv, z = project(cam, joints[B.BODY_FROM_ALL])
    inside = (z > 0.05) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    return float(inside.mean())


def frame_people(rng: np.random.Generator, people: list[Person], size: int) -> Camera:
    """A camera that keeps most of every person's joints in the frame (up to 10 tries).
    A quarter of the one-person scenes are framed tightly, so that hands, feet or the
    head leave the picture (visibility 0), as in real photos."""
    centre, radius = extent(people)
    tight = len(people) == 1 and rng.random() < TIGHT_FRAMING
    share = IN_FRAME_SHARE_TIGHT if tight else IN_FRAME_SHARE
    for _ in range(10):
        cam = sample_camera(rng, centre, width=size, height=size, radius=radius,
                            **({"fill_range": TIGHT_FILL, "min_distance": TIGHT_MIN_DISTANCE} if tight else {}))
        if all(in_frame_fraction(cam, p.joints) >= share for p in people):
            break
    return cam


# --------------------------------------------------------------------------- room and props

def sample_mats(rng: np.random.Generator, people: list[Person]) -> list:
    """A yoga mat under every Yoga pose and some others, along the body's longest extent."""
    mats = []
    for p in people:
        if p.category == "Yoga" or rng.random() < MAT_SHARE:
            pel = p.joints[B.JOINT_INDEX["pelvis"]]
            xz = p.joints[:, [0, 2]] - pel[[0, 2]]
            ext = xz[np.argmax(np.linalg.norm(xz, axis=1))]
            yaw = math.atan2(ext[1], ext[0]) if np.linalg.norm(ext) > 0.4 else p.heading
            mats.append((pel[[0, 2]].copy(), yaw, hsv_colour(rng, (0.3, 0.8), (0.3, 0.9))))
    return mats


def sample_props(rng: np.random.Generator, people: list[Person], cam: Camera) -> list[Prop]:
    """0..PROPS_MAX props; about half stand between a person and the camera (occluders)."""
    centre, _ = extent(people)
    props = []
    for _ in range(int(rng.integers(0, PROPS_MAX + 1))):
        kind = PROP_KINDS[int(rng.integers(len(PROP_KINDS)))]
        # one draw per kind, then the chosen one: the order of draws every dataset was made with
        size_m = {k: rng.uniform(*r) for k, r in PROP_SIZES.items()}[kind]
        if rng.random() < PROP_IN_FRONT:
            p = people[int(rng.integers(len(people)))]
            pel = p.joints[B.JOINT_INDEX["pelvis"]]
            to_cam = cam.position - pel
            to_cam[1] = 0
            to_cam /= np.linalg.norm(to_cam) + 1e-9
            pos = pel + to_cam * rng.uniform(0.6, 1.3) + np.r_[rng.normal(0, 0.3), 0, rng.normal(0, 0.3)]
        else:
            pos = centre + np.r_[rng.uniform(-2.5, 2.5), 0, rng.uniform(-2.5, 2.5)]
        pos[1] = 0.0
        cam_xz = np.linalg.norm((pos - cam.position)[[0, 2]])
        if cam_xz < 0.8 or not _footprint_clear(pos[None], people, size_m + 0.15):
            continue
        props.append(Prop(kind, pos, float(size_m),
                          hsv_colour(rng, (0.4, 1.0), (0.4, 1.0)), float(rng.uniform(0, math.pi))))
    return props


def sample_room(rng: np.random.Generator, centre: np.ndarray, radius: float, camera_positions) -> dict:
    """Floor, walls, panels, light and sensor noise: the ``Scene`` fields of the room.

    The room is a box around ``centre`` big enough to hold every camera position given
    ((3,) or (T, 3): a camera outside would see the walls' backs)."""
    style = FLOOR_STYLES[int(rng.integers(len(FLOOR_STYLES)))]
    base = hsv_colour(rng, (0.05, 0.45), (0.35, 0.85))
    if style == "wood":
        base = np.array([150, 105, 65]) * rng.uniform(0.7, 1.3)
    floor_colours = np.clip(np.stack([base, base * rng.uniform(0.7, 0.92)]), 0, 255)
    elev = math.radians(rng.uniform(*LIGHT_ELEVATION_DEG))
    az = rng.uniform(-math.pi, math.pi)
    light = np.array([math.cos(elev) * math.sin(az), math.sin(elev), math.cos(elev) * math.cos(az)])
    panels = []
    for _ in range(int(rng.integers(0, PANELS_MAX + 1))):
        if rng.random() < WINDOW_SHARE:   # a window: bright, sky-ish
            colour = np.array([215, 230, 245.0]) * rng.uniform(0.9, 1.05)
            y0, y1 = rng.uniform(0.8, 1.1), rng.uniform(2.0, 2.5)
        else:                    # a poster or a picture
            colour = hsv_colour(rng, (0.2, 0.9), (0.2, 0.95))
            y0 = rng.uniform(1.1, 1.6)
            y1 = y0 + rng.uniform(0.4, 0.9)
        panels.append((int(rng.integers(4)), float(rng.uniform(-3, 3)), float(rng.uniform(0.5, 1.6)),
                       float(y0), float(y1), colour))
    room_centre = np.array([centre[0], 0.0, centre[2]]) + np.r_[rng.uniform(-1, 1), 0, rng.uniform(-1, 1)]
    cams = np.asarray(camera_positions, dtype=np.float64).reshape(-1, 3)
    cam_off = np.abs((cams - room_centre)[:, [0, 2]]).max()
    room_half = float(max(4.0, radius + 2.5, cam_off + 0.5) + rng.uniform(0, 2))
    floor_scale = float(rng.uniform(0.3, 0.8) if style != "wood" else rng.uniform(0.12, 0.22))
    return dict(floor_style=style, floor_colours=floor_colours, floor_scale=floor_scale,
                wall_colour=hsv_colour(rng, (0.0, 0.35), (0.55, 0.95)),
                room_half=room_half, room_centre=room_centre, light=light,
                ambient=float(rng.uniform(*AMBIENT)), wall_panels=panels,
                noise=float(rng.uniform(*SENSOR_NOISE)))


def sample_scene(rng: np.random.Generator, *, size: int = 224, people_max: int = 3,
                 classes: tuple[str, ...] | None = None) -> Scene:
    """A random scene: 1..people_max people (each its own class), props, room, camera.
    ``classes`` defaults to the fifteen exercise classes; the pretraining family's
    (``core.synthetic.pretrain_poses.PRETRAIN_CLASS_NAMES``) work as well."""
    people = sample_people(rng, people_max, classes or CLASS_NAMES)
    cam = frame_people(rng, people, size)
    mats = sample_mats(rng, people)
    props = sample_props(rng, people, cam)
    centre, radius = extent(people)
    return Scene(camera=cam, people=people, props=props, mats=mats,
                 **sample_room(rng, centre, radius, cam.position))
