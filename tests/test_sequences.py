"""core.temporal.sequences / estimator / motion: .npz format, splits, windows, readers, synthesis."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from core.errors import DataError
from core.heatmaps import image_to_heatmap
from core.keypoints import COCO17, TEMPORAL25
from core.synthetic.estimator import simulate_estimator
from core.synthetic.motion import MOVEMENTS, animate
from core.temporal.external import (
    BROKEN_FRAME,
    MANUAL_UNMATCHED,
    MANUAL_USED,
    OUTSIDE_FRAME,
    PENN_FRAMES_MISMATCH,
    load_brace,
    load_penn_action,
)
from core.temporal.sequences import (
    NOT_DATA_NPZ,
    NOT_SEGMENT,
    convert_dataset,
    load_sequences,
    split_videos,
    write_dataset,
)
from core.temporal.synth import SequenceSpec, write_sequence_dataset
from core.temporal.videos import Video, load_video, save_video
from core.temporal.windows import WindowDataset, identity_pck

K = 25


def make_video(vid="v", t=12, size=16, seed=0, split=None):
    """A tiny video whose gt keypoints sit at known places in a 32x32 px box."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((t, K, 3), np.float32)
    kp[..., 0] = 10 + rng.uniform(0, 12, (t, K))
    kp[..., 1] = 40 + rng.uniform(0, 12, (t, K))
    kp[..., 2] = 2
    boxes = np.tile(np.array([4.0, 34.0, 36.0, 66.0], np.float32), (t, 1))
    hm = rng.normal(0, 0.1, (t, K, size, size)).astype(np.float16)
    return Video(id=vid, heatmaps=hm, boxes=boxes, keypoints=kp, joint_mask=np.ones(K, bool),
                 image_size=(64, 96), split=split)


# ----------------------------------------------------------------------------- windows

def test_window_counts_and_items():
    videos = [make_video("a", t=12), make_video("b", t=7, seed=1)]
    train = WindowDataset(videos, training=True)
    test = WindowDataset(videos)
    assert len(train) == (12 - 4) + (7 - 4)                 # stride 1
    assert len(test) == 2 + 1                               # stride k: 0, 5 | 0
    assert [(v, s) for v, s in test.windows] == [(0, 0), (0, 5), (1, 0)]
    assert WindowDataset(videos, stride=3).windows[:3] == [(0, 0), (0, 3), (0, 6)]
    item = test[1]
    assert item["heatmaps"].shape == item["target"].shape == (5, K, 16, 16)
    assert item["heatmaps"].dtype == torch.float32 and item["keypoints"].shape == (5, K, 2)
    assert item["visible"].dtype == torch.bool and item["norm"].shape == (5,)
    assert item["input_keypoints"].shape == (5, K, 2)
    assert (item["video"], item["start"]) == (0, 5)
    assert (item["heatmaps"] >= 0).all()
    np.testing.assert_allclose(item["heatmaps"].sum((-2, -1)).numpy(), 255.0, rtol=2e-3)
    np.testing.assert_allclose(item["target"].sum((-2, -1)).numpy(), 255.0, rtol=2e-3)
    # gt in heatmap px: box (4, 34)-(36, 66) onto 16 px -> u = (x - 4) / 32 * 16 - 0.5
    kp = videos[0].keypoints[5:10]
    np.testing.assert_allclose(item["keypoints"][..., 0].numpy(), (kp[..., 0] - 4) / 2 - 0.5, rtol=1e-5)
    loader = torch.utils.data.DataLoader(train, batch_size=4)
    batch = next(iter(loader))
    assert batch["heatmaps"].shape == (4, 5, K, 16, 16)


def test_masked_and_missing_joints_are_not_visible_and_norms():
    v = make_video(t=6)
    v.joint_mask[TEMPORAL25.index("left_pinky")] = False
    v.keypoints[2, TEMPORAL25.index("nose"), 2] = 0
    ds = WindowDataset([v])
    item = ds[0]
    assert not item["visible"][:, TEMPORAL25.index("left_pinky")].any()
    assert not item["visible"][2, TEMPORAL25.index("nose")]
    assert (item["target"][:, TEMPORAL25.index("left_pinky")] == 0).all()
    assert item["visible"].sum() == 5 * K - 5 - 1
    # bbox norm = max side of the visible gt box in heatmap px (unclamped)
    frames = ds.frames[0]
    vis = frames["visible"][0]
    pts = (v.keypoints[0, :, :2] - [4, 34]) / 2 - 0.5
    side = (pts[vis].max(0) - pts[vis].min(0)).max()
    assert frames["norm"][0] == pytest.approx(side, rel=1e-5)
    torso = WindowDataset([v], norm="torso").frames[0]["norm"][0]
    ls, rh = TEMPORAL25.index("left_shoulder"), TEMPORAL25.index("right_hip")
    assert torso == pytest.approx(np.linalg.norm(pts[ls] - pts[rh]), rel=1e-5)


