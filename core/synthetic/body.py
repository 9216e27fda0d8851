"""A procedural 3D human body: skeleton, body shapes, joint-angle poses, kinematics.

Pure numpy. The exercise pose classes are in ``core.synthetic.poses``, the camera in
``core.synthetic.camera``; the renderer (``core.synthetic.render``) draws the result, and
``core.synthetic.motion`` animates it through repetitions for the synthetic videos.

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
