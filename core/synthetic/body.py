"""A procedural 3D human body: skeleton, body shapes, joint-angle poses, camera.

Pure numpy. Used by the synthetic image renderer (``core.synthetic.images``) and, animated
through repetitions, by the synthetic video sequences of the temporal task.

Conventions (everything below relies on them):

* World coordinates in metres, **y up**, the floor is the plane y = 0.
* In the rest pose the body stands upright at the origin's vertical, facing **+z**, its
  left side towards **+x** (so a camera on the +z axis sees the person's front, and the
  person's left appears on the image's right).
* A pose is a ``dict`` joint name -> 3 Euler angles ``(rx, ry, rz)`` in **radians**. The
  joint's local rotation is ``Rz(rz) @ Ry(ry) @ Rx(rx)`` (x applied first), expressed in
  its parent's frame, and it turns the bones *below* that joint (the rotation at
  ``left_shoulder`` swings the upper arm, at ``left_elbow`` the forearm). Missing joints
  are at rest. For a limb hanging down (arms, legs), ``rx < 0`` swings it forward
  (shoulder/hip flexion, elbow flexion), ``rx > 0`` backward (knee flexion); ``rz > 0``
  moves a *left* limb out to the side (abduction), ``rz < 0`` a right one. For the
  spine/neck (pointing up), ``rx > 0`` bends forward, ``ry > 0`` turns towards +x (the
  body's left). ``mirror_pose`` swaps sides (left <-> right, ry and rz negated).
* The root (``pelvis``) has its own transform, separate from the pose: a rotation
  matrix (3, 3) applied to the whole body (bodies lie on the floor for plank, pushup,
  bridge, crunch...) and a position. ``pose_body`` applies a heading (yaw about y), puts
  the body at a floor position and lowers it so that its lowest point touches the floor.
* Blending is linear in Euler angles: fine for the moderate angle differences inside one
  exercise's movement, which is what ``blend_poses`` is for.

Joint sets: ``ALL_JOINTS`` (the skeleton, internal joints such as pelvis/spine/chest/
neck/head included) and ``BODY_JOINTS`` from ``core.keypoints`` (every keypoint either
task annotates); ``BODY_FROM_ALL`` maps the first onto the second.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from core.keypoints import BODY_JOINTS, side_twin

Pose = dict[str, np.ndarray]  # joint name -> (rx, ry, rz) radians, see module docstring

# (joint, parent) in topological order; the root has parent None.
SKELETON: tuple[tuple[str, str | None], ...] = (
    ("pelvis", None),
    ("spine", "pelvis"), ("chest", "spine"), ("neck", "chest"), ("head", "neck"),
    ("nose", "head"), ("left_eye", "head"), ("right_eye", "head"),
    ("left_ear", "head"), ("right_ear", "head"),
    *((f"{s}_{j}", p) for s in ("left", "right") for j, p in (
        ("shoulder", "chest"), ("elbow", f"{s}_shoulder"), ("wrist", f"{s}_elbow"),
        ("pinky", f"{s}_wrist"), ("index", f"{s}_wrist"), ("thumb", f"{s}_wrist"),
        ("hip", "pelvis"), ("knee", f"{s}_hip"), ("ankle", f"{s}_knee"),
        ("heel", f"{s}_ankle"), ("foot_index", f"{s}_ankle"))),
)
ALL_JOINTS: tuple[str, ...] = tuple(j for j, _ in SKELETON)
JOINT_INDEX: dict[str, int] = {j: i for i, j in enumerate(ALL_JOINTS)}
PARENTS: np.ndarray = np.array([-1 if p is None else JOINT_INDEX[p] for _, p in SKELETON])
BONES: tuple[tuple[str, str], ...] = tuple((p, j) for j, p in SKELETON if p is not None)
BODY_FROM_ALL: np.ndarray = np.array([JOINT_INDEX[n] for n in BODY_JOINTS])
assert set(BODY_JOINTS) <= set(ALL_JOINTS)


# --------------------------------------------------------------------------- shapes

@dataclass(frozen=True)
class BodyShape:
    """Body proportions. Lengths are fractions of ``height`` (after Drillis & Contini)
    scaled by the per-segment factors, so every bone length follows from these fields."""

    height: float = 1.72         # standing height, metres
    leg: float = 1.0             # scale of thigh + shin
    arm: float = 1.0             # scale of upper arm + forearm + hand
    torso: float = 1.0           # scale of pelvis -> neck
    shoulder_width: float = 1.0  # scale of the distance between the shoulder joints
    hip_width: float = 1.0       # scale of the distance between the hip joints
    head: float = 1.0            # scale of the head (offsets of nose, eyes, ears)
    girth: float = 1.0           # limb/torso thickness for drawing (1 = average build)

    def bone_offsets(self) -> np.ndarray:
        """(len(ALL_JOINTS), 3) rest offset of each joint from its parent, metres."""
        h = self.height
        leg, arm, tor, hd = h * self.leg, h * self.arm, h * self.torso, h * self.head
        sw, hw = 0.130 * h * self.shoulder_width, 0.052 * h * self.hip_width
        off = {
            "pelvis": (0.0, 0.0, 0.0),
            "spine": (0.0, 0.100 * tor, -0.010 * tor),
            "chest": (0.0, 0.120 * tor, 0.005 * tor),
            "neck": (0.0, 0.075 * tor, 0.0),
            "head": (0.0, 0.085 * hd, 0.010 * hd),
            "nose": (0.0, -0.010 * hd, 0.058 * hd),
            "left_eye": (0.018 * hd, 0.008 * hd, 0.050 * hd),
            "right_eye": (-0.018 * hd, 0.008 * hd, 0.050 * hd),
            "left_ear": (0.045 * hd, 0.0, 0.0),
            "right_ear": (-0.045 * hd, 0.0, 0.0),
        }
        for s, x in (("left", 1.0), ("right", -1.0)):
            off |= {
                f"{s}_shoulder": (x * sw, 0.055 * tor, -0.010 * tor),
                f"{s}_elbow": (0.0, -0.186 * arm, 0.0),
                f"{s}_wrist": (0.0, -0.146 * arm, 0.0),
                # Hand hanging down, palm towards the body: thumb forward, pinky back.
                f"{s}_pinky": (0.0, -0.050 * arm, -0.012 * arm),
                f"{s}_index": (0.0, -0.058 * arm, 0.012 * arm),
                f"{s}_thumb": (0.0, -0.032 * arm, 0.026 * arm),
                f"{s}_hip": (x * hw, -0.030 * h, 0.0),
                f"{s}_knee": (0.0, -0.245 * leg, 0.0),
                f"{s}_ankle": (0.0, -0.246 * leg, 0.0),
                f"{s}_heel": (0.0, -0.036 * h, -0.030 * h),
                f"{s}_foot_index": (0.0, -0.036 * h, 0.110 * h),
            }
        return np.array([off[j] for j in ALL_JOINTS], dtype=np.float64)

    def bone_lengths(self) -> dict[tuple[str, str], float]:
        """{(parent, child): length in metres} for every bone of ``BONES``."""
        off = np.linalg.norm(self.bone_offsets(), axis=1)
        return {(p, c): float(off[JOINT_INDEX[c]]) for p, c in BONES}


def sample_shape(rng: np.random.Generator) -> BodyShape:
    """A random adult body: 1.50-1.95 m, proportions within a few percent of average."""
    return BodyShape(
        height=float(rng.uniform(1.50, 1.95)),
        leg=float(rng.normal(1.0, 0.04)),
        arm=float(rng.normal(1.0, 0.04)),
        torso=float(rng.normal(1.0, 0.04)),
        shoulder_width=float(rng.normal(1.0, 0.07)),
        hip_width=float(rng.normal(1.0, 0.08)),
        head=float(rng.normal(1.0, 0.04)),
        girth=float(rng.uniform(0.8, 1.35)),
    )


# --------------------------------------------------------------------------- rotations

def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(..., 3) Euler angles (rx, ry, rz) radians -> (..., 3, 3) ``Rz @ Ry @ Rx``."""
    a = np.asarray(angles, dtype=np.float64)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    r = np.empty(a.shape[:-1] + (3, 3))
    r[..., 0, 0] = cz * cy
    r[..., 0, 1] = cz * sy * sx - sz * cx
    r[..., 0, 2] = cz * sy * cx + sz * sx
    r[..., 1, 0] = sz * cy
    r[..., 1, 1] = sz * sy * sx + cz * cx
    r[..., 1, 2] = sz * sy * cx - cz * sx
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sx
    r[..., 2, 2] = cy * cx
    return r


