"""BlazePose estimator (``core.estimator``) on people the project's renderer draws.

Thresholds were measured on these very scenes (2-core CPU, 2026-12-01): the median
distance between BlazePose's TEMPORAL25 landmarks and the renderer's keypoints is
0.013-0.021 of the keypoint box's long side on the jumping-jack clip below (0.019 on
the single image), so the tests allow 0.06; a heatmap's argmax lies 0.4-1.4 heatmap
pixels from its landmark (median over keypoints), allowed 2.5.
"""
from __future__ import annotations

import dataclasses
import math

import av
import numpy as np
import pytest
from PIL import Image

from core.errors import DataError, PoseLabError
from core.estimator import geometry as G
from core.estimator.blazepose import (
    COCO17_FROM_BLAZEPOSE,
    BlazePose,
    Pose,
    coco17_from_blazepose,
    model_paths,
    model_version,
    refine_from_heatmap,
    temporal25_from_blazepose,
)
from core.estimator.video import natural_key, open_frames, read_frames
from core.keypoints import BLAZEPOSE_INDICES, COCO17, TEMPORAL25, TEMPORAL25_FROM_BODY
from core.synthetic import body as B
from core.synthetic.poses import sample_pose
from core.synthetic.render import render_scene
from core.synthetic.scene import sample_scene

# --------------------------------------------------------------------- rendered people

def render_clip(seed: int, frames: int, *, size: int = 256, cls: str = "jumping_jack"):
    """One person of class ``cls`` in a rendered room, moving through ``frames`` phases
    of the exercise (room, look and camera fixed) -> (T, H, W, 3) uint8, (T, 25, 3) GT."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, size=size, people_max=1, classes=(cls,))
    person = scene.people[0]
    person_seed = int(rng.integers(2 ** 31))
    images, truth = [], []
    for t in range(frames):
        phase = 0.8 * t / (frames - 1) if frames > 1 else None
        s = sample_pose(cls, np.random.default_rng(person_seed), phase=phase,
                          variation=person.variation, shape=person.shape)
        joints = B.pose_body(person.shape, s.pose, s.root_rotation, (0.0, 0.0), person.heading)
        scene.people[0] = dataclasses.replace(person, joints=joints)
        res = render_scene(scene, rng=np.random.default_rng([seed, t]))
        images.append(np.asarray(res.image))
        truth.append(res.people[0].keypoints[TEMPORAL25_FROM_BODY])
    return np.stack(images), np.stack(truth).astype(np.float32)


def relative_errors(landmarks33: np.ndarray, truth25: np.ndarray) -> np.ndarray:
    """Distances of the visible TEMPORAL25 keypoints / the GT keypoint box's long side."""
    vis = truth25[:, 2] > 0
    pts = truth25[vis, :2]
    norm = (pts.max(0) - pts.min(0)).max()
    d = np.linalg.norm(temporal25_from_blazepose(landmarks33)[:, :2] - truth25[:, :2], axis=1)
    return d[vis] / norm


@pytest.fixture(scope="module")
def bp() -> BlazePose:
    return BlazePose(num_threads=2)


@pytest.fixture(scope="module")
def person_image():
    images, truth = render_clip(0, 1)
    return images[0], truth[0]


# ------------------------------------------------------------------------- the models

def test_model_files_and_version():
    det, lmk = model_paths()
    assert det.name == "pose_detection.tflite" and lmk.name == "pose_landmark_full.tflite"
    v = model_version()
    assert v.startswith("blazepose-full/mediapipe-0.10.14/det-") and "/lmk-" in v and "/litert-" in v
    assert model_version() == v


def test_missing_models_say_how_to_install(tmp_path):
    with pytest.raises(PoseLabError) as e:
        model_paths(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "pose_detection.tflite" in msg
    assert "pip install --no-deps mediapipe==0.10.14" in msg


# ----------------------------------------------------------------------------- geometry

def test_anchors_follow_mediapipe_layout():
    a = G.ssd_anchors()
    assert a.shape == (2254, 2)
    # stride 8: 28 x 28 cells x 2 anchors, first cell centre (0.5 / 28, 0.5 / 28)
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28], rtol=1e-6)
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28], rtol=1e-6)
    # stride 16 starts after 1568; stride 32 (three layers, 6 anchors a cell) after 1960
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14], rtol=1e-6)
    np.testing.assert_allclose(a[1960:1966], np.tile([[0.5 / 7, 0.5 / 7]], (6, 1)), rtol=1e-6)
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7], rtol=1e-6)