# ----------------------------------------------------------------------------- splits

def test_split_by_video_deterministic_and_disjoint():
    videos = [make_video(f"v{i:02d}", t=5, size=8, seed=i) for i in range(10)]
    a = split_videos(videos, seed=3)
    b = split_videos(list(reversed(videos)), seed=3)
    ids = {s: [v.id for v in a[s]] for s in a}
    assert ids == {s: [v.id for v in b[s]] for s in b}          # order-independent, seeded
    assert [len(ids[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    flat = sum(ids.values(), [])
    assert sorted(flat) == sorted(v.id for v in videos) and len(set(flat)) == 10
    others = [{v.id for v in split_videos(videos, seed=s)["test"]} for s in range(6)]
    assert len({frozenset(o) for o in others}) > 1              # the seed matters
    # explicit split fields win; train-only labels get a val carved out of them
    fixed = [make_video(f"t{i}", t=5, size=8, split="train") for i in range(8)] + \
            [make_video(f"x{i}", t=5, size=8, split="test") for i in range(2)]
    s = split_videos(fixed, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert {v.id for v in s["test"]} == {"x0", "x1"}


# ----------------------------------------------------------------------------- .npz format

def test_npz_round_trip_and_dataset_folder(tmp_path):
    v = make_video("clip", t=6)
    v.frame_paths = tuple(f"frames/{i:03d}.png" for i in range(6))
    save_video(tmp_path / "clip.npz", v)
    back = load_video(tmp_path / "clip.npz")
    np.testing.assert_array_equal(back.heatmaps, v.heatmaps)
    np.testing.assert_array_equal(back.keypoints, v.keypoints)
    assert back.frame_paths == v.frame_paths and back.image_size == (64, 96)
    index = write_dataset(tmp_path / "ds", [make_video(f"v{i}", t=6, seed=i) for i in range(5)])
    seq = load_sequences(tmp_path / "ds")
    assert seq.keypoints == TEMPORAL25 and seq.joint_mask.all()
    assert sum(len(x) for x in seq.splits.values()) == 5
    assert load_sequences(index).fingerprint == seq.fingerprint
    # a single .npz is cut in time 60/20/20 so it can still be trained and tested
    save_video(tmp_path / "long.npz", make_video("long", t=40))
    one = load_sequences(tmp_path / "long.npz")
    assert [x.num_frames for s in ("train", "val", "test") for x in one.splits[s]] == [24, 8, 8]
    # refuses to replace a folder that is not a sequence dataset
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="other"):
        write_dataset(tmp_path / "other", [v])
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def test_npz_nan_coordinates_allowed_only_where_invisible(tmp_path):
    v = make_video(t=5)
    v.keypoints[0, 3, :2] = np.nan
    v.keypoints[0, 3, 2] = 0
    save_video(tmp_path / "ok.npz", v)
    assert np.isfinite(load_video(tmp_path / "ok.npz").keypoints).all()
    v.keypoints[0, 3, 2] = 2
    save_video(tmp_path / "bad.npz", v)
    with pytest.raises(DataError, match="bad.npz.*NaN"):
        load_video(tmp_path / "bad.npz")


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("problem,arrays,match", [
    ("mismatch", dict(heatmaps=np.zeros((6, K, 8, 8), np.float32), boxes=np.ones((5, 4))), "boxes must be"),
    ("nan", dict(heatmaps=np.full((6, K, 8, 8), np.nan, np.float32),
                 boxes=np.tile([0.0, 0, 1, 1], (6, 1))), "NaN"),
    ("short", dict(heatmaps=np.zeros((4, K, 8, 8), np.float32),
                   boxes=np.tile([0.0, 0, 1, 1], (4, 1))), "shorter than a window"),
    ("no_boxes", dict(heatmaps=np.zeros((6, K, 8, 8), np.float32)), "missing array 'boxes'"),
    ("no_heatmaps", dict(boxes=np.tile([0.0, 0, 1, 1], (6, 1))), "missing array 'heatmaps'"),
    ("wrong_k", dict(heatmaps=np.zeros((6, 17, 8, 8), np.float32),
                     boxes=np.tile([0.0, 0, 1, 1], (6, 1))), "TEMPORAL25"),
    ("kp_shape", dict(heatmaps=np.zeros((6, K, 8, 8), np.float32), boxes=np.tile([0.0, 0, 1, 1], (6, 1)),
                      keypoints=np.zeros((6, 17, 3))), "keypoints must be"),
    ("pickled", dict(heatmaps=np.array([None, 1], dtype=object),
                     boxes=np.tile([0.0, 0, 1, 1], (6, 1))), "not a readable"),
])
def test_npz_bad_inputs_name_the_file(tmp_path, problem, arrays, match):
    path = _write(tmp_path / f"{problem}.npz", **arrays)
    with pytest.raises(DataError, match=match) as info:
        load_video(path)
    assert info.value.path == path
    # through a dataset folder too: the error names the video file, not the index
    (tmp_path / "index.json").write_text(json.dumps({"format": "poselab-sequences", "videos": [
        {"id": "x", "file": path.name}]}))
    with pytest.raises(DataError, match=f"{problem}.npz"):
        load_sequences(tmp_path)


def test_not_an_npz_and_bad_index(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_video(tmp_path / "junk.npz")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "index.json").write_text("{ not json")
    with pytest.raises(DataError, match="index.json"):
        load_sequences(tmp_path / "ds")
    (tmp_path / "ds" / "index.json").write_text(json.dumps({"videos": [{"file": "../../etc/passwd"}]}))
    with pytest.raises(DataError, match="outside the dataset"):
        load_sequences(tmp_path / "ds")


# ----------------------------------------------------------------------------- Penn Action / BRACE

def _penn(path, t=8, drop=None):
    rng = np.random.default_rng(0)
    x = rng.uniform(50, 150, (t, 13))
    y = rng.uniform(30, 200, (t, 13))
    vis = np.ones((t, 13))
    vis[:, 12] = 0  # right ankle never visible
    fields = dict(x=x, y=y, visibility=vis, bbox=np.tile([40.0, 20, 160, 210], (t, 1)),
                  nframes=np.array([[t]]), dimensions=np.array([[240, 320, t]]), train=np.array([[1]]))
    if drop:
        del fields[drop]
    scipy.io.savemat(path, fields)
    return x, y


def test_penn_action_reader(tmp_path):
    x, y = _penn(tmp_path / "0001.mat")
    v = load_penn_action(tmp_path / "0001.mat", heatmap=16, noise=0.5)
    nose, lsh, rank = (TEMPORAL25.index(n) for n in ("nose", "left_shoulder", "right_ankle"))
    np.testing.assert_allclose(v.keypoints[:, lsh, 0], x[:, 1] - 1, rtol=1e-6)   # 1-based -> 0-based
    np.testing.assert_allclose(v.keypoints[:, lsh, 1], y[:, 1] - 1, rtol=1e-6)
    # the head top is not a nose: not read, so the nose slot is not annotated
    assert v.joint_mask.sum() == 12 and not v.joint_mask[nose] and not v.keypoints[:, nose].any()
    assert not v.joint_mask[TEMPORAL25.index("left_thumb")]
    assert v.image_size == (320, 240) and v.split == "train" and v.source == "penn_action"
    assert v.heatmaps.shape == (8, K, 16, 16)
    ds = WindowDataset([v])
    vis = ds.frames[0]["visible"]
    assert not vis[:, rank].any() and not vis[:, TEMPORAL25.index("left_thumb")].any()
    assert vis[:, lsh].all() and not vis[:, nose].any()
    # deterministic, and readable as a folder through load_sequences
    again = load_penn_action(tmp_path / "0001.mat", heatmap=16, noise=0.5)
    np.testing.assert_array_equal(v.heatmaps, again.heatmaps)
    _penn(tmp_path / "0002.mat")
    seq = load_sequences(tmp_path, heatmap=16)
    assert sum(len(s) for s in seq.splits.values()) == 2 and seq.joint_mask.sum() == 12
    # converted once to a .npz dataset folder: same videos, same splits, same arrays
    index = convert_dataset(tmp_path, tmp_path / "converted", heatmap=16)
    back = load_sequences(index.parent)
    for s in ("train", "val", "test"):
        assert [v.id for v in back.splits[s]] == [v.id for v in seq.splits[s]]
        for a, b in zip(back.splits[s], seq.splits[s]):
            np.testing.assert_array_equal(a.heatmaps, b.heatmaps)
            np.testing.assert_array_equal(a.joint_mask, b.joint_mask)


def test_penn_action_missing_field(tmp_path):
    _penn(tmp_path / "0003.mat", drop="y")
    with pytest.raises(DataError, match=r"0003.mat.*missing field 'y'"):
        load_penn_action(tmp_path / "0003.mat")
    (tmp_path / "0004.mat").write_bytes(b"MATLAB? no")
    with pytest.raises(DataError, match="0004.mat"):
        load_penn_action(tmp_path / "0004.mat")


def test_brace_reader(tmp_path):
    frames = {}
    for n in list(range(10, 17)) + list(range(30, 33)):   # a 7-frame run, a gap, a 3-frame run
        kp = [[100 + 3 * j + n, 200 + 5 * j, 1.0] for j in range(17)]
        frames[f"abc/img-{n:06d}.png"] = {"box": [90, 190, 120, 200, 1.0], "keypoints": kp}
    path = tmp_path / "abc_10-32_toprock.json"
    path.write_text(json.dumps(frames))
    videos = load_brace(path, heatmap=16)
    assert len(videos) == 1                                  # the 3-frame run is too short
    v = videos[0]
    # first_frame is 0-based (img-000010 is the 10th image); the id keeps BRACE's number
    assert v.num_frames == 7 and v.first_frame == 9 and v.id == "abc_10-32_toprock@10"
    assert v.joint_mask.sum() == 15 and not v.joint_mask[TEMPORAL25.index("left_heel")]
    lk = TEMPORAL25.index("left_knee")
    assert v.keypoints[0, lk, 0] == pytest.approx(100 + 3 * 13 + 10)  # COCO 13 = left_knee
    assert v.keypoints[:, TEMPORAL25.index("left_heel"), 2].max() == 0
    bad = tmp_path / "broken.json"
    bad.write_text('{"abc/img-000001.png": {"box": [1, 2, 3, 4]}}')
    with pytest.raises(DataError, match="broken.json.*keypoints"):
        load_brace(bad)
    bad.write_text("[1, 2")
    with pytest.raises(DataError, match="broken.json.*JSON"):
        load_brace(bad)


# ----------------------------------------------------------------------------- synthesis

def test_synthetic_writer_deterministic(tmp_path, capsys):
    spec = SequenceSpec(videos=3, frames=8, heatmap=16, noise=1.0, estimator="simulated", seed=5)
    s1 = write_sequence_dataset(tmp_path / "a", spec, progress=False)
    write_sequence_dataset(tmp_path / "b", spec, progress=False)
    write_sequence_dataset(tmp_path / "c", replace(spec, seed=6), progress=False)
    assert s1["videos"] == 3 and set(s1["identity_pck"]) == {"0.05", "0.1", "0.2"}
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert [e["id"] for e in index["videos"]] == ["0000_climb", "0001_squat", "0002_climb"]
    for e in index["videos"]:
        a, b = load_video(tmp_path / "a" / e["file"]), load_video(tmp_path / "b" / e["file"])
        np.testing.assert_array_equal(a.heatmaps, b.heatmaps)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert a.heatmaps.dtype == np.float16 and (a.heatmaps < 0).any()   # raw: negatives
    c = load_video(tmp_path / "c" / index["videos"][0]["file"])
    assert not np.array_equal(c.keypoints, load_video(tmp_path / "a" / index["videos"][0]["file"]).keypoints)
    seq = load_sequences(tmp_path / "a")
    assert sum(len(s) for s in seq.splits.values()) == 3
    # rewriting in place replaces the dataset atomically (no leftovers beside it)
    write_sequence_dataset(tmp_path / "a", replace(spec, seed=6), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]
    with pytest.raises(DataError):
        write_sequence_dataset(tmp_path / "d", SequenceSpec(videos=1, frames=3, seed=0, heatmap=16, noise=1.0,
                                                            estimator="simulated"))


def test_motion_is_smooth_and_projected():
    for movement in ("climb", "jumping_jack", "pushup"):
        clip = animate(movement, 20, np.random.default_rng(1))
        kp = clip.keypoints
        assert kp.shape == (20, K, 3) and clip.image_size == (480, 360)
        vis = kp[..., 2] > 0
        assert vis.mean() > 0.8
        w, h = clip.image_size
        assert (kp[..., 0][vis] >= 0).all() and (kp[..., 0][vis] < w).all()
        # smooth: frame-to-frame motion much smaller than the body's size
        both = vis[1:] & vis[:-1]
        step = np.linalg.norm(kp[1:, :, :2] - kp[:-1, :, :2], axis=-1)[both]
        size = np.ptp(kp[0, vis[0], :2], axis=0).max()
        assert np.median(step) < 0.06 * size
    climb = animate("climb", 40, np.random.default_rng(2))
    assert climb.world[-1, :, 1].mean() > climb.world[0, :, 1].mean() + 0.2   # goes up the wall
    assert set(MOVEMENTS) >= {"climb", "squat", "jumping_jack", "lunge", "pushup", "bicep_curl"}


def test_estimator_noise_levels():
    clips = [animate(m, 20, np.random.default_rng(i)) for i, m in enumerate(("climb", "squat", "lunge", "climb"))]

    def videos(noise):
        out = []
        for i, c in enumerate(clips):
            hm, boxes = simulate_estimator(c.keypoints, heatmap=32, noise=noise, seed=i)
            out.append(Video(id=str(i), heatmaps=hm, boxes=boxes, keypoints=c.keypoints,
                             joint_mask=np.ones(K, bool), image_size=c.image_size))
        return out

    perfect = identity_pck(videos(0.0))
    noisy = identity_pck(videos(1.0))
    assert perfect["0.05"] > 0.99
    assert noisy["0.05"] < 0.45 and noisy["0.1"] < 0.85 and noisy["0.2"] < 0.95
    assert noisy["0.05"] < noisy["0.1"] < noisy["0.2"]
    hm, _ = simulate_estimator(clips[0].keypoints, heatmap=32, noise=1.0, seed=0)
    assert (hm < 0).any() and np.isfinite(hm).all()


def test_pretraining_mix_groups_and_skips(tmp_path):
    """Penn Action + BRACE in one folder; BRACE pieces of one YouTube video share a split;
    other JSON files of a BRACE download are skipped and counted, not read as data."""
    (tmp_path / "penn").mkdir()
    for i in range(4):
        _penn(tmp_path / f"penn/{i:04d}.mat")
    for vid in ("aaa", "bbb", "ccc"):
        for seg, start in enumerate((10, 40)):
            frames = {f"{vid}/img-{n:06d}.png": {"box": [90, 190, 120, 200, 1.0],
                                                 "keypoints": [[100 + j, 200 + n + 3 * j, 1.0] for j in range(17)]}
                      for n in list(range(start, start + 6)) + list(range(start + 8, start + 14))}
            p = tmp_path / f"brace/2011/{vid}/{vid}_{start}-{start + 13}_footwork.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(frames))
    (tmp_path / "brace" / "audio_beats.json").write_text(json.dumps({"aaa.0": {"bpm": 120}}))
    seq = load_sequences(tmp_path, heatmap=16, seed=1)
    assert seq.skipped == {"json file that is not a BRACE segment": 1}
    where = {v.id: s for s, vs in seq.splits.items() for v in vs}
    assert len(where) == 4 + 3 * 2 * 2            # each segment has a gap -> two pieces
    for vid in ("aaa", "bbb", "ccc"):
        assert len({s for i, s in where.items() if i.startswith(vid)}) == 1
    assert all(where[f"{i:04d}"] in ("train", "val") for i in range(4))   # Penn's own train flag
    assert seq.joint_mask.sum() == 15                                    # union of the two sets


# ----------------------------------------------------------------------------- as the downloads unpack

PENN_H, PENN_W = 240, 320
LSH, NOSE = TEMPORAL25.index("left_shoulder"), TEMPORAL25.index("nose")


def _penn_labels(path, x, y, vis, **fields):
    """labels/NNNN.mat as Penn Action ships it: x, y, visibility (T, 13), 1-based pixels."""
    t = len(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, dict(x=x, y=y, visibility=vis, nframes=np.array([[t]]), train=np.array([[1]]),
                                **fields))


def _penn_frames(root, stem, n, size=(PENN_W, PENN_H)):
    """frames/NNNN/000001.jpg ... (Penn Action's names, 1-based)."""
    folder = root / "frames" / stem
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", size).save(folder / f"{i + 1:06d}.jpg", quality=30)


def _penn_joints(t=8):
    """x, y (1-based), visibility: joints spread out; the left shoulder at pixel (101, 116)."""
    j = np.arange(13)
    x = np.tile(60.0 + 7 * j, (t, 1))
    y = np.tile(40.0 + 12 * j, (t, 1))
    x[:, 1], y[:, 1] = 101, 116
    vis = np.ones((t, 13))
    vis[:, 12] = 0  # right ankle never visible
    return x, y, vis


def _penn_tree(root):
    """Penn_Action/labels/000{1,2,3}.mat + frames/: 0001 with frames and dimensions, some
    joints outside the frame and one broken frame; 0002 without dimensions (size from its
    frames); 0003 with one frame image missing."""
    x, y, vis = _penn_joints()
    x[2, 3] = 0.5        # 1-based 0.5 -> -0.5: outside
    y[2, 4] = 241        # -> 240 = H: outside
    x[3, 5] = 321        # -> 320 = W: outside
    x[3, 6] = 320        # -> 319: the last column, inside
    x[4, 0] = -50        # the head top is not read: not counted
    y[5, :] = 100        # every joint on one row: a broken frame
    box = np.tile([41.0, 21, 161, 211], (8, 1))      # x1 y1 x2 y2, 1-based
    _penn_labels(root / "labels/0001.mat", x, y, vis, bbox=box, dimensions=np.array([[PENN_H, PENN_W, 8]]))
    _penn_frames(root, "0001", 8)
    x, y, vis = _penn_joints()
    x[0, 7] = 301        # -> 300 = the width of 0002's frames: outside
    _penn_labels(root / "labels/0002.mat", x, y, vis, bbox=box)
    _penn_frames(root, "0002", 8, size=(300, 200))
    _penn_labels(root / "labels/0003.mat", *_penn_joints(), bbox=box, dimensions=np.array([[PENN_H, PENN_W, 8]]))
    _penn_frames(root, "0003", 7)


def _coco(n):
    """17 x [x, y, 1] spread out, the nose at (150, 290) (the centre of the box below)."""
    kp = [[100.0 + 6 * j + n, 200.0 + 10 * j, 1.0] for j in range(17)]
    kp[0] = [150.0, 290.0, 1.0]
    return kp


BRACE_BOX = [90, 190, 120, 200, 1.0]   # x, y, w, h, score -> centre (150, 290), square crop 250 px


def _brace_tree(root, vid="-mT5x-j_TpI", start=10, end=21):
    """BRACE as it unpacks: dataset/2013/<vid>/<vid>_<start>-<end>_toprock.json, its
    manual_keypoints/2013/<vid>/img-NNNNNN.npz and annotations/."""
    frames = {}
    for n in range(start, end + 1):
        frames[f"{vid}/img-{n:06d}.png"] = {"box": BRACE_BOX, "keypoints": _coco(n)}
    frames[f"{vid}/img-{start + 5:06d}.png"]["keypoints"][9][0] = -7.5      # left wrist: x < 0
    frames[f"{vid}/img-{start + 6:06d}.png"]["keypoints"][10][0] = 1920.0   # right wrist: x = W
    frames[f"{vid}/img-{start + 6:06d}.png"]["keypoints"][16][1] = 1079.5   # right ankle: inside
    frames[f"{vid}/img-{start + 8:06d}.png"] = {"box": [0, 0, 1, 1, 1.0],   # broken: all at the origin
                                                "keypoints": [[0.0, 0.0, 1.0]] * 17}
    seg = root / f"dataset/2013/{vid}/{vid}_{start}-{end}_toprock.json"
    seg.parent.mkdir(parents=True)
    seg.write_text(json.dumps(frames))
    manual = root / f"manual_keypoints/2013/{vid}"
    manual.mkdir(parents=True)
    joints = np.array([[400.0 + 5 * j, 500.0 + 7 * j, 0.0] for j in range(17)])
    np.savez(manual / f"img-{start + 2:06d}.npz", coco_joints2d=joints)
    np.savez(manual / "img-000999.npz", coco_joints2d=joints)             # no segment frame
    (root / "annotations").mkdir()
    (root / "annotations/segments.csv").write_text(
        f"video_id,seq_idx,start_frame,end_frame,dance_type,dance_type_id,dancer,dancer_id,year,uid\n"
        f"{vid},0,{start},{end},toprock,0,wing,62,2013,{vid}.{start}.{end}\n")
    (root / "annotations/shot_boundaries.json").write_text(json.dumps({vid: [452, 3180]}))
    (root / "annotations/audio_beats.json").write_text(json.dumps({f"{vid}.0": {"bpm": 120}}))
    return seg, joints


def _one_line(info):
    return "\n" not in str(info.value)


def test_penn_action_as_it_unpacks(tmp_path):
    """labels/*.mat + frames/NNNN/: 1-based pixels and xyxy bbox land where they should in
    heatmap space; the frame bounds come from dimensions or the frames; broken frames and
    keypoints outside the frame are masked and counted; frame paths recorded."""
    _penn_tree(tmp_path / "Penn_Action")
    seq = load_sequences(tmp_path / "Penn_Action", heatmap=16, noise=0.0, estimator="simulated")
    assert seq.skipped == {OUTSIDE_FRAME: 4, BROKEN_FRAME: 1, PENN_FRAMES_MISMATCH: 1}
    videos = {v.id: v for vs in seq.splits.values() for v in vs}
    assert sorted(videos) == ["0001", "0002", "0003"] and seq.joint_mask.sum() == 12
    v = videos["0001"]
    assert v.image_size == (PENN_W, PENN_H) and v.first_frame == 0 and v.num_frames == 8
    assert v.frame_paths[0].endswith("frames/0001/000001.jpg") and Path(v.frame_paths[-1]).is_file()
    assert videos["0002"].image_size == (300, 200)              # no dimensions: the frames' size
    assert videos["0003"].frame_paths is None                   # 7 images for 8 rows: not matched
    # pixel (101, 116) 1-based = (100, 115) 0-based; bbox (41, 21)-(161, 211) 1-based = (40, 20)-(160, 210):
    # the square crop is 1.25 x 190 px around (100, 115), so the shoulder is the centre of the map
    np.testing.assert_allclose(v.keypoints[0, LSH, :2], [100, 115])
    np.testing.assert_allclose(v.boxes[0], [100 - 118.75, 115 - 118.75, 100 + 118.75, 115 + 118.75], rtol=1e-6)
    np.testing.assert_allclose(image_to_heatmap(v.keypoints[..., :2], v.boxes, (16, 16))[0, LSH], [7.5, 7.5],
                               atol=1e-4)
    frames = WindowDataset([v]).frames[0]
    ok = [0, 1, 2, 3, 4, 6, 7]
    np.testing.assert_allclose(frames["keypoints"][ok, LSH], 7.5, atol=1e-4)
    np.testing.assert_allclose(frames["input_keypoints"][ok, LSH], 7.5, atol=0.05)   # noise 0: perfect
    vis = v.keypoints[..., 2] > 0
    le, re, lw, rw = (TEMPORAL25.index(n) for n in ("left_elbow", "right_elbow", "left_wrist", "right_wrist"))
    assert not vis[2, le] and not vis[2, re] and not vis[3, lw] and vis[3, rw]
    assert not v.keypoints[2, le].any()                           # coordinates zeroed as in the .npz
    assert not vis[5].any() and vis[4].sum() == 11                # broken frame masked, not dropped
    assert not vis[:, NOSE].any()
    # converted once: the masks and the frame paths (absolute) survive the .npz
    back = load_sequences(convert_dataset(tmp_path / "Penn_Action", tmp_path / "converted", heatmap=16,
                                          estimator="simulated",
                                          noise=0.0).parent)
    (b,) = [b for vs in back.splits.values() for b in vs if b.id == "0001"]
    np.testing.assert_array_equal(b.keypoints, v.keypoints)
    assert b.frame_paths == v.frame_paths and b.image_size == v.image_size


def test_brace_as_it_unpacks(tmp_path):
    """dataset/ + manual_keypoints/ + annotations/ in one folder: the segment loads, the
    manual keypoints replace their frame's, outside-frame keypoints and the broken frame
    are masked, and every one of them is counted."""
    seg, manual = _brace_tree(tmp_path)
    seq = load_sequences(tmp_path, heatmap=16, noise=0.0)
    assert seq.skipped == {NOT_SEGMENT: 2, MANUAL_USED: 1, MANUAL_UNMATCHED: 1, OUTSIDE_FRAME: 2, BROKEN_FRAME: 1}
    (v,) = [v for vs in seq.splits.values() for v in vs]
    assert v.id == seg.stem and v.group == "-mT5x-j_TpI" and v.num_frames == 12 and v.first_frame == 9
    assert v.image_size == (1920, 1080) and str(tmp_path / "manual_keypoints/2013/-mT5x-j_TpI/img-000012.npz") \
        in seq.sources
    # img-000012 is row 2 (the segment starts at img-000010): its keypoints are the manual ones
    lsh_coco = COCO17.index("left_shoulder")
    np.testing.assert_allclose(v.keypoints[2, LSH], [*manual[lsh_coco, :2], 2])
    np.testing.assert_allclose(v.keypoints[1, LSH], [100 + 6 * lsh_coco + 11, 200 + 10 * lsh_coco, 2])
    # the nose at the box centre (150, 290) lands at the centre of the map
    frames = WindowDataset([v]).frames[0]
    good = [0, 1, 3, 4, 5, 6, 7, 9, 10, 11]
    np.testing.assert_allclose(frames["keypoints"][good, NOSE], 7.5, atol=1e-4)
    np.testing.assert_allclose(frames["input_keypoints"][good, NOSE], 7.5, atol=0.05)
    vis = v.keypoints[..., 2] > 0
    lw, rw, ra = (TEMPORAL25.index(n) for n in ("left_wrist", "right_wrist", "right_ankle"))
    assert not vis[5, lw] and not vis[6, rw] and vis[6, ra] and vis[5].sum() == 14
    assert not vis[8].any() and not v.keypoints[8].any()          # broken frame: masked, kept
    np.testing.assert_allclose(v.boxes[8], v.boxes[7])            # its crop is the nearest good frame's
    # the BRACE file alone reads the same keypoints, bar the manual ones it was not given
    alone = load_brace(seg, heatmap=16, noise=0.0)[0]
    np.testing.assert_array_equal(alone.keypoints[3:], v.keypoints[3:])
    assert not np.array_equal(alone.keypoints[2], v.keypoints[2])


def test_penn_action_and_brace_in_one_folder(tmp_path):
    """Both downloads side by side: one dataset, the nose only from BRACE, Penn's split flag."""
    _penn_tree(tmp_path / "Penn_Action")
    _brace_tree(tmp_path / "brace")
    seq = load_sequences(tmp_path, heatmap=16, seed=2, estimator="simulated")
    assert seq.skipped == {OUTSIDE_FRAME: 6, BROKEN_FRAME: 2, PENN_FRAMES_MISMATCH: 1, NOT_SEGMENT: 2,
                           MANUAL_USED: 1, MANUAL_UNMATCHED: 1}
    videos = {v.id: (s, v) for s, vs in seq.splits.items() for v in vs}
    assert len(videos) == 4 and seq.joint_mask.sum() == 15
    for vid in ("0001", "0002", "0003"):
        split, v = videos[vid]
        assert split in ("train", "val") and v.source == "penn_action" and not v.joint_mask[NOSE]
    assert [v.joint_mask[NOSE] for s, v in videos.values() if v.source == "brace"] == [True]
    assert seq.estimator == "simulated"


@pytest.mark.parametrize("damage,match", [
    ("truncated_segment", r"_toprock\.json: not valid JSON"),
    ("empty_segment", r"_toprock\.json: not valid JSON"),
    ("mat_without_x", r"0001\.mat: missing field 'x'"),
    ("manual_wrong_shape", r"img-000012\.npz: coco_joints2d must be \(17, 3\)"),
    ("manual_misnamed", r"frame12\.npz: BRACE manual keypoints must be named img-NNNNNN\.npz"),
    ("manual_not_npz", r"img-000012\.npz: not a readable \.npz"),
])
def test_damaged_download_files_name_the_file(tmp_path, damage, match):
    _penn_tree(tmp_path / "Penn_Action")
    seg, joints = _brace_tree(tmp_path / "brace")
    manual = seg.parents[3] / "manual_keypoints/2013/-mT5x-j_TpI"
    if damage == "truncated_segment":
        seg.write_text(seg.read_text()[:300])
    elif damage == "empty_segment":            # an interrupted unpack
        seg.write_text("")
    elif damage == "mat_without_x":
        mat = tmp_path / "Penn_Action/labels/0001.mat"
        fields = {k: v for k, v in scipy.io.loadmat(mat).items() if not k.startswith("__") and k != "x"}
        scipy.io.savemat(mat, fields)
    elif damage == "manual_wrong_shape":
        np.savez(manual / "img-000012.npz", coco_joints2d=joints[:, :2])
    elif damage == "manual_misnamed":
        np.savez(manual / "frame12.npz", coco_joints2d=joints)
    else:
        (manual / "img-000012.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(DataError, match=match) as info:
        load_sequences(tmp_path, heatmap=16)
    assert _one_line(info)


def test_folder_format_is_told_by_content(tmp_path):
    """.npz videos and BRACE manual keypoints are told apart by their arrays; a folder of
    one's own videos still loads with a stray .json beside them; mixing one's own videos
    with Penn Action / BRACE, or manual keypoints without segments, is refused in one line."""
    own = tmp_path / "own"
    for i in range(3):
        save_video(own / f"sub/v{i}.npz", make_video(f"v{i}", t=6, seed=i))
    (own / "notes.json").write_text("{}")
    (own / ".v9.npz").write_bytes(b"a hidden file is not data")
    seq = load_sequences(own)
    assert sorted(v.id for vs in seq.splits.values() for v in vs) == ["sub/v0", "sub/v1", "sub/v2"]
    _brace_tree(tmp_path / "brace")
    with pytest.raises(DataError, match="img-000012.npz: holds BRACE manual keypoints") as info:
        load_sequences(tmp_path / "brace/manual_keypoints/2013/-mT5x-j_TpI/img-000012.npz")
    assert _one_line(info)
    with pytest.raises(DataError, match=r"manual_keypoints: has 2 BRACE manual keypoint file\(s\) but no"):
        load_sequences(tmp_path / "brace/manual_keypoints")
    save_video(tmp_path / "brace/converted/v.npz", make_video("v", t=6))
    with pytest.raises(DataError, match=r"holds both PoseLab .npz videos \(converted/v.npz") as info:
        load_sequences(tmp_path / "brace")
    assert _one_line(info)
    # an .npz that is neither is skipped and counted among Penn Action / BRACE files
    (tmp_path / "brace/converted/v.npz").unlink()
    np.savez(tmp_path / "brace/audio.npz", mfcc=np.zeros((2, 3)))
    assert load_sequences(tmp_path / "brace", heatmap=16).skipped[NOT_DATA_NPZ] == 1


def test_get_batch_matches_items():
    videos = [make_video("a", t=9), make_video("b", t=6, seed=1)]
    ds = WindowDataset(videos, training=True)
    batch = ds.get_batch([5, 0, 1])
    ref = torch.utils.data.default_collate([ds[5], ds[0], ds[1]])
    assert set(batch) == set(ref)
    for key in ref:
        assert batch[key].dtype == ref[key].dtype, key
        torch.testing.assert_close(batch[key], ref[key], rtol=0, atol=0)
    assert (batch["video"] == torch.tensor([1, 0, 0])).all()
    seen = torch.cat([b["start"] * 10 + b["video"] for b in ds.batches(4, shuffle=True, seed=3)])
    assert sorted(seen.tolist()) == sorted(s * 10 + v for v, s in ds.windows)
    assert sum(1 for _ in ds.batches(4, drop_last=True)) == len(ds) // 4
    assert ds.to("cpu") is ds and ds.get_batch([0])["heatmaps"].device.type == "cpu"
