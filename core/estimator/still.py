"""People in a still picture: BlazePose made patient for one photo.

``BlazePose.estimate_image`` is MediaPipe's static-image mode: a detection scoring under
0.5 is nobody. For a video that is right (the next frame tries again); for the one photo
a user uploads it is not: a grey photo of a man at a camera tripod scores 0.43 at the
detector while the landmark model, given that detection, scores his pose 0.999. So
``estimate_still`` tries, in order, and stops at the first attempt that finds someone:

1. ``estimate_image`` as it is (the pictures that work keep their exact answer);
2. the same picture with detections down to ``WEAK_DETECTION_SCORE``, a weak one kept
   only when the landmark model confirms a person (``confirmed``): a pose presence of at
   least ``CONFIRM_PRESENCE`` (stricter than the 0.5 of a normal detection), a mean
   visibility of the 17 COCO landmarks of at least ``CONFIRM_VISIBILITY``, and a second
   landmark pass, on the region the first one's alignment points give (what tracking
   would do next frame), that still finds the pose where it was (median landmark shift
   at most ``CONFIRM_SHIFT`` of the person's size);
3. its mirror (left-right flipped; landmarks flipped back, left and right swapped);
4. the picture padded by a quarter of its long side (a person filling the frame or cut
   at its edge is easier for the detector when smaller), and its mirror;
5. square crops: three along the long side, one zoomed on the centre (2/3 of each
   side), each mirrored too; the detector letterboxes a crop into its 224 x 224 input,
   so a small person becomes a bigger one.

Steps 2-5 run the detector on the view and the landmark model on the whole picture (or
its mirror) around the detection's region, so a crop's border never cuts the landmark
model's input. People found in one view are de-duplicated (boxes of IoU > 0.5: the
higher pose presence is kept), largest first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.estimator import geometry as G
from core.estimator.blazepose import COCO17_FROM_BLAZEPOSE, NUM_LANDMARKS, BlazePose, Pose

WEAK_DETECTION_SCORE = 0.2      # a detection at least this strong may be confirmed ...
CONFIRM_PRESENCE = 0.9          # ... by a pose presence at least this high,
CONFIRM_VISIBILITY = 0.65       # a mean visibility of the COCO-17 landmarks at least this,
CONFIRM_SHIFT = 0.1             # and a second pass moving them at most this share of the size
# Chosen on rendered people composited on 1/f-noise "photos" (colour and grey) and on the
# empty backgrounds: the weak detections the landmark model scored >= 0.9 on empty
# backgrounds had mean visibility <= 0.64 and mostly shifted by 0.07-0.26 on a second
# pass; the people's had 0.57-0.98 and shifted by 0.01-0.06 (a few up to 0.16).
PAD_SHARE = 0.25                # padding of step 4, a share of the long side
ZOOM_SHARE = 2 / 3              # the centre crop of step 5, a share of each side

# BlazePose's 33 landmarks with left and right swapped (a mirrored person's left arm is
# the original's right arm): nose 0, eyes 1-6, ears 7-8, mouth 9-10, then pairs.
MIRROR = np.array([0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9]
                  + [j for i in range(11, 33, 2) for j in (i + 1, i)])


@dataclass
class StillPerson:
    """One person found in a still picture, in the picture's own pixels."""
    landmarks: np.ndarray          # (33, 3) float32 x, y, z image pixels
    visibility: np.ndarray         # (33,) float32 in [0, 1]
    score: float                   # the landmark model's pose presence
    detection_score: float         # the detector's score of the detection it came from
    box: np.ndarray                # (4,) float32 xyxy around the 33 landmarks
    view: str                      # how it was found: "as is", "weak detection", "mirror", ...