def test_weighted_nms_merges_overlaps_by_score():
    scores = np.array([0.6, 0.9, 0.8], np.float32)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    kps = np.zeros((3, 4, 2), np.float32)
    kps[0, :, 0], kps[1, :, 0], kps[2, :, 0] = 0.0, 3.0, 7.0
    s, b, k = G.weighted_nms(scores, boxes, kps)
    np.testing.assert_allclose(s, [0.9, 0.8])                 # the best score, not a mean
    np.testing.assert_allclose(b[0], [0.6, 0, 10.6, 10], rtol=1e-6)   # (0.6*0 + 0.9*1) / 1.5
    np.testing.assert_allclose(k[0, :, 0], 1.8, rtol=1e-6)
    np.testing.assert_allclose(b[1], boxes[2])


def test_roi_turns_the_body_upright():
    c = np.array([100.0, 80.0])
    up = G.roi_from_alignment(c, c + [0, -40])                # scale point above the hips
    np.testing.assert_allclose(up, [100, 80, 100, 0], atol=1e-12)   # 2 * 40 * 1.25
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = rng.normal(size=2) * 30
        roi = G.roi_from_alignment(c, c + d)
        assert -math.pi <= roi[3] < math.pi
        a = G.roi_affine(roi, 256)
        top = G.apply_affine(np.array([[128.0, 0.0]]), a)[0]  # the crop's top centre
        # lies on the ray from the hips through the scale point, at size / 2
        np.testing.assert_allclose(top - c, d / np.linalg.norm(d) * roi[2] / 2, atol=1e-9)


def test_heatmap_mapping_round_trips_and_follows_the_formula():
    rng = np.random.default_rng(1)
    rois = np.stack([rng.uniform(0, 500, 6), rng.uniform(0, 400, 6), rng.uniform(20, 600, 6),
                     rng.uniform(-math.pi, math.pi, 6)], 1)
    affines = np.stack([G.heatmap_affine(r) for r in rois])               # (T, 2, 3)
    uv = rng.uniform(-5, 69, (6, 25, 2))                                   # (T, K, 2)
    xy = G.heatmap_to_image(uv, affines)
    np.testing.assert_allclose(G.image_to_heatmap(xy, affines), uv, atol=1e-9)
    np.testing.assert_allclose(G.heatmap_to_image(G.image_to_heatmap(xy, affines), affines), xy,
                               atol=1e-9)
    # one affine for all frames broadcasts
    np.testing.assert_allclose(G.heatmap_to_image(uv, affines[0]),
                               np.stack([G.heatmap_to_image(u, affines[0]) for u in uv]))
    # the centre of heatmap pixel (u, v) is the image point of ROI-normalised (u, v) / 64
    cx, cy, size, rot = rois[2]
    u, v = 10, 41
    n = np.array([u, v]) / 64
    r = G.rotation_matrix(rot)
    expect = np.array([cx, cy]) + r @ ((n - 0.5) * size)
    np.testing.assert_allclose(G.heatmap_to_image(np.array([[u + 0.5, v + 0.5]]), affines[2])[0],
                               expect, atol=1e-9)
    np.testing.assert_allclose(G.invert_affine(G.invert_affine(affines)), affines, atol=1e-9)