def rotation_y(angle: float) -> np.ndarray:
    """(3, 3) rotation about the vertical axis (a heading): +angle turns +z towards +x."""
    return euler_to_matrix(np.array([0.0, angle, 0.0]))


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


# --------------------------------------------------------------------------- poses

def rest_pose() -> Pose:
    """Standing upright, arms hanging at the sides (every joint at zero)."""
    return {j: np.zeros(3) for j in ALL_JOINTS}


def pose_from_degrees(**joints: tuple[float, float, float]) -> Pose:
    """``pose_from_degrees(left_elbow=(-90, 0, 0))`` -> Pose in radians."""
    return {j: np.radians(np.asarray(v, dtype=np.float64)) for j, v in joints.items()}


def pose_to_array(pose: Pose) -> np.ndarray:
    """Pose dict -> (len(ALL_JOINTS), 3) Euler angles, zeros for missing joints."""
    arr = np.zeros((len(ALL_JOINTS), 3))
    for j, v in pose.items():
        arr[JOINT_INDEX[j]] = v
    return arr


def array_to_pose(arr: np.ndarray) -> Pose:
    return {j: np.array(arr[i], dtype=np.float64) for i, j in enumerate(ALL_JOINTS)}


def blend_poses(a: Pose, b: Pose, t: float) -> Pose:
    """Linear interpolation of joint angles: t = 0 gives ``a``, t = 1 gives ``b``."""
    zero = np.zeros(3)
    return {j: (1.0 - t) * np.asarray(a.get(j, zero)) + t * np.asarray(b.get(j, zero))
            for j in set(a) | set(b)}


