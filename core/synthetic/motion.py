"""The synthetic body (``core.synthetic.body``) animated through real movements, filmed by a
slowly moving camera: ground-truth 2D keypoints for the synthetic video sequences.

Two kinds of movement:

* ``"climb"`` -- bouldering up a wall, the thesis' domain (ClimbAlong). The body faces the
  wall (+z) and climbs in the usual four-beat order: right hand, left foot, left hand,
  right foot. Each limb reaches up in its quarter of the cycle (smooth-step) and then,
  while its hold stays put and the body rises past it, sinks back relative to the body;
  the pelvis rises steadily and sways towards the standing leg, the spine leans into the
  wall and twists towards the reaching arm. The camera stands behind or to the side of
  the climber (yaw 180 +- 40 degrees, i.e. it sees the back), a little below or above,
  and pans up after the climber with a lag.
* an exercise from ``EXERCISES`` (squat, jumping_jack, bicep_curl, lunge, pushup,
  overhead_press, crunch, bridge, superman, bird_dog) -- repetitions through
  ``poses.sample_pose(class, rng, phase)`` with one fixed rng per person, so only the phase
  moves; 1.2-3 repetitions per 40 frames with a slowly varying tempo. Jumping jacks
  leave the floor a little. The camera circles slowly (a few degrees per video) with a
  slight zoom.

All movements are smooth in time (no per-frame random draws after the start). Keypoints
are the 25 TEMPORAL25 joints (``TEMPORAL25_FROM_BODY``) projected per frame; visibility
0 when a joint falls outside the frame or behind the camera, 1 when it is on the far side
of the body from the camera (self-occluded: the face of a climber seen from behind, the
far limbs in a side view), else 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.keypoints import TEMPORAL25, TEMPORAL25_FROM_BODY
from core.synthetic import body, camera, poses

EXERCISES: tuple[str, ...] = ("squat", "jumping_jack", "bicep_curl", "lunge", "pushup",
                              "overhead_press", "crunch", "bridge", "superman", "bird_dog")
MOVEMENTS: tuple[str, ...] = ("climb",) + EXERCISES
IMAGE_SIZE = (480, 360)  # frame width, height in pixels (4:3 video)


@dataclass
class Clip:
    """One animated, filmed movement."""
    movement: str                 # "climb" or an exercise class name
    keypoints: np.ndarray         # (T, 25, 3) image px x, y, visibility 0/1/2 (TEMPORAL25)
    image_size: tuple[int, int]   # (width, height)
    world: np.ndarray             # (T, 25, 3) joint positions, metres (y up)
    skeleton: np.ndarray          # (T, len(ALL_JOINTS), 3) every joint, for the renderer
    cameras: list                 # (T,) core.synthetic.camera.Camera, one per frame
    shape: body.BodyShape         # the person's body
    variation: str | None = None  # the exercise's variation (None for climbing)
    heading: float = 0.0          # radians about y the body faces


def movement_for(i: int) -> str:
    """Movement of the i-th synthetic video: every other one climbs, the rest cycle
    through the exercises, so any 20 videos hold both kinds in equal measure."""
    return "climb" if i % 2 == 0 else EXERCISES[(i // 2) % len(EXERCISES)]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _slow(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random curve over normalised time t in [0, 1]: two low-frequency sines."""
    f = rng.uniform(0.3, 1.2, 2)
    p = rng.uniform(0, 2 * np.pi, 2)
    return amplitude * 0.5 * (np.sin(2 * np.pi * f[0] * t + p[0]) + np.sin(2 * np.pi * f[1] * t + p[1]))


# ---------------------------------------------------------------------------- climbing

# (low, high) joint angles in degrees of each left limb; right limbs mirror them.
_ARM_LOW = {"shoulder": (-95, 0, 35), "elbow": (-85, 0, 0), "wrist": (0, 0, 0)}
_ARM_HIGH = {"shoulder": (-165, 0, 12), "elbow": (-15, 0, 0), "wrist": (-10, 0, 0)}
_LEG_LOW = {"hip": (-8, 0, 14), "knee": (12, 0, 0), "ankle": (-5, 0, 0)}
_LEG_HIGH = {"hip": (-80, 0, 30), "knee": (100, 0, 0), "ankle": (-15, 0, 0)}
# Four-beat order: (limb, side, offset in the cycle).
_CLIMB_ORDER = (("arm", "right", 0.0), ("leg", "left", 0.25), ("arm", "left", 0.5), ("leg", "right", 0.75))


