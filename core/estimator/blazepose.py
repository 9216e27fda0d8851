"""BlazePose (MediaPipe Pose, "full" landmark model) offline on the CPU, without MediaPipe's
runtime: its two TFLite models run with LiteRT, and the glue MediaPipe's graphs do
around them is done here in numpy.

Where the models come from
--------------------------
``mediapipe==0.10.14`` is the newest MediaPipe release whose wheel still ships the
BlazePose models *and* accepts numpy 2 (0.10.15-0.10.21 ship them but declare numpy<2;
0.10.30 and later ship none). It is installed with ``pip install --no-deps`` (its
``protobuf<5`` pin conflicts with streamlit) and never imported: ``model_paths`` only
locates its package folder. The models run with ``ai-edge-litert`` (Google's LiteRT,
the maintained successor of ``tflite-runtime``, whose last release, 2.14 from 2023,
has no numpy 2 build), with a fixed thread count and XNNPACK, so the same input gives
bit-identical output.

The pipeline (MediaPipe's ``pose_landmark_cpu`` graph)
------------------------------------------------------
1. **Detector** (``pose_detection.tflite``) on the whole frame fitted into 224 x 224
   (aspect ratio kept, black letterbox, values in [-1, 1]); 2254 SSD anchors, score
   sigmoid, threshold ``min_detection_score`` (MediaPipe Pose's default 0.5), weighted
   NMS at IoU 0.3. Each detection has a face box and four keypoints; keypoints 0 (hip
   centre) and 1 (size and direction point) give the body's ROI: a square of side
   ``2 * 1.25 * |kp1 - kp0|`` centred on the hips, turned so the body is upright
   (``geometry.roi_from_alignment``).
2. **Landmark model** (``pose_landmark_full.tflite``) on the ROI warped into 256 x 256
   (bilinear, border pixels replicated, values in [0, 1]). It gives 39 landmarks x
   (x, y, z, visibility logit, presence logit) in crop pixels, a pose presence score
   (already a probability), a segmentation (unused) and a 64 x 64 x 39 heatmap.
   Landmarks 0-32 are BlazePose's; 33 and 34 are the auxiliary alignment points
   (hips, size/direction) that give the next frame's ROI; 35-38 are unused.
   As MediaPipe does (``RefineLandmarksFromHeatmapCalculator``, kernel 7), x and y of
   each landmark are then refined by the sigmoid-weighted mean position of its heatmap
   in a 7 x 7 window around it, where that window's maximum is at least 0.5.
3. **Tracking** (video): the first frame, and every frame after the person was lost,
   goes through the detector; otherwise the ROI comes from the previous frame's
   auxiliary landmarks (rotation-aligned, scale 1.25). A frame whose pose presence is
   below ``min_tracking_score`` (MediaPipe's default 0.5) loses the track, and -- unlike
   MediaPipe, which gives up on that frame -- the detector is run on that same frame at
   once, so a fast movement costs no frame. Video mode follows one person: the largest
   detection (largest ROI) when the track starts.

No landmark smoothing (MediaPipe's optional One-Euro filter): the temporal refinement
models are what smooths; they should see the single-frame estimator's raw output.

Checked against MediaPipe itself (``mp.solutions.pose``, static image mode, the same
0.10.14 models, 80 rendered single-person scenes of 256 x 256, 2026-12-01): it found
the person in 70, this module in 67 (the difference: detections scoring within 0.05
of the 0.5 threshold, and one pose presence near its threshold); on the 66 both found,
the landmarks differ by 1.2 px median (p90 6.1 px). What differs is the crop sampling
(see ``core.estimator.geometry``): with MediaPipe's emulated the crops match it to
one grey level and the landmarks to 0.6 px median; what is left are 8-bit rounding
differences the model amplifies. PCK@0.05 / 0.1 / 0.2 of the COCO17 keypoints on
those scenes: MediaPipe 0.430 / 0.619 / 0.729, this module 0.409 / 0.601 / 0.705.

Outputs
-------
``Pose`` (one person, one frame) and ``VideoPoses`` (the same, stacked over T frames,
with a ``found`` mask). All coordinates are image pixels in the continuous convention of
``core.estimator.geometry`` (pixel (i, j) has its centre at (i + .5, j + .5)):

* ``landmarks`` (33, 3): x, y in image pixels; z in the same pixel scale, relative to
  the hips' depth, negative towards the camera (MediaPipe's z times the ROI size).
* ``visibility``, ``presence`` (33,): sigmoid of the model's logits, in [0, 1].
* ``score``: the pose presence score; ``found`` = score >= ``min_tracking_score``.
* ``box`` (4,) xyxy: the tight box around the 33 landmarks (not the ROI; not the
  detector's box, which is the face's).
* ``roi`` (4,): (cx, cy, size, rotation) of the crop the landmark model saw.
* ``heatmaps`` (25, 64, 64) float32: the raw heatmap logits of the ``TEMPORAL25``
  keypoints (BlazePose indices ``core.keypoints.BLAZEPOSE_INDICES``), as the model gives
  them (negative values included; sigmoid gives MediaPipe's confidence).
* ``heatmap_affine`` (2, 3): heatmap coordinates -> image pixels for this frame;
  ``image_affine`` its inverse. See ``geometry.heatmap_to_image``.

A frame without a person: ``found`` False, landmarks / box / roi / affines NaN,
visibility / presence / score 0, heatmaps zeros.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from core.errors import PoseLabError
from core.estimator import geometry as G
from core.keypoints import BLAZEPOSE_INDICES

MEDIAPIPE_VERSION = "0.10.14"
DETECTOR_FILE = "modules/pose_detection/pose_detection.tflite"
LANDMARK_FILE = "modules/pose_landmark/pose_landmark_full.tflite"
INSTALL_HINT = (f"install them with `make setup`, or `pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}` "
                "and `pip install -r requirements.txt`")

NUM_LANDMARKS = 33
NUM_MODEL_LANDMARKS = 39            # 33 + 2 auxiliary (ROI) + 4 unused
AUX_CENTRE, AUX_SCALE = 33, 34
HEATMAP_KERNEL = 7                  # RefineLandmarksFromHeatmapCalculator kernel_size
HEATMAP_MIN_CONFIDENCE = 0.5        # its min_confidence_to_refine (default)
MIN_DETECTION_SCORE = 0.5           # mp.solutions.pose min_detection_confidence default
MIN_TRACKING_SCORE = 0.5            # mp.solutions.pose min_tracking_confidence default
DEFAULT_THREADS = 2
_TEMPORAL = np.array(BLAZEPOSE_INDICES)


# ------------------------------------------------------------------------- the models

def model_paths(model_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(detector, landmark model) ``.tflite`` paths.

    ``model_dir``: a folder laid out like the mediapipe package (``modules/...``); by
    default the installed mediapipe package, located without importing it. Raises
    ``PoseLabError`` (one line, with the install command) when they are missing.
    """
    if model_dir is None:
        try:
            spec = importlib.util.find_spec("mediapipe")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise PoseLabError(f"BlazePose models not found: the mediapipe package is not "
                               f"installed; {INSTALL_HINT}")
        root = Path(list(spec.submodule_search_locations)[0])
    else:
        root = Path(model_dir)
    paths = (root / DETECTOR_FILE, root / LANDMARK_FILE)
    for p in paths:
        if not p.is_file():
            raise PoseLabError(f"BlazePose model file missing: {p}; {INSTALL_HINT}")
    return paths