_MIRROR = np.diag([-1.0, 1.0, 1.0])


def mirror_pose(pose: Pose) -> Pose:
    """The pose reflected through the body's sagittal plane (x -> -x).

    Reflecting a rotation about x leaves rx and flips ry and rz, and the sides swap."""
    return {side_twin(j): np.asarray(v) * np.array([1.0, -1.0, -1.0]) for j, v in pose.items()}


def mirror_rotation(r: np.ndarray) -> np.ndarray:
    """A root rotation reflected through the x = 0 plane (pairs with ``mirror_pose``)."""
    return _MIRROR @ r @ _MIRROR


# --------------------------------------------------------------------------- kinematics

def forward_kinematics(offsets: np.ndarray, local_rot: np.ndarray, root_rotation: np.ndarray,
                       root_position: np.ndarray) -> np.ndarray:
    """World positions of every joint of ``ALL_JOINTS``.

    offsets (J, 3) rest offsets; local_rot (..., J, 3, 3); root_rotation (..., 3, 3);
    root_position (..., 3) -> (..., J, 3). Batched over leading dims (e.g. frames), the
    loop runs over the ~30 joints only.
    """
    batch = local_rot.shape[:-3]
    glob = np.empty(batch + (len(PARENTS), 3, 3))
    pos = np.empty(batch + (len(PARENTS), 3))
    glob[..., 0, :, :] = root_rotation @ local_rot[..., 0, :, :]
    pos[..., 0, :] = root_position
    for j in range(1, len(PARENTS)):
        p = PARENTS[j]
        pos[..., j, :] = pos[..., p, :] + glob[..., p, :, :] @ offsets[j]
        glob[..., j, :, :] = glob[..., p, :, :] @ local_rot[..., j, :, :]
    return pos


def all_joint_positions(shape: BodyShape, pose: Pose | np.ndarray,
                        root_position=(0.0, 0.0, 0.0), root_rotation=None) -> np.ndarray:
    """(..., len(ALL_JOINTS), 3) world positions; ``pose`` a Pose or (..., J, 3) angles."""
    angles = pose_to_array(pose) if isinstance(pose, dict) else np.asarray(pose, dtype=np.float64)
    rot = np.eye(3) if root_rotation is None else np.asarray(root_rotation, dtype=np.float64)
    return forward_kinematics(shape.bone_offsets(), euler_to_matrix(angles), rot,
                              np.asarray(root_position, dtype=np.float64))