def _limb_angles(kind: str, side: str, e: np.ndarray) -> dict[str, np.ndarray]:
    """Joint angles (radians, (T, 3)) of one limb at elevation e (T,) in [0, 1]."""
    low, high = (_ARM_LOW, _ARM_HIGH) if kind == "arm" else (_LEG_LOW, _LEG_HIGH)
    sign = np.array([1.0, 1.0, 1.0]) if side == "left" else np.array([1.0, -1.0, -1.0])
    return {f"{side}_{j}": np.radians((np.outer(1 - e, low[j]) + np.outer(e, high[j])) * sign)
            for j in low}


def climb_world(frames: int, rng: np.random.Generator) -> tuple[np.ndarray, body.BodyShape]:
    """((T, len(ALL_JOINTS), 3) world positions, body) of a climber going up a wall at z ~ 0.35 m."""
    shape = body.sample_shape(rng)
    period = rng.uniform(24, 44)  # frames per four-beat cycle
    rise = rng.uniform(0.28, 0.4) * shape.height / 1.72  # metres climbed per cycle
    t = np.arange(frames, dtype=np.float64)
    cycle = t / period + rng.uniform(0, 1)
    angles = np.zeros((frames, len(body.ALL_JOINTS), 3))
    for kind, side, offset in _CLIMB_ORDER:
        u = np.mod(cycle - offset, 1.0)
        # reach up during its quarter, then sink back relative to the rising body
        e = np.where(u < 0.25, _smoothstep(u / 0.25), 1.0 - (u - 0.25) / 0.75)
        for j, a in _limb_angles(kind, side, e).items():
            angles[:, body.JOINT_INDEX[j]] = a
    sway = np.sin(2 * np.pi * cycle)
    angles[:, body.JOINT_INDEX["spine"]] = np.radians(np.stack(
        [8 + 4 * np.cos(4 * np.pi * cycle), 10 * sway, np.zeros(frames)], -1))
    angles[:, body.JOINT_INDEX["neck"], 0] = np.radians(-25.0)  # looking up the wall
    lean = body.euler_to_matrix(np.radians(np.array([12.0, 0.0, 0.0])))
    root = np.stack([0.06 * sway, 0.9 + rise * (cycle - cycle[0]), np.zeros(frames)], -1)
    return body.all_joint_positions(shape, angles, root_position=root, root_rotation=lean), shape


def _follow(values: np.ndarray, lag: float) -> np.ndarray:
    """Exponential smoothing along time: a camera operator following with a lag."""
    out = np.empty_like(values)
    out[0] = values[0]
    for i in range(1, len(values)):  # a few dozen frames
        out[i] = lag * out[i - 1] + (1 - lag) * values[i]
    return out


# ---------------------------------------------------------------------------- exercises

def exercise_world(name: str, frames: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, body.BodyShape, str, float]:
    """((T, len(ALL_JOINTS), 3) world positions, body, variation, heading) of repetitions
    of one exercise."""
    shape = body.sample_shape(rng)
    variation = poses.POSE_CLASSES[name].variations[int(rng.integers(len(poses.POSE_CLASSES[name].variations)))]
    person_seed = int(rng.integers(2 ** 31))
    reps = rng.uniform(1.2, 3.0) * frames / 40
    tn = np.linspace(0, 1, frames)
    rate = 1 + _slow(rng, tn, 0.25)  # tempo varies smoothly around the mean
    phase = np.cumsum(rate) / rate.sum() * reps + rng.uniform(0, 1)
    heading = rng.uniform(-math.pi, math.pi)
    out = np.empty((frames, len(body.ALL_JOINTS), 3))
    for i, ph in enumerate(np.mod(phase, 1.0)):
        # same rng seed every frame: the person's own angle noise stays fixed, only the
        # repetition phase moves (poses.sample_pose's contract)
        s = poses.sample_pose(name, np.random.default_rng(person_seed), phase=float(ph),
                             variation=variation, shape=shape)
        pos = body.pose_body(shape, s.pose, s.root_rotation, heading=heading)
        if name == "jumping_jack":
            pos[:, 1] += 0.08 * poses.repetition(float(ph))
        out[i] = pos
    return out, shape, variation, float(heading)