def _bilinear_reference(img, affine, size, border):
    h, w = img.shape[:2]
    g = np.arange(size) + 0.5
    xs = affine[0, 0] * g[None, :] + affine[0, 1] * g[:, None] + affine[0, 2] - 0.5
    ys = affine[1, 0] * g[None, :] + affine[1, 1] * g[:, None] + affine[1, 2] - 0.5
    f = img.astype(np.float64)

    def px(yy, xx):
        v = f[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        if border == "zero":
            v = np.where(((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None], v, 0)
        return v
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    return (px(y0, x0) * (1 - fx) * (1 - fy) + px(y0, x0 + 1) * fx * (1 - fy)
            + px(y0 + 1, x0) * (1 - fx) * fy + px(y0 + 1, x0 + 1) * fx * fy)


@pytest.mark.parametrize("border", ["replicate", "zero"])
def test_crop_is_bilinear_with_the_border_asked_for(border):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    for _ in range(40):     # ROIs inside, across the edge and wholly outside the image
        roi = np.array([rng.uniform(-40, 110), rng.uniform(-40, 90), rng.uniform(5, 150),
                        rng.uniform(-math.pi, math.pi)])
        a = G.roi_affine(roi, 32)
        out = G.sample_affine(img, a, 32, border)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        assert np.abs(out - _bilinear_reference(img, a, 32, border)).max() <= 1.0


# ------------------------------------------------------------------ the estimator itself

def test_finds_a_rendered_person(bp, person_image):
    image, truth = person_image
    poses = bp.estimate_image(image)
    assert len(poses) == 1
    p = poses[0]
    assert p.found and p.from_detector and p.score >= 0.5 and p.detection_score >= 0.5
    assert p.landmarks.shape == (33, 3) and p.landmarks.dtype == np.float32
    assert p.heatmaps.shape == (25, 64, 64) and p.heatmaps.dtype == np.float32
    assert p.heatmaps.min() < 0 < p.heatmaps.max()            # raw logits
    assert ((p.visibility >= 0) & (p.visibility <= 1)).all()
    err = relative_errors(p.landmarks, truth)
    assert np.median(err) < 0.06, np.median(err)
    assert (err < 0.1).mean() >= 0.8
    # the box is the landmarks' box, inside the ROI's reach
    np.testing.assert_allclose(p.box, np.r_[p.landmarks[:, :2].min(0), p.landmarks[:, :2].max(0)])
    np.testing.assert_allclose(G.invert_affine(p.heatmap_affine), p.image_affine, atol=1e-12)


def test_heatmap_argmax_lands_on_the_landmark(bp, person_image):
    image, truth = person_image
    p = bp.estimate_image(image)[0]
    peaks = G.heatmap_to_image(G.heatmap_argmax(p.heatmaps), p.heatmap_affine)   # (25, 2)
    lm = temporal25_from_blazepose(p.landmarks)[:, :2]
    hm_px = p.roi[2] / 64                                       # image pixels per heatmap pixel
    assert np.median(np.linalg.norm(peaks - lm, axis=1)) / hm_px < 2.5
    # and the other way: the landmark, mapped into the heatmap, falls on its peak's pixel
    # or a neighbour for most keypoints
    uv = G.image_to_heatmap(lm, p.heatmap_affine)
    cells = np.floor(G.heatmap_argmax(p.heatmaps))
    assert (np.abs(np.floor(uv) - cells).max(1) <= 1).mean() >= 0.7


def test_heatmap_refinement_moves_to_the_weighted_centre():
    heat = np.full((64, 64, 2), -10.0, np.float32)
    heat[20, 30, 0] = heat[20, 31, 0] = 10.0          # two equal peaks: centre u = 30.5
    xy = np.array([[30.2 / 64, 20.4 / 64], [0.5, 0.5]])
    out = refine_from_heatmap(xy, heat)
    np.testing.assert_allclose(out[0], [30.5 / 64, 20 / 64], atol=1e-3)
    np.testing.assert_allclose(out[1], xy[1], atol=1e-7)   # nothing confident: unchanged


def test_nobody_in_the_frame(bp):
    plain = np.full((240, 320, 3), 128, np.uint8)
    assert bp.estimate_image(plain) == []
    [pose] = list(bp.iter_video([plain]))
    assert not pose.found
    assert np.isnan(pose.landmarks).all() and np.isnan(pose.box).all()
    assert not pose.heatmaps.any() and pose.heatmaps.shape == (25, 64, 64)
    tiny = np.zeros((1, 1, 3), np.uint8)                  # degenerate, still no crash
    assert bp.estimate_image(tiny) == []
    with pytest.raises(ValueError):
        bp.estimate_image(np.zeros((10, 10), np.uint8))


def test_deterministic(person_image):
    image, _ = person_image
    a = BlazePose(num_threads=2).estimate_image(image)[0]
    b = BlazePose(num_threads=2).estimate_image(image)[0]
    for f in ("landmarks", "visibility", "presence", "heatmaps", "roi", "heatmap_affine"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.score == b.score


def test_video_tracking_keeps_the_person(bp):
    frames, truth = render_clip(4, 10)
    v = bp.estimate_video(frames, progress=False)
    assert len(v) == 10 and v.found.all()
    assert v.from_detector[0] and not v.from_detector[1:].any()   # tracked after frame 0
    assert v.landmarks.shape == (10, 33, 3) and v.heatmaps.shape == (10, 25, 64, 64)
    assert v.heatmap_affine.shape == (10, 2, 3) and v.image_size == (256, 256)
    for t in range(10):
        assert np.median(relative_errors(v.landmarks[t], truth[t])) < 0.06, t
    # detector on every frame: same person, every ROI from the detector
    w = bp.estimate_video(frames[:3], tracking=False, progress=False)
    assert w.found.all() and w.from_detector.all()


def test_video_with_an_empty_frame_masks_it_and_redetects(bp):
    frames, _ = render_clip(4, 3)
    empty = np.full_like(frames[0], 90)
    v = bp.estimate_video([frames[0], empty, frames[2]], progress=False)
    assert v.found.tolist() == [True, False, True]
    assert v.from_detector.tolist() == [True, False, True]
    assert np.isnan(v.landmarks[1]).all() and not v.heatmaps[1].any()
    assert np.isnan(v.heatmap_affine[1]).all()
    with pytest.raises(ValueError, match="frame size changed"):
        bp.estimate_video([frames[0], frames[0][:100]], progress=False)


# --------------------------------------------------------------------------- keypoints

def test_coco17_and_temporal25_mappings():
    lm = np.arange(33 * 3, dtype=np.float32).reshape(33, 3)
    vis = np.full(33, 0.9, np.float32)
    vis[13], vis[14] = 0.3, 0.05                       # left elbow "occluded", right elbow gone
    kp = coco17_from_blazepose(lm, vis)
    assert kp.shape == (17, 3)
    names = dict(zip(COCO17, COCO17_FROM_BLAZEPOSE))
    assert (names["nose"], names["left_eye"], names["right_ear"], names["left_hip"],
            names["right_ankle"]) == (0, 2, 8, 23, 28)
    np.testing.assert_array_equal(kp[:, :2], lm[COCO17_FROM_BLAZEPOSE, :2])
    assert kp[COCO17.index("left_elbow"), 2] == 1 and kp[COCO17.index("right_elbow"), 2] == 0
    assert kp[COCO17.index("nose"), 2] == 2
    empty = coco17_from_blazepose(np.full((2, 33, 3), np.nan), np.zeros((2, 33)))
    assert empty.shape == (2, 17, 3) and not empty.any()
    t = temporal25_from_blazepose(lm)
    assert t.shape == (25, 3) and len(TEMPORAL25) == 25
    np.testing.assert_array_equal(t, lm[list(BLAZEPOSE_INDICES)])


def test_empty_pose_has_the_full_shapes():
    p = Pose.empty()
    assert p.landmarks.shape == (33, 3) and p.heatmaps.shape == (25, 64, 64) and not p.found


# ------------------------------------------------------------------------ frame readers

def _write_video(path, frames, fps=25, rotation=0):

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)    # counter-clockwise, like a phone's metadata
        s.options = {"crf": "0"}       # lossless luma: colours survive the round trip
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_reads_a_video_it_wrote(tmp_path):
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    for i in range(6):
        frames[i, :, :] = (40 * i, 100, 200 - 30 * i)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames)
    src = open_frames(path)
    assert src.kind == "video" and src.size == (64, 48) and src.fps == 25 and src.frame_count == 6
    got = list(src)
    assert len(got) == 6 and got[0].dtype == np.uint8 and got[0].shape == (48, 64, 3)
    assert np.abs(np.stack(got).astype(int) - frames).mean() < 4     # YUV 4:2:0 rounding
    assert len(list(src)) == 6                                       # iterable again
    arr, fps = read_frames(path)
    assert arr.shape == (6, 48, 64, 3) and fps == 25
    with pytest.raises(DataError, match="more than"):
        list(open_frames(path, max_frames=4))


def test_video_display_rotation_is_applied(tmp_path):
    frames = np.zeros((2, 48, 64, 3), np.uint8)
    frames[:, :24, :32] = 255                        # white top-left quadrant
    path = tmp_path / "phone.mp4"
    _write_video(path, frames, rotation=90)
    src = open_frames(path)
    assert src.size == (48, 64)                      # upright: portrait
    f = next(iter(src))
    assert f.shape == (64, 48, 3)
    # turned 90 degrees counter-clockwise: the top-left quadrant is now bottom-left
    assert f[40:, :20].mean() > 200 and f[:24, :20].mean() < 50 and f[40:, 28:].mean() < 50


def test_estimates_a_video_file(bp, tmp_path):
    frames, truth = render_clip(4, 5)
    path = tmp_path / "person.mp4"
    _write_video(path, frames)
    v = bp.estimate_video(open_frames(path), progress=False)
    assert len(v) == 5 and v.found.all() and v.image_size == (256, 256)
    assert v.model_version == bp.version
    for t in range(5):
        assert np.median(relative_errors(v.landmarks[t], truth[t])) < 0.06, t


def test_rejects_what_is_not_a_video(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(DataError) as e:
        open_frames(fake)
    assert e.value.path == fake and "notes.mp4" in str(e.value) and "\n" not in str(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_frames(empty)
    with pytest.raises(DataError, match="no such file"):
        open_frames(tmp_path / "missing.mp4")
    # a file FFmpeg opens, without a video stream
    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate = 8000
        for pkt in list(s.encode(f)) + list(s.encode()):
            c.mux(pkt)
    with pytest.raises(DataError, match="no video stream"):
        open_frames(wav)


def test_reads_a_folder_of_frames_in_natural_order(tmp_path):

    for i in (1, 2, 10):
        Image.fromarray(np.full((8, 12, 3), i * 20, np.uint8)).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_frames(tmp_path, fps=12.5)
    assert src.kind == "frames" and src.size == (12, 8) and src.fps == 12.5 and len(src) == 3
    assert [p.name for p in src.frame_paths] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [int(f[0, 0, 0]) for f in src] == [20, 40, 200]
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]
    Image.fromarray(np.zeros((9, 12, 3), np.uint8)).save(tmp_path / "frame11.png")
    with pytest.raises(DataError, match="one size"):
        list(open_frames(tmp_path))
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_frames(tmp_path / "sub")