def joint_positions(shape: BodyShape, pose: Pose | np.ndarray,
                    root_position=(0.0, 0.0, 0.0), root_rotation=None) -> np.ndarray:
    """(..., len(BODY_JOINTS), 3) world positions (metres, y up) in ``BODY_JOINTS`` order.

    ``root_position`` is where the pelvis goes; ``root_rotation`` (3, 3) turns the whole
    body about the pelvis (None = upright, facing +z)."""
    return all_joint_positions(shape, pose, root_position, root_rotation)[..., BODY_FROM_ALL, :]


# Thickness of the body below its joints: how far the floor is from the lowest joint.
FLOOR_CLEARANCE = 0.03


def place_on_floor(positions: np.ndarray, clearance: float = FLOOR_CLEARANCE) -> np.ndarray:
    """Shift (..., J, 3) positions vertically so the lowest joint is ``clearance`` above y=0."""
    low = positions[..., 1].min(axis=-1, keepdims=True)
    out = positions.copy()
    out[..., 1] += clearance - low
    return out


def pose_body(shape: BodyShape, pose: Pose | np.ndarray, root_rotation=None,
              position_xz=(0.0, 0.0), heading: float = 0.0) -> np.ndarray:
    """(len(ALL_JOINTS), 3) positions of a body standing/lying on the floor.

    The body is turned by ``heading`` radians about the vertical, its pelvis put above
    ``position_xz`` and lowered until its lowest joint rests on the floor."""
    rot = rotation_y(heading) @ (np.eye(3) if root_rotation is None else root_rotation)
    pos = all_joint_positions(shape, pose, root_rotation=rot)
    pos = place_on_floor(pos)
    pos[..., 0] += position_xz[0]
    pos[..., 2] += position_xz[1]
    return pos


# --------------------------------------------------------------------------- camera

@dataclass(frozen=True)
class Camera:
    """Pinhole camera. Camera frame: x right, y down, z forward (OpenCV), so image
    coordinates are u to the right, v downwards, in pixels."""

    width: int                 # image width, pixels
    height: int                # image height, pixels
    fov_deg: float             # horizontal field of view, degrees
    position: np.ndarray       # (3,) camera centre in world coordinates, metres
    rotation: np.ndarray       # (3, 3) world -> camera rotation
    yaw_deg: float = 0.0       # the parameters it was built from (recorded in datasets)
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    distance: float = 0.0      # metres from the look-at target

    @property
    def focal(self) -> float:
        return 0.5 * self.width / math.tan(math.radians(self.fov_deg) / 2)

    @property
    def intrinsics(self) -> np.ndarray:
        f = self.focal
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1.0]])


def look_at_camera(target, *, yaw_deg: float, pitch_deg: float, distance: float,
                   roll_deg: float = 0.0, fov_deg: float = 55.0, width: int = 224,
                   height: int = 224) -> Camera:
    """Camera on a sphere around ``target`` looking at it.

    yaw 0 puts the camera on the +z side (it sees the front of an unturned body), yaw 90
    on the +x side (the body's left); pitch > 0 raises it above the target looking
    down; roll turns the image about the viewing axis (positive = clockwise on screen).
    """
    target = np.asarray(target, dtype=np.float64)
    yaw, pitch, roll = map(math.radians, (yaw_deg, pitch_deg, roll_deg))
    direction = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch),
                          math.cos(yaw) * math.cos(pitch)])
    position = target + distance * direction
    forward = -direction                                   # camera z
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))   # camera x
    if np.linalg.norm(right) < 1e-9:  # looking straight down/up: the yaw decides "right"
        right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)                        # camera y
    rot = np.stack([right, down, forward])                 # rows: world -> camera
    c, s = math.cos(roll), math.sin(roll)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ rot
    return Camera(width, height, fov_deg, position, rot, yaw_deg, pitch_deg, roll_deg, distance)