# ---------------------------------------------------------------------------- filming

def film(world: np.ndarray, rng: np.random.Generator, *, yaw_centre: float, yaw_spread: float,
         pitch_range: tuple[float, float], fill_range: tuple[float, float],
         lag: float = 0.0, image_size: tuple[int, int] = IMAGE_SIZE) -> tuple[np.ndarray, list]:
    """Project (T, J, 3) world joints with a slowly moving camera -> ((T, J, 3) x, y, vis,
    the T cameras)."""
    frames = len(world)
    w, h = image_size
    tn = np.linspace(0, 1, frames)
    centre = (world.min(1) + world.max(1)) / 2  # (T, 3) middle of the body
    target = _follow(centre, lag) if lag else centre
    extent = np.percentile(np.linalg.norm(world - centre[:, None], axis=-1).max(-1), 90)
    yaw = yaw_centre + rng.uniform(-yaw_spread, yaw_spread) + _slow(rng, tn, 6.0)
    pitch = rng.uniform(*pitch_range) + _slow(rng, tn, 3.0)
    fov = rng.uniform(50, 65)
    vfov = 2 * math.degrees(math.atan(math.tan(math.radians(fov) / 2) * h / w))
    distance = extent / math.tan(math.radians(vfov) / 2) / rng.uniform(*fill_range)
    distance = distance * (1 + _slow(rng, tn, 0.06))
    roll = rng.normal(0, 2.0)
    out = np.empty(world.shape[:2] + (3,))
    cameras = []
    for i in range(frames):  # one small camera per frame
        cam = camera.look_at_camera(target[i], yaw_deg=float(yaw[i]), pitch_deg=float(pitch[i]),
                                  distance=float(distance[i]), roll_deg=roll, fov_deg=fov,
                                  width=w, height=h)
        cameras.append(cam)
        uv, depth = camera.project(cam, world[i])
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        # far side of the body: deeper than the body's centre by more than 8 cm
        far = depth > np.median(depth) + 0.08
        out[i, :, :2] = np.where(inside[:, None], uv, 0.0)
        out[i, :, 2] = np.where(inside, np.where(far, 1, 2), 0)
    return out, cameras


def animate(movement: str, frames: int, rng: np.random.Generator,
            image_size: tuple[int, int] = IMAGE_SIZE) -> Clip:
    """One clip of ``movement`` ("climb" or one of EXERCISES), ``frames`` long."""
    variation, heading = None, 0.0
    if movement == "climb":
        skeleton, shape = climb_world(frames, rng)
        world = skeleton[:, body.BODY_FROM_ALL]
        kp, cams = film(world, rng, yaw_centre=180.0, yaw_spread=40.0, pitch_range=(-12.0, 15.0),
                        fill_range=(0.8, 1.05), lag=0.85, image_size=image_size)
    elif movement in EXERCISES:
        skeleton, shape, variation, heading = exercise_world(movement, frames, rng)
        world = skeleton[:, body.BODY_FROM_ALL]
        kp, cams = film(world, rng, yaw_centre=0.0, yaw_spread=180.0, pitch_range=(0.0, 25.0),
                        fill_range=(0.75, 1.05), image_size=image_size)
    else:
        raise ValueError(f"unknown movement {movement!r}; known: {', '.join(MOVEMENTS)}")
    sel = TEMPORAL25_FROM_BODY
    return Clip(movement, kp[:, sel].astype(np.float32), image_size, world[:, sel], skeleton=skeleton,
                cameras=cams, shape=shape, variation=variation, heading=heading)


assert len(TEMPORAL25_FROM_BODY) == len(TEMPORAL25)