@lru_cache(maxsize=8)
def _version_string(detector: Path, landmark: Path) -> str:
    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()[:16]

    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "none"
    return (f"blazepose-full/mediapipe-{dist('mediapipe')}/det-{sha(detector)}/lmk-{sha(landmark)}"
            f"/litert-{dist('ai-edge-litert')}")


def model_version(model_dir: str | Path | None = None) -> str:
    """A string that changes whenever the estimator's output could: mediapipe's
    version, the first 16 hex digits of each model file's sha256 and LiteRT's version,
    e.g. ``blazepose-full/mediapipe-0.10.14/det-9ba9dd3d42efaaba/lmk-e9a5c5cb17f736fa/litert-2.3.0``.
    For cache keys and ``run.json``."""
    return _version_string(*model_paths(model_dir))


def _interpreter(path: Path, num_threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise PoseLabError("the LiteRT runtime (ai-edge-litert) is not installed; "
                           + INSTALL_HINT) from None
    it = Interpreter(model_path=str(path), num_threads=num_threads)
    it.allocate_tensors()
    return it


# ------------------------------------------------------------------------ the outputs

@dataclass
class Pose:
    """One person in one frame; see the module docstring for the conventions."""
    landmarks: np.ndarray          # (33, 3) float32 x, y, z image pixels
    visibility: np.ndarray         # (33,) float32 in [0, 1]
    presence: np.ndarray           # (33,) float32 in [0, 1]
    score: float                   # pose presence score in [0, 1]
    found: bool
    box: np.ndarray                # (4,) float32 xyxy of the 33 landmarks
    roi: np.ndarray                # (4,) float64 cx, cy, size, rotation (radians)
    heatmaps: np.ndarray           # (25, 64, 64) float32 raw logits, TEMPORAL25 order
    heatmap_affine: np.ndarray     # (2, 3) float64 heatmap -> image
    image_affine: np.ndarray       # (2, 3) float64 image -> heatmap
    from_detector: bool = False    # this frame's ROI came from the detector (not tracking)
    detection_score: float = float("nan")   # the detector's score when from_detector
    aux_landmarks: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))  # (2, 2) ROI points

    @classmethod
    def empty(cls) -> "Pose":
        """The pose of a frame in which nobody was found."""
        nan = np.float32(np.nan)
        return cls(landmarks=np.full((NUM_LANDMARKS, 3), nan), visibility=np.zeros(NUM_LANDMARKS, np.float32),
                   presence=np.zeros(NUM_LANDMARKS, np.float32), score=0.0, found=False,
                   box=np.full(4, nan), roi=np.full(4, np.nan),
                   heatmaps=np.zeros((len(_TEMPORAL), G.HEATMAP_SIZE, G.HEATMAP_SIZE), np.float32),
                   heatmap_affine=np.full((2, 3), np.nan), image_affine=np.full((2, 3), np.nan))


