"""The geometry of BlazePose: SSD anchors, detection decoding, weighted NMS, the
rotated square region of interest (ROI), crops, and the heatmap <-> image mapping.

Pure numpy functions, no model in sight; ``core.estimator.blazepose`` runs the models.

Coordinate conventions (the same everywhere in ``core.estimator``)
-------------------------------------------------------------------
* **Continuous pixel coordinates.** In an image, a crop or a heatmap, pixel ``(i, j)``
  (column i, row j) covers ``[i, i + 1) x [j, j + 1)``; its centre is ``(i + 0.5, j + 0.5)``.
  Image keypoints, ROIs, boxes and affine matrices all use these coordinates (so does
  the synthetic renderer: its principal point is ``(W / 2, H / 2)``).
* **ROI** ``(cx, cy, size, rotation)``: a square of side ``size`` pixels centred on
  ``(cx, cy)``, turned by ``rotation`` radians (clockwise on screen, since y points
  down). MediaPipe's convention: rotation 0 is an upright body, and the square's "up"
  is the direction from the hips to the head.
* **ROI-normalised coordinates** ``n`` in ``[0, 1]^2`` span the square; ``n = (0.5, 0.5)``
  is its centre. They map to the image as ``p = c + R(rotation) @ ((n - 0.5) * size)``
  with ``R(t) = [[cos t, -sin t], [sin t, cos t]]`` (MediaPipe's
  ``GetRotatedSubRectToRectTransformMatrix`` and ``LandmarkProjectionCalculator``).
* **Crop** (the landmark model's 256 x 256 input): crop pixel coordinates
  ``q = 256 * n``; crop pixel ``(i, j)`` is the image sampled bilinearly at the image
  point of ``q = (i + 0.5, j + 0.5)``, and the model's landmark x, y (crop pixels) are
  read as ``q``, so ``n = x / 256`` as in MediaPipe. The model agrees with this reading:
  a landmark's x plus its mirror twin's x in the horizontally flipped crop is 256.07
  +- 0.06 (1786 confident landmarks of rendered people; 255 would mean pixel i stands
  for q = i). MediaPipe's CPU path (OpenCV ``warpPerspective``, the ROI's corners sent
  to pixel *indices* 0 and 256, image coordinates read as indices) samples half a crop
  pixel and half an image pixel away from this; with that sampling emulated, this
  module's crops equal MediaPipe's to 1 grey level.
* **Heatmap** (64 x 64, a quarter of the crop's resolution), continuous coordinates
  ``h`` with the centre of heatmap pixel ``(u, v)`` at ``h = (u + 0.5, v + 0.5)``. The model
  puts the peak for a landmark at ROI-normalised ``n`` on heatmap pixel ``u = 64 * n``
  (measured on rendered people: the quadratic sub-pixel peak of each heatmap lies
  -0.04 +- 0.02 heatmap pixel from 64 n of the model's own regressed landmark, against
  -0.5 were pixel centres at ``(u + 0.5) / 64``; MediaPipe's heatmap refinement assumes
  the same, ``n = u / 64``). So ``n = (h - 0.5) / 64``: the heatmap grid sits half a
  heatmap pixel (two crop pixels) up-left of a plain 4x down-sampling of the crop.
  ``heatmap_affine(roi)`` is the 2 x 3 matrix ``A`` with ``p = A[:, :2] @ h + A[:, 2]``
  (heatmap -> image pixels)::

      A[:, :2] = R(rotation) * size / 64
      A[:, 2]  = c - R(rotation) @ ((0.5 + 0.5 / 64) * size, (0.5 + 0.5 / 64) * size)

  ``heatmap_to_image`` / ``image_to_heatmap`` apply it and its exact inverse; the
  centre of heatmap pixel (u, v) lands on the image point of n = (u / 64, v / 64).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from core.heatmaps import apply_affine, invert_affine  # noqa: F401  (re-exported: the estimator's maps)

# --------------------------------------------------------------------------- anchors

DETECTOR_SIZE = 224        # pose_detection.tflite input, pixels (square)
LANDMARK_SIZE = 256        # pose_landmark_full.tflite input, pixels (square)
HEATMAP_SIZE = 64          # its heatmap output, pixels (square)

# MediaPipe's pose_detection_cpu.pbtxt, SsdAnchorsCalculatorOptions: 5 layers, strides
# 8, 16, 32, 32, 32, one aspect ratio (1.0) plus the interpolated-scale anchor (the
# option's default 1.0), fixed anchor size, offsets 0.5. Layers of equal stride share
# their grid cells: 28^2 * 2 + 14^2 * 2 + 7^2 * 6 = 2254 anchors.
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
NUM_ANCHORS = 2254


def ssd_anchors(size: int = DETECTOR_SIZE, strides: tuple[int, ...] = ANCHOR_STRIDES) -> np.ndarray:
    """(2254, 2) anchor centres (x, y), normalised to [0, 1], in the model's output order.

    With ``fixed_anchor_size`` every anchor's width and height are 1, so only the centre
    matters. Order: layer groups of equal stride, then row, column, anchor.
    """
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)                 # aspect ratio 1.0 + interpolated scale, per layer
        fm = math.ceil(size / strides[i])
        g = (np.arange(fm, dtype=np.float64) + 0.5) / fm
        yy, xx = np.meshgrid(g, g, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], -1)          # (fm*fm, 2)
        out.append(np.repeat(cells, per_cell, axis=0))
        i = j
    anchors = np.concatenate(out).astype(np.float32)
    assert len(anchors) == NUM_ANCHORS or size != DETECTOR_SIZE
    return anchors


# ------------------------------------------------------------------ detector decoding

SCORE_CLIP = 100.0         # TensorsToDetectionsCalculator score_clipping_thresh
NMS_IOU = 0.3              # NonMaxSuppressionCalculator min_suppression_threshold (WEIGHTED)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large negative logits
    x = np.asarray(x, dtype=np.float32)
    return (np.float32(0.5) * (np.float32(1) + np.tanh(np.float32(0.5) * x))).astype(np.float32)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
                      min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detector's raw output -> (scores (N,), boxes (N, 4), keypoints (N, 4, 2)).

    ``raw_boxes`` (2254, 12): per anchor x, y, w, h of the face box and 4 keypoints
    (x, y), in 224-pixel units relative to the anchor centre (MediaPipe's
    ``reverse_output_order``, i.e. XYWH). ``raw_scores`` (2254,): logits, clipped to
    +-100, sigmoid. Output coordinates are detector-input pixels (continuous, 0..224);
    boxes are xyxy. Only anchors scoring at least ``min_score`` with a non-negative box
    are kept, in anchor order.
    """
    scores = sigmoid(np.clip(raw_scores.reshape(-1), -SCORE_CLIP, SCORE_CLIP))
    keep = np.flatnonzero(scores >= min_score)
    raw = raw_boxes.reshape(-1, 12)[keep].astype(np.float32)
    centre = anchors[keep] * DETECTOR_SIZE                      # (N, 2) pixels
    xy = raw[:, 0:2] + centre
    wh = raw[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    keypoints = raw[:, 4:12].reshape(-1, 4, 2) + centre[:, None, :]
    ok = (wh >= 0).all(axis=1)
    return scores[keep][ok], boxes[ok], keypoints[ok]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray,
                 iou_threshold: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-maximum suppression.

    Take the best remaining detection; every remaining one overlapping it by IoU >
    ``iou_threshold`` (itself included) is merged into it: box corners and keypoints
    become the score-weighted mean of the group, the score stays the best one's. The
    sort is stable, so equal scores keep anchor order (deterministic).
    """
    order = np.argsort(-scores, kind="stable")
    out_s, out_b, out_k = [], [], []
    while len(order):
        best = order[0]
        sim = _iou(boxes[best], boxes[order])
        group = order[sim > iou_threshold]
        if len(group) == 0:           # a degenerate (zero-area) best box overlaps nothing
            group = order[:1]
        w = scores[group][:, None]
        total = w.sum()
        out_s.append(scores[best])
        out_b.append((boxes[group] * w).sum(0) / total)
        out_k.append((keypoints[group] * w[:, :, None]).sum(0) / total)
        order = order[~np.isin(order, group)]
    if not out_s:
        return np.zeros(0, np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 4, 2), np.float32)
    return (np.array(out_s, np.float32), np.stack(out_b).astype(np.float32),
            np.stack(out_k).astype(np.float32))


# --------------------------------------------------------------------------------- ROI

ROI_SCALE = 1.25           # RectTransformationCalculator scale_x / scale_y (square_long)
ROI_TARGET_ANGLE = math.pi / 2   # rotation_vector_target_angle_degrees: 90


def normalize_radians(angle):
    """Into [-pi, pi), as MediaPipe's NormalizeRadians."""
    return angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi))


