"""Pinhole camera for the synthetic scenes: placement around a target and projection.

Camera frame: x right, y down, z forward (OpenCV), so image coordinates are u to the
right, v downwards, in pixels. World coordinates are those of ``core.synthetic.body``
(metres, y up, floor at y = 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