@dataclass
class VideoPoses:
    """One tracked person over T frames: ``Pose`` fields stacked, plus ``found``."""
    landmarks: np.ndarray          # (T, 33, 3) float32, NaN where not found
    visibility: np.ndarray         # (T, 33) float32
    presence: np.ndarray           # (T, 33) float32
    score: np.ndarray              # (T,) float32 pose presence score
    found: np.ndarray              # (T,) bool
    box: np.ndarray                # (T, 4) float32 xyxy
    roi: np.ndarray                # (T, 4) float64 cx, cy, size, rotation
    heatmaps: np.ndarray           # (T, 25, 64, 64) float32 (zeros where not found)
    heatmap_affine: np.ndarray     # (T, 2, 3) float64 heatmap -> image
    image_affine: np.ndarray       # (T, 2, 3) float64 image -> heatmap
    from_detector: np.ndarray      # (T,) bool
    image_size: tuple[int, int]    # (width, height) of the frames
    model_version: str = ""

    def __len__(self) -> int:
        return len(self.found)

    @classmethod
    def stack(cls, poses: list[Pose], image_size: tuple[int, int], model_version: str = "") -> "VideoPoses":
        if not poses:
            raise ValueError("no frames")

        def st(name, dtype):
            return np.stack([np.asarray(getattr(p, name), dtype=dtype) for p in poses])
        return cls(landmarks=st("landmarks", np.float32), visibility=st("visibility", np.float32),
                   presence=st("presence", np.float32), score=st("score", np.float32),
                   found=st("found", bool), box=st("box", np.float32), roi=st("roi", np.float64),
                   heatmaps=st("heatmaps", np.float32), heatmap_affine=st("heatmap_affine", np.float64),
                   image_affine=st("image_affine", np.float64), from_detector=st("from_detector", bool),
                   image_size=tuple(image_size), model_version=model_version)


# ------------------------------------------------------------------------ the estimator

