"""Keypoint sets shared by every part of PoseLab.

Two sets matter:

* ``COCO17`` -- the 17 COCO keypoints that InfiniteForm annotates (the classifier's
  keypoint input). InfiniteForm leaves nose, eyes and ears unannotated (visibility 0).
* ``TEMPORAL25`` -- the 25 keypoints of the temporal-refinement study: MediaPipe
  BlazePose indices {0, 7, 8, 11..32} (nose, ears and the body joints, including the
  fingers and feet that COCO lacks).

``BODY_JOINTS`` is the union, in a fixed order: the synthetic body model produces
positions for every one of them, so one posed body can be annotated in either set
with ``COCO17_FROM_BODY`` / ``TEMPORAL25_FROM_BODY`` (index arrays into BODY_JOINTS).

Everything here is plain data; nothing imports torch.
"""
from __future__ import annotations

import numpy as np

COCO17: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

COCO17_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

# BlazePose (33 landmarks) indices kept by the temporal study, in that order.
BLAZEPOSE_INDICES: tuple[int, ...] = (0, 7, 8) + tuple(range(11, 33))

TEMPORAL25: tuple[str, ...] = (
    "nose", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_pinky", "right_pinky",
    "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
assert len(TEMPORAL25) == len(BLAZEPOSE_INDICES) == 25


def _edges(names: tuple[str, ...], pairs: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


TEMPORAL25_SKELETON = _edges(TEMPORAL25, [
    ("nose", "left_ear"), ("nose", "right_ear"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_wrist", "left_pinky"), ("left_wrist", "left_index"), ("left_wrist", "left_thumb"),
    ("left_pinky", "left_index"),
    ("right_wrist", "right_pinky"), ("right_wrist", "right_index"), ("right_wrist", "right_thumb"),
    ("right_pinky", "right_index"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"),
    ("right_ankle", "right_foot_index"),
])

# Every joint the synthetic body model knows, COCO17 first then the temporal extras.
BODY_JOINTS: tuple[str, ...] = COCO17 + tuple(n for n in TEMPORAL25 if n not in COCO17)

COCO17_FROM_BODY = np.array([BODY_JOINTS.index(n) for n in COCO17])
TEMPORAL25_FROM_BODY = np.array([BODY_JOINTS.index(n) for n in TEMPORAL25])


def side_twin(name: str) -> str:
    """'left_knee' <-> 'right_knee'; names without a side map to themselves."""
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


def flip_permutation(names: tuple[str, ...]) -> np.ndarray:
    """Index array that swaps every left_* keypoint with its right_* twin.

    ``keypoints[..., flip_permutation(names), :]`` is the keypoint array of the
    horizontally mirrored body (x must be mirrored separately).
    """
    return np.array([names.index(side_twin(n)) for n in names])


def side_merged_name(name: str) -> str:
    """'left_knee' -> 'knee'; used by tables that merge left and right."""
    for prefix in ("left_", "right_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