def sample_camera(rng: np.random.Generator, target, *, width: int = 224, height: int = 224,
                  radius: float = 1.0, yaw_range=(-180.0, 180.0), pitch_range=(3.0, 40.0),
                  fill_range=(0.75, 1.2), roll_std: float = 4.0,
                  fov_range=(45.0, 65.0), min_height: float = 0.25,
                  min_distance: float = 2.2) -> Camera:
    """A random camera looking at ``target``: yaw all around, pitch from level to steep,
    a little roll, and a distance at which a sphere of ``radius`` metres fills the view
    ``fill_range`` times (values above 1 push body parts out of the frame), but never
    closer than ``min_distance`` (a crouching body seen from 1 m is all perspective
    distortion, not a photo anyone takes)."""
    fov = float(rng.uniform(*fov_range))
    yaw = float(rng.uniform(*yaw_range))
    pitch = float(rng.uniform(*pitch_range))
    roll = float(rng.normal(0.0, roll_std))
    distance = radius / math.sin(math.radians(fov) / 2) / float(rng.uniform(*fill_range))
    distance = max(distance, min_distance)
    # Keep the camera above the floor whatever the pitch.
    target = np.asarray(target, dtype=np.float64)
    lift = min_height - (target[1] + distance * math.sin(math.radians(pitch)))
    if lift > 0:
        pitch = math.degrees(math.asin(min(1.0, (min_height - target[1]) / distance)))
    return look_at_camera(target, yaw_deg=yaw, pitch_deg=pitch, distance=distance,
                          roll_deg=roll, fov_deg=fov, width=width, height=height)


def project(camera: Camera, points3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) world points -> uv (..., 2) pixels, depth (..., ) metres along the view.

    Points behind the camera get depth <= 0 and uv computed with a tiny positive depth
    (far outside the image); callers test depth before trusting uv."""
    cam = (np.asarray(points3d, dtype=np.float64) - camera.position) @ camera.rotation.T
    z = cam[..., 2]
    zs = np.maximum(z, 1e-6)
    f = camera.focal
    uv = np.stack([f * cam[..., 0] / zs + camera.width / 2,
                   f * cam[..., 1] / zs + camera.height / 2], axis=-1)
    return uv, z


# --------------------------------------------------------------------------- pose classes

class PoseSample(NamedTuple):
    pose: Pose                # joint angles (radians)
    root_rotation: np.ndarray  # (3, 3) whole-body orientation before heading
    variation: str            # e.g. "side_plank_left"


@dataclass(frozen=True)
class PoseTemplate:
    category: str                               # "HIIT" or "Yoga"
    variations: tuple[str, ...]
    # (rng, m, variation) -> (degrees dict, root Euler degrees, support); m in [0, 1] is
    # the repetition's progress (0 = start position, 1 = the furthest point).
    build: Callable
    phase_range: tuple[float, float] = (0.0, 1.0)  # of m, when no phase is asked for
    moving: bool = False                        # has a repetition (phase matters)


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
    "side_plank": PoseTemplate("Yoga", ("side_plank_left", "side_plank_right"), _side_plank),
    "squat": PoseTemplate("HIIT", ("squat_arms_forward", "squat_prayer", "squat_wide"), _squat,
                       (0.55, 1.0), True),
    "superman": PoseTemplate("Yoga", ("superman", "superman_w"), _superman, (0.3, 1.0), True),
    "tree": PoseTemplate("Yoga", ("tree_left", "tree_right"), _tree),
    "warrior2": PoseTemplate("Yoga", ("warrior2_left", "warrior2_right"), _warrior2),
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
                noise_deg: float = 5.0) -> PoseSample:
    """A random pose of one exercise class.

    ``phase`` in [0, 1] is the point in one repetition (0 and 1 = start position, 0.5 =
    the furthest point: bottom of a squat, arms up in a jumping jack); None picks a
    point where the exercise is recognisable in a still image. Classes without a
    movement ignore it. ``variation`` (one of ``POSE_CLASSES[c].variations``) is drawn
    at random when None. Angle noise is drawn from ``rng`` (so fix the rng per body
    to animate one person through phases). For bodies supported at two places (plank:
    hands and toes), the root is tilted so that both rest on the floor for ``shape``
    (average body when None).
    """
    try:
        tpl = POSE_CLASSES[class_name]
    except KeyError:
        raise ValueError(f"unknown pose class {class_name!r}; known: {', '.join(CLASS_NAMES)}")
    if variation is None:
        variation = tpl.variations[int(rng.integers(len(tpl.variations)))]
    elif variation not in tpl.variations:
        raise ValueError(f"{class_name} has no variation {variation!r}")
    if phase is None:
        m = float(rng.uniform(*tpl.phase_range))
    else:
        m = repetition(float(phase)) if tpl.moving else 1.0
    mirrored = variation in ("side_plank_left", "warrior2_right")
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
