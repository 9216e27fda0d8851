"""Rendered synthetic videos: an animated clip of ``core.synthetic.motion`` drawn frame by
frame by ``core.synthetic.render``.

Across a video's frames the room (floor, walls, light, sensor noise), the person's look
(skin, hair, clothes) and the mat stay the same; the body moves as the clip animates it
and the camera follows its path. A climber faces a wall of the room (at z ~ 0.4 m, the
wall the clip climbs) dotted with holds. Every frame gets its own sensor noise.

The ground truth is what the renderer drew: the TEMPORAL25 keypoints of each frame with
the renderer's visibility (2 visible, 1 occluded by something drawn in front, 0 outside
the frame), not the clip's depth heuristic.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from core.keypoints import TEMPORAL25_FROM_BODY
from core.synthetic.motion import Clip
from core.synthetic.render import render_scene
from core.synthetic.scene import Person, Scene, hsv_colour, sample_look, sample_mats, sample_room

CLIMB_WALL_Z = 0.4          # the climbing wall's plane (the climber's hands reach z ~ 0.35)
HOLDS = 28                  # holds on the climbing wall around the climber


@dataclass
class VideoFrame:
    image: np.ndarray        # (H, W, 3) uint8
    keypoints: np.ndarray    # (25, 3) TEMPORAL25 x, y in image pixels, visibility 0/1/2


def clip_scene(clip: Clip, rng: np.random.Generator) -> Scene:
    """The scene of a clip's first frame: its room, the person's look, mats, holds."""
    movement = clip.movement
    look = sample_look(rng, movement)
    person = Person(shape=clip.shape, class_name=movement, variation=clip.variation or movement,
                    category="Climbing" if movement == "climb" else "HIIT", joints=clip.skeleton[0],
                    heading=clip.heading, **look)
    positions = np.stack([c.position for c in clip.cameras])                  # (T, 3)
    pts = clip.skeleton.reshape(-1, 3)
    lo, hi = pts.min(0), pts.max(0)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo)) + 0.1
    room = sample_room(rng, centre, radius, positions)
    mats = [] if movement == "climb" else sample_mats(rng, [person])
    scene = Scene(camera=clip.cameras[0], people=[person], mats=mats, **room)
    if movement == "climb":
        scene = _climbing_wall(scene, clip, positions, rng)
    return scene


def _climbing_wall(scene: Scene, clip: Clip, cameras: np.ndarray, rng: np.random.Generator) -> Scene:
    """Move the room so that its +z wall is the climbing wall, keeping every camera
    inside, and put holds on it where the climber's hands and feet go."""
    half = max(scene.room_half, (CLIMB_WALL_Z - cameras[:, 2].min()) / 2 + 0.6,
               float(np.abs(cameras[:, 0] - scene.room_centre[0]).max()) + 0.6)
    centre = np.array([scene.room_centre[0], 0.0, CLIMB_WALL_Z - half])
    top = float(clip.skeleton[..., 1].max()) + 0.4
    holds = []
    for _ in range(HOLDS):
        x = float(rng.uniform(-1.1, 1.1)) + float(clip.skeleton[0, :, 0].mean()) - float(centre[0])
        y = float(rng.uniform(0.2, top))
        w = float(rng.uniform(0.06, 0.16))
        holds.append((3, x, w, y, y + w * float(rng.uniform(0.6, 1.2)), hsv_colour(rng, (0.6, 1.0), (0.5, 1.0))))
    return replace(scene, room_centre=centre, room_half=half, wall_panels=scene.wall_panels + holds)


def render_clip(clip: Clip, rng: np.random.Generator, *, supersample: int = 2) -> Iterator[VideoFrame]:
    """Each frame of ``clip`` drawn: (image, TEMPORAL25 ground truth). Deterministic for
    the generator's state."""
    scene = clip_scene(clip, rng)
    person = scene.people[0]
    for joints, cam in zip(clip.skeleton, clip.cameras):
        frame = replace(scene, camera=cam, people=[replace(person, joints=joints)])
        result = render_scene(frame, supersample=supersample, rng=rng)
        kp = result.people[0].keypoints[TEMPORAL25_FROM_BODY].astype(np.float32)
        yield VideoFrame(np.asarray(result.image), kp)