class BlazePose:
    """BlazePose's detector and full landmark model on RGB uint8 frames (H, W, 3).

    ``num_threads`` is fixed per instance (LiteRT/XNNPACK output can depend on it); the
    same input then gives bit-identical output. One instance is not thread-safe.
    """

    def __init__(self, *, num_threads: int = DEFAULT_THREADS, model_dir: str | Path | None = None,
                 min_detection_score: float = MIN_DETECTION_SCORE,
                 min_tracking_score: float = MIN_TRACKING_SCORE):
        det_path, lmk_path = model_paths(model_dir)
        self.version = _version_string(det_path, lmk_path)
        self.num_threads = int(num_threads)
        self.min_detection_score = float(min_detection_score)
        self.min_tracking_score = float(min_tracking_score)
        self._det = _interpreter(det_path, self.num_threads)
        self._lmk = _interpreter(lmk_path, self.num_threads)
        self._anchors = G.ssd_anchors()
        self._det_in = self._det.get_input_details()[0]["index"]
        outs = {d["name"]: d for d in self._det.get_output_details()}
        # boxes (1, 2254, 12) and scores (1, 2254, 1); told apart by shape, not by name
        self._det_boxes = next(d["index"] for d in outs.values() if d["shape"][-1] == 12)
        self._det_scores = next(d["index"] for d in outs.values() if d["shape"][-1] == 1)
        self._lmk_in = self._lmk.get_input_details()[0]["index"]
        by_shape = {tuple(d["shape"]): d["index"] for d in self._lmk.get_output_details()}
        self._lmk_landmarks = by_shape[(1, NUM_MODEL_LANDMARKS * 5)]
        self._lmk_flag = by_shape[(1, 1)]
        self._lmk_heatmap = by_shape[(1, G.HEATMAP_SIZE, G.HEATMAP_SIZE, NUM_MODEL_LANDMARKS)]

    # ---------------------------------------------------------------- the two models

    def detect(self, image: np.ndarray, min_score: float | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """People in ``image`` -> (scores (N,), face boxes (N, 4) xyxy, keypoints (N, 4, 2)),
        image pixels, after weighted NMS, best score first. ``min_score``: the score
        threshold for this call (default ``min_detection_score``)."""
        image = _check_image(image)
        h, w = image.shape[:2]
        to_image = G.letterbox_affine(w, h)
        crop = G.sample_affine(image, to_image, G.DETECTOR_SIZE, border="zero")
        x = crop.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
        self._det.set_tensor(self._det_in, x[None])
        self._det.invoke()
        raw_boxes = self._det.get_tensor(self._det_boxes)[0]
        raw_scores = self._det.get_tensor(self._det_scores)[0, :, 0]
        threshold = self.min_detection_score if min_score is None else float(min_score)
        scores, boxes, kps = G.decode_detections(raw_boxes, raw_scores, self._anchors, threshold)
        scores, boxes, kps = G.weighted_nms(scores, boxes, kps)
        # detector pixels -> image pixels (a scale and a shift)
        s, tx, ty = to_image[0, 0], to_image[0, 2], to_image[1, 2]
        boxes = boxes * s + np.array([tx, ty, tx, ty], np.float32)
        kps = kps * s + np.array([tx, ty], np.float32)
        return scores, boxes.astype(np.float32), kps.astype(np.float32)

    def landmarks_in_roi(self, image: np.ndarray, roi: np.ndarray) -> Pose:
        """The landmark model on one ROI (cx, cy, size, rotation) of ``image``."""
        image = _check_image(image)
        roi = np.asarray(roi, dtype=np.float64)
        crop_to_image = G.roi_affine(roi, G.LANDMARK_SIZE)
        crop = G.sample_affine(image, crop_to_image, G.LANDMARK_SIZE, border="replicate")
        self._lmk.set_tensor(self._lmk_in, (crop.astype(np.float32) * np.float32(1 / 255))[None])
        self._lmk.invoke()
        raw = self._lmk.get_tensor(self._lmk_landmarks).reshape(NUM_MODEL_LANDMARKS, 5)
        score = float(self._lmk.get_tensor(self._lmk_flag).reshape(()))
        heat = self._lmk.get_tensor(self._lmk_heatmap)[0]            # (64, 64, 39)
        if not np.isfinite(score) or score < self.min_tracking_score:
            pose = Pose.empty()
            pose.score = score if np.isfinite(score) else 0.0
            return pose
        xy = refine_from_heatmap(raw[:, :2] / G.LANDMARK_SIZE, heat)  # (39, 2) ROI-normalised
        img_xy = G.apply_affine(xy * G.LANDMARK_SIZE, crop_to_image)  # (39, 2)
        z = raw[:NUM_LANDMARKS, 2] * (roi[2] / G.LANDMARK_SIZE)
        landmarks = np.concatenate([img_xy[:NUM_LANDMARKS], z[:, None]], axis=1).astype(np.float32)
        hm_affine = G.heatmap_affine(roi)
        return Pose(
            landmarks=landmarks,
            visibility=G.sigmoid(raw[:NUM_LANDMARKS, 3]),
            presence=G.sigmoid(raw[:NUM_LANDMARKS, 4]),
            score=score, found=True,
            box=np.concatenate([landmarks[:, :2].min(0), landmarks[:, :2].max(0)]).astype(np.float32),
            roi=roi,
            heatmaps=np.ascontiguousarray(np.moveaxis(heat[:, :, _TEMPORAL], -1, 0), dtype=np.float32),
            heatmap_affine=hm_affine, image_affine=G.invert_affine(hm_affine),
            aux_landmarks=img_xy[[AUX_CENTRE, AUX_SCALE]].copy())

    # ------------------------------------------------------------------ images, videos

    def estimate_image(self, image: np.ndarray, *, max_people: int | None = None) -> list[Pose]:
        """Every person the detector finds (up to ``max_people``), largest ROI first,
        each through the landmark model; people whose pose presence is below
        ``min_tracking_score`` are dropped. An empty list when nobody is found."""
        scores, _, kps = self.detect(image)
        rois = [G.roi_from_alignment(k[0], k[1]) for k in kps]
        order = sorted(range(len(rois)), key=lambda i: (-rois[i][2], i))
        poses = []
        for i in order:
            if max_people is not None and len(poses) >= max_people:
                break
            if not _usable_roi(rois[i], image.shape):
                continue
            pose = self.landmarks_in_roi(image, rois[i])
            if pose.found:
                pose.from_detector = True
                pose.detection_score = float(scores[i])
                poses.append(pose)
        return poses

    def iter_video(self, frames: Iterable[np.ndarray], *, tracking: bool = True,
                   progress: bool = False, total: int | None = None) -> Iterator[Pose]:
        """One ``Pose`` per frame for one person, tracked (see the module docstring).

        ``tracking=False`` runs the detector on every frame (MediaPipe's static image
        mode). Frames must all have the same size. A frame without a person yields
        ``Pose.empty()``.
        """
        roi = None
        size = None
        if total is None:
            total = _length(frames)
        for frame in tqdm(frames, total=total, desc="blazepose", unit="frame",
                          disable=not progress, leave=False):
            frame = _check_image(frame)
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise ValueError(f"frame size changed from {size[1]}x{size[0]} to "
                                 f"{frame.shape[1]}x{frame.shape[0]}")
            pose = None
            if roi is not None and tracking:
                pose = self.landmarks_in_roi(frame, roi)
                if not pose.found:
                    pose = None
            if pose is None:
                found = self.estimate_image(frame, max_people=1)
                pose = found[0] if found else Pose.empty()
            roi = None
            if pose.found:
                roi = G.roi_from_alignment(pose.aux_landmarks[0], pose.aux_landmarks[1])
                if not _usable_roi(roi, frame.shape):
                    roi = None
            yield pose

    def estimate_video(self, frames: Iterable[np.ndarray], *, tracking: bool = True,
                       progress: bool = True, total: int | None = None) -> VideoPoses:
        """``iter_video`` stacked into arrays (T, ...); heatmaps take 410 kB a frame, so
        stream ``iter_video`` instead for long videos."""
        size: list[tuple[int, int]] = []

        def seen():
            for f in frames:
                if not size:
                    size.append((np.shape(f)[1], np.shape(f)[0]))
                yield f
        poses = list(self.iter_video(seen(), tracking=tracking, progress=progress,
                                     total=total if total is not None else _length(frames)))
        if not poses:
            raise ValueError("estimate_video: no frames")
        return VideoPoses.stack(poses, size[0], self.version)


def _length(frames) -> int | None:
    try:
        return len(frames)
    except TypeError:           # a generator, or a video whose frame count is unknown
        return None


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {a.dtype} {a.shape}")
    return a


def _usable_roi(roi: np.ndarray, shape: tuple[int, ...]) -> bool:
    """A ROI worth a landmark pass: finite, at least 8 px, at most 4x the frame's long
    side (beyond that a detection is garbage, and the crop's patch would be huge)."""
    return bool(np.isfinite(roi).all() and 8 <= roi[2] <= 4 * max(shape[0], shape[1]))


# ------------------------------------------------------------------ heatmap refinement

def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """MediaPipe's ``RefineLandmarksFromHeatmapCalculator``, vectorised.

    ``xy`` (K, 2) ROI-normalised landmarks, ``heatmap`` (64, 64, K) logits. For each
    landmark inside the heatmap, the sigmoid-weighted mean position over a ``kernel``
    square window around it (clipped at the edges) replaces x, y when the window's
    maximum confidence is at least ``min_confidence``. Heatmap pixel (u, v) stands for
    ROI-normalised (u / 64, v / 64), as in MediaPipe and as the model agrees (see
    ``core.estimator.geometry``); the window is centred on the pixel the landmark falls
    in, ``floor(64 n)`` (MediaPipe truncates towards zero, which differs only for
    landmarks just outside the ROI's top / left edge: those it refines, this skips).
    """
    hs = heatmap.shape[0]
    k = xy.shape[0]
    out = xy.astype(np.float32).copy()
    cell = np.floor(xy * hs).astype(np.int64)                       # (K, 2) col, row
    inside = ((cell >= 0) & (cell < hs)).all(axis=1)
    half = (kernel - 1) // 2
    offs = np.arange(-half, half + 1)
    cols = cell[:, 0:1] + offs                                       # (K, kernel)
    rows = cell[:, 1:2] + offs
    col_ok = (cols >= 0) & (cols < hs)
    row_ok = (rows >= 0) & (rows < hs)
    cc = np.clip(cols, 0, hs - 1)
    rr = np.clip(rows, 0, hs - 1)
    ch = np.arange(k)
    conf = G.sigmoid(heatmap[rr[:, :, None], cc[:, None, :], ch[:, None, None]])  # (K, kr, kc)
    conf = conf * (row_ok[:, :, None] & col_ok[:, None, :])
    total = conf.sum(axis=(1, 2))
    peak = conf.max(axis=(1, 2))
    wu = (conf.sum(axis=1) * cc).sum(axis=1)
    wv = (conf.sum(axis=2) * rr).sum(axis=1)
    ok = inside & (total > 0) & (peak >= min_confidence)
    safe = np.where(total > 0, total, 1)
    out[ok, 0] = (wu / safe / hs)[ok]
    out[ok, 1] = (wv / safe / hs)[ok]
    return out


# --------------------------------------------------------------------- keypoint sets

# COCO17 order (core.keypoints.COCO17) <- BlazePose index.
COCO17_FROM_BLAZEPOSE = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
VISIBLE_THRESHOLD = 0.5      # visibility score at or above it: COCO v = 2 (visible)
LABELLED_THRESHOLD = 0.1     # at or above it (and below the other): v = 1; below: v = 0


def coco17_from_blazepose(landmarks: np.ndarray, visibility: np.ndarray | None = None) -> np.ndarray:
    """BlazePose landmarks (..., 33, >=2) -> COCO17 keypoints (..., 17, 3) [x, y, v].

    nose 0, eyes 2 / 5 (the eye centres, not inner / outer corners), ears 7 / 8,
    shoulders 11 / 12, elbows 13 / 14, wrists 15 / 16, hips 23 / 24, knees 25 / 26,
    ankles 27 / 28. COCO-style v from BlazePose's visibility score: 2 where it is at
    least 0.5 (MediaPipe's own drawing threshold), 1 where at least 0.1 (the model says
    "probably occluded"), else 0; and 0 wherever the landmark is NaN (nobody found),
    with x = y = 0 there as in COCO. Without ``visibility`` every finite point gets v 2.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    xy = lm[..., COCO17_FROM_BLAZEPOSE, :2]
    if visibility is None:
        vis = np.ones(xy.shape[:-1], np.float32)
    else:
        vis = np.asarray(visibility, dtype=np.float32)[..., COCO17_FROM_BLAZEPOSE]
    v = np.where(vis >= VISIBLE_THRESHOLD, 2, np.where(vis >= LABELLED_THRESHOLD, 1, 0))
    finite = np.isfinite(xy).all(-1)
    v = np.where(finite, v, 0).astype(np.float32)
    xy = np.where(finite[..., None], xy, 0.0)
    return np.concatenate([xy, v[..., None]], axis=-1)


def temporal25_from_blazepose(landmarks: np.ndarray) -> np.ndarray:
    """BlazePose landmarks (..., 33, C) -> TEMPORAL25 keypoints (..., 25, C): the study's
    indices {0, 7, 8, 11..32}, in ``core.keypoints.TEMPORAL25`` order (the heatmaps'
    order too)."""
    return np.asarray(landmarks)[..., _TEMPORAL, :]