def roi_from_alignment(centre: np.ndarray, scale_point: np.ndarray,
                       scale: float = ROI_SCALE) -> np.ndarray:
    """ROI (cx, cy, size, rotation) from two alignment points in image pixels.

    BlazePose's detector keypoints 0 and 1 (hip centre; a point that encodes the body's
    size and direction) and the landmark model's auxiliary landmarks 33 and 34 mean the
    same thing. MediaPipe's ``AlignmentPointsRectsCalculator`` + ``RectTransformation``:
    size = 2 |scale_point - centre| * 1.25, and a rotation that turns the vector from the
    centre to the scale point straight up (90 degrees):
    ``rotation = 90 deg - atan2(-(y1 - y0), x1 - x0)``, normalised to [-pi, pi).
    """
    c = np.asarray(centre, dtype=np.float64)
    d = np.asarray(scale_point, dtype=np.float64) - c
    size = 2.0 * math.hypot(d[0], d[1]) * scale
    rotation = float(normalize_radians(ROI_TARGET_ANGLE - math.atan2(-d[1], d[0])))
    return np.array([c[0], c[1], size, rotation])


def rotation_matrix(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def roi_affine(roi: np.ndarray, grid: int) -> np.ndarray:
    """(2, 3) matrix: coordinates on a ``grid`` x ``grid`` raster spanning the ROI
    (crop: 256, heatmap: 64; continuous, pixel centres at +0.5) -> image pixels."""
    cx, cy, size, rotation = (float(v) for v in roi)
    r = rotation_matrix(rotation)
    a = np.empty((2, 3))
    a[:, :2] = r * (size / grid)
    a[:, 2] = np.array([cx, cy]) - r @ np.array([0.5 * size, 0.5 * size])
    return a


# The centre of heatmap pixel u stands for ROI-normalised u / 64, not (u + 0.5) / 64.
HEATMAP_SHIFT = 0.5


def heatmap_affine(roi: np.ndarray) -> np.ndarray:
    """(2, 3) heatmap coordinates -> image pixels for the ROI (see the module docstring)."""
    a = roi_affine(roi, HEATMAP_SIZE)
    a[:, 2] -= a[:, :2] @ np.array([HEATMAP_SHIFT, HEATMAP_SHIFT])
    return a


def heatmap_to_image(points_uv: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Heatmap coordinates (..., K, 2) -> image pixels (..., K, 2).

    ``affine`` (..., 2, 3) is the frame's heatmap -> image matrix (``Pose.heatmap_affine``,
    ``VideoPoses.heatmap_affine``), e.g. points (T, 25, 2) with affine (T, 2, 3). The
    centre of heatmap pixel (u, v) is (u + 0.5, v + 0.5)."""
    return apply_affine(points_uv, affine)


def image_to_heatmap(points_xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Image pixels (..., K, 2) -> heatmap coordinates (..., K, 2): the inverse of
    ``heatmap_to_image`` for the same heatmap -> image ``affine`` (..., 2, 3)."""
    return apply_affine(points_xy, invert_affine(affine))


def heatmap_argmax(heatmaps: np.ndarray) -> np.ndarray:
    """(..., K, 64, 64) -> (..., K, 2) heatmap coordinates (u + 0.5, v + 0.5) of each
    map's maximum (first one on ties)."""
    h = np.asarray(heatmaps)
    flat = h.reshape(h.shape[:-2] + (-1,)).argmax(-1)
    u = flat % h.shape[-1]
    v = flat // h.shape[-1]
    return np.stack([u, v], -1).astype(np.float64) + 0.5


# ------------------------------------------------------------------------------ crops

def sample_affine(image: np.ndarray, affine: np.ndarray, size: int, border: str) -> np.ndarray:
    """Bilinear resampling: output pixel (i, j) = ``image`` at ``affine @ (i+.5, j+.5, 1)``.

    ``image`` (H, W, 3) uint8, ``affine`` (2, 3) output -> image coordinates; returns
    (size, size, 3) uint8 (rounded, like MediaPipe's 8-bit ``warpPerspective``).
    ``border``: "zero" (black outside the image; the detector's letterbox, MediaPipe's
    BORDER_ZERO) or "replicate" (the nearest edge pixel; the landmark crop, MediaPipe's
    default BORDER_REPLICATE).

    Implemented with PIL's affine transform, whose bilinear filter uses the same
    pixel-centre convention, on a patch: the window of the image the output can reach,
    one pixel wider on every side, and outside the image filled by the border rule. So
    PIL never samples beyond its patch and the border is exactly the one asked for.
    """

    h, w = image.shape[:2]
    a = np.asarray(affine, dtype=np.float64)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    pts = corners @ a[:, :2].T + a[:, 2]
    x0 = int(math.floor(pts[:, 0].min())) - 2
    y0 = int(math.floor(pts[:, 1].min())) - 2
    x1 = int(math.ceil(pts[:, 0].max())) + 2
    y1 = int(math.ceil(pts[:, 1].max())) + 2
    if border == "replicate":
        if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
            patch = image[y0:y1, x0:x1]
        elif x0 < w and y0 < h and x1 > 0 and y1 > 0:
            # The part inside the image, edge-padded out to the window (np.pad copies
            # slices: several times faster than gathering with clamped indices).
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            patch = np.pad(image[sy0:sy1, sx0:sx1],
                           ((sy0 - y0, y1 - sy1), (sx0 - x0, x1 - sx1), (0, 0)), mode="edge")
        else:                 # the window misses the image: only edge pixels repeat
            rows = np.clip(np.arange(y0, y1), 0, h - 1)
            cols = np.clip(np.arange(x0, x1), 0, w - 1)
            patch = image[rows[:, None], cols[None, :]]
    elif border == "zero":
        patch = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    else:
        raise ValueError(f"border must be 'zero' or 'replicate', not {border!r}")
    shifted = a.copy()
    shifted[:, 2] -= (x0, y0)
    im = Image.fromarray(np.ascontiguousarray(patch))
    out = im.transform((size, size), Image.Transform.AFFINE, tuple(shifted.ravel()),
                       resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def letterbox_affine(width: int, height: int, size: int = DETECTOR_SIZE) -> np.ndarray:
    """(2, 3) detector-input pixels -> image pixels: the whole image fitted into a
    ``size`` square, aspect ratio kept, centred (MediaPipe's keep_aspect_ratio: the
    padding is split evenly between the two sides)."""
    s = max(width, height) / size
    return np.array([[s, 0.0, width / 2 - s * size / 2],
                     [0.0, s, height / 2 - s * size / 2]])