def views(width: int, height: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(name, box x0 y0 x1 y1) of the views of steps 2, 4 and 5 in picture pixels; a box
    may reach outside the picture (padding, filled black as the detector's letterbox is)."""
    long, short = max(width, height), min(width, height)
    pad = int(round(PAD_SHARE * long))
    out = [("picture", (0, 0, width, height)),
           ("padded", (-pad, -pad, width + pad, height + pad))]
    if long > short:
        for name, t in (("first square", 0.0), ("middle square", 0.5), ("last square", 1.0)):
            o = int(round(t * (long - short)))
            out.append((name, (o, 0, o + short, short) if width > height else (0, o, short, o + short)))
    zw, zh = int(round(ZOOM_SHARE * width)), int(round(ZOOM_SHARE * height))
    x0, y0 = (width - zw) // 2, (height - zh) // 2
    out.append(("zoomed centre", (x0, y0, x0 + zw, y0 + zh)))
    return out


def _cut(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box of an (H, W, 3) image, black outside it."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def _people_in_view(estimator: BlazePose, image: np.ndarray, box, max_people: int | None
                    ) -> list[tuple[float, object]]:
    """(detection score, Pose in ``image``'s pixels) of the confirmed people whose
    detection the view ``box`` of ``image`` gives."""
    scores, _, kps = estimator.detect(_cut(image, box), min_score=WEAK_DETECTION_SCORE)
    offset = np.array(box[:2], np.float32)
    found = []
    for score, k in zip(scores, kps):
        roi = G.roi_from_alignment(k[0] + offset, k[1] + offset)
        if not (np.isfinite(roi).all() and 8 <= roi[2] <= 4 * max(image.shape[:2])):
            continue
        pose = estimator.landmarks_in_roi(image, roi)
        if pose.found and (score >= estimator.min_detection_score or confirmed(estimator, image, pose)):
            found.append((float(score), pose))
        if max_people is not None and len(found) >= max_people:
            break
    return found


def confirmed(estimator: BlazePose, image: np.ndarray, pose: Pose) -> bool:
    """Whether the landmark model confirms a weak detection's person (module docstring)."""
    if pose.score < CONFIRM_PRESENCE or pose.visibility[COCO17_FROM_BLAZEPOSE].mean() < CONFIRM_VISIBILITY:
        return False
    roi = G.roi_from_alignment(pose.aux_landmarks[0], pose.aux_landmarks[1])
    if not (np.isfinite(roi).all() and roi[2] >= 8):
        return False
    again = estimator.landmarks_in_roi(image, roi)
    if not again.found:
        return False
    size = float(max(pose.box[2] - pose.box[0], pose.box[3] - pose.box[1])) or 1.0
    shift = np.median(np.hypot(*(again.landmarks[:, :2] - pose.landmarks[:, :2]).T))
    return bool(shift <= CONFIRM_SHIFT * size)


def _person(pose, detection_score: float, view: str, mirrored_width: int | None) -> StillPerson:
    lm = np.asarray(pose.landmarks, np.float32).copy()
    vis = np.asarray(pose.visibility, np.float32).copy()
    if mirrored_width is not None:             # back from the mirror: flip x, swap sides
        lm = lm[MIRROR]
        lm[:, 0] = mirrored_width - lm[:, 0]
        vis = vis[MIRROR]
    box = np.concatenate([lm[:, :2].min(0), lm[:, :2].max(0)]).astype(np.float32)
    return StillPerson(landmarks=lm, visibility=vis, score=float(pose.score),
                       detection_score=float(detection_score), box=box, view=view)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _distinct_largest_first(people: list[StillPerson]) -> list[StillPerson]:
    keep: list[StillPerson] = []
    for p in sorted(people, key=lambda p: -p.score):
        if all(_iou(p.box, q.box) <= 0.5 for q in keep):
            keep.append(p)
    return sorted(keep, key=lambda p: -float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))


def estimate_still(estimator: BlazePose, image: np.ndarray, *, max_people: int | None = None
                   ) -> list[StillPerson]:
    """The people in one still picture (H, W, 3) uint8, largest first, trying the steps of
    the module docstring in order; an empty list when none finds anybody."""
    image = np.ascontiguousarray(np.asarray(image))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    poses = estimator.estimate_image(image, max_people=max_people)
    if poses:
        return [_person(p, p.detection_score, "as is", None) for p in poses]
    h, w = image.shape[:2]
    mirror = np.ascontiguousarray(image[:, ::-1])
    for name, box in views(w, h):
        for flipped in (False, True):
            # the mirror's view of a box is the mirrored box
            src, b = (mirror, (w - box[2], box[1], w - box[0], box[3])) if flipped else (image, box)
            found = _people_in_view(estimator, src, b, max_people)
            if found:
                label = ("weak detection" if name == "picture" and not flipped else
                         f"{'mirrored ' if flipped else ''}{name}".replace("mirrored picture", "mirror"))
                people = [_person(p, s, label, w if flipped else None) for s, p in found]
                return _distinct_largest_first(people)[:max_people]
    return []


assert len(MIRROR) == NUM_LANDMARKS and sorted(MIRROR) == list(range(NUM_LANDMARKS))
