"""PCK against tiny hand-computed cases (the conventions of core/metrics.py)."""
import numpy as np
import pytest

from core.keypoints import TEMPORAL25
from core.metrics import box_norm, mean_threshold_px, pck, pck_table, pooled_pck, torso_norm


def _arrays(dist, visible=None, norm=10.0):
    """Predictions at distance ``dist`` (N, K) along x from gt at the origin."""
    dist = np.asarray(dist, float)
    gt = np.zeros(dist.shape + (2,))
    pred = gt.copy()
    pred[..., 0] = dist
    visible = np.ones(dist.shape, bool) if visible is None else np.asarray(visible, bool)
    return pred, gt, visible, np.full(dist.shape[0], norm)


def test_hand_computed_fractions_per_keypoint_and_threshold():
    # norm 10 -> thresholds 0.5, 1, 2 px. keypoint 0: distances 0.4, 1.5, 3 ; keypoint 1: 0, 0, 0.9
    pred, gt, vis, norm = _arrays([[0.4, 0.0], [1.5, 0.0], [3.0, 0.9]])
    out = pck(pred, gt, vis, norm, (0.05, 0.1, 0.2))
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out[:, 0], [1 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(out[:, 1], [2 / 3, 1.0, 1.0])


def test_distance_exactly_at_threshold_counts_as_correct():
    # 3-4-5 triangle: distance exactly 5 = 0.5 * norm 10, no float rounding involved.
    gt = np.zeros((1, 1, 2))
    pred = np.array([[[3.0, 4.0]]])
    assert pck(pred, gt, np.ones((1, 1), bool), np.array([10.0]), [0.5])[0, 0] == 1.0
    assert pck(pred, gt, np.ones((1, 1), bool), np.array([10.0]), [0.49])[0, 0] == 0.0


def test_invisible_excluded_from_numerator_and_denominator():
    # keypoint 0: sample 1 is wrong but invisible -> 1/1, not 1/2 and not 2/2
    pred, gt, vis, norm = _arrays([[0.0, 0.0], [9.0, 9.0]], visible=[[1, 1], [0, 1]])
    out = pck(pred, gt, vis, norm, [0.1])
    np.testing.assert_allclose(out[0], [1.0, 0.5])


def test_keypoint_never_visible_is_nan_not_zero():
    pred, gt, vis, norm = _arrays([[0.0, 0.0], [0.0, 5.0]], visible=[[1, 0], [1, 0]])
    out = pck(pred, gt, vis, norm, [0.05, 0.2])
    assert np.all(out[:, 0] == 1.0)
    assert np.all(np.isnan(out[:, 1]))


def test_norm_zero_samples_are_excluded():
    # sample 0 has norm 0 and an exact prediction: excluded, not counted as correct;
    # sample 1 (norm 10) is wrong -> 0/1. A frame whose only sample has norm 0 -> NaN.
    pred, gt, vis, _ = _arrays([[0.0], [5.0]])
    out = pck(pred, gt, vis, np.array([0.0, 10.0]), [0.1])
    assert out[0, 0] == 0.0
    assert np.isnan(pck(pred[:1], gt[:1], vis[:1], np.array([0.0]), [0.1])[0, 0])


def test_per_keypoint_norm_and_nan_prediction():
    pred, gt, vis, _ = _arrays([[1.0, 1.0]])
    norm = np.array([[5.0, 20.0]])                 # (N, K): thresholds 0.5 and 2 px at a=0.1
    np.testing.assert_allclose(pck(pred, gt, vis, norm, [0.1])[0], [0.0, 1.0])
    pred[0, 1] = np.nan                            # a diverged model is wrong, not excluded
    np.testing.assert_allclose(pck(pred, gt, vis, norm, [0.1])[0], [0.0, 0.0])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        pck(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones((2, 3), bool), np.ones(2))


def test_norm_helpers():
    np.testing.assert_allclose(box_norm(np.array([[0, 0, 3, 7], [1, 1, 8, 2]])), [7, 8])
    gt = np.zeros((2, 25, 2))
    ls, rh = TEMPORAL25.index("left_shoulder"), TEMPORAL25.index("right_hip")
    gt[:, ls] = [0, 0]
    gt[:, rh] = [6, 8]
    vis = np.ones((2, 25), bool)
    vis[1, rh] = False
    np.testing.assert_allclose(torso_norm(gt, vis), [10.0, 0.0])
    np.testing.assert_allclose(mean_threshold_px(vis, np.array([10.0, 30.0]), [0.1]),
                               [0.1 * (10 * 25 + 30 * 24) / 49])  # one invisible pair


def test_pck_table_layout():
    rng = np.random.default_rng(0)
    n, k = 6, 25
    gt = rng.uniform(0, 16, (n, k, 2))
    vis = np.ones((n, k), bool)
    vis[:, 3] = False
    pred = gt + 0.3
    ident = gt + 5.0
    norm = np.full(n, 16.0)
    df = pck_table(pred, gt, vis, norm, identity_pred=ident)
    assert list(df.columns) == ["keypoint", "pck@0.05", "pck@0.1", "pck@0.2",
                                "identity_pck@0.05", "identity_pck@0.1", "identity_pck@0.2",
                                "n_visible"]
    assert list(df["keypoint"][:k]) == list(TEMPORAL25) and df["keypoint"].iloc[-1] == "threshold_px"
    body = df.iloc[:k]
    assert np.isnan(body["pck@0.05"].iloc[3]) and body["n_visible"].iloc[3] == 0
    assert (body.drop(index=3)["pck@0.05"] == 1.0).all()         # 0.42 px <= 0.8 px
    assert (body.drop(index=3)["identity_pck@0.2"] == 0.0).all()  # 7.1 px > 3.2 px
    np.testing.assert_allclose(df.iloc[-1][["pck@0.05", "pck@0.1", "pck@0.2"]].astype(float),
                               [0.8, 1.6, 3.2])


# ----------------------------------------------------------------------------- left / right, motion

def test_a_mirrored_estimate_is_a_swapped_frame_and_counts_when_tolerated():
    from core.metrics import swap_tolerant_pck, swapped_frames
    names = ("nose", "left_wrist", "right_wrist")
    flip = np.array([0, 2, 1])
    gt = np.array([[[0.0, 0.0], [-10.0, 0.0], [10.0, 0.0]]] * 2)            # (2, 3, 2)
    pred = gt.copy()
    pred[1] = gt[1][flip]                                                   # frame 1: wrists exchanged
    vis = np.ones((2, 3), bool)
    assert swapped_frames(pred, gt, vis, flip).tolist() == [False, True]
    norm = np.full(2, 100.0)
    strict = pooled_pck(pred, gt, vis, norm, (0.05,))
    tolerant = swap_tolerant_pck(pred, gt, vis, norm, flip, (0.05,))
    assert strict[0] == pytest.approx(4 / 6) and tolerant[0] == 1.0
    assert len(names) == len(flip)
    # a frame whose paired keypoints are all invisible is never swapped
    assert not swapped_frames(pred, gt, np.array([[True, False, False]] * 2), flip).any()


def test_pck_auc_is_the_normalised_area_under_the_curve():
    from core.metrics import pck_auc
    gt = np.zeros((4, 1, 2))
    pred = np.array([[[0.0, 0.0]], [[5.0, 0.0]], [[10.0, 0.0]], [[50.0, 0.0]]])   # 0, 0.05, 0.1, 0.5 of norm 100
    vis = np.ones((4, 1), bool)
    norm = np.full(4, 100.0)
    # curve over a in [0, 0.2]: 1/4 at 0, 2/4 from 0.05, 3/4 from 0.1 (a step function on 21 points)
    a = np.linspace(0, 0.2, 21)
    expected = np.trapezoid(np.where(a >= 0.1, 0.75, np.where(a >= 0.05, 0.5, 0.25)), a) / 0.2
    assert pck_auc(pred, gt, vis, norm) == pytest.approx(expected)
    assert pck_auc(gt, gt, vis, norm) == pytest.approx(1.0)


def test_velocity_and_acceleration_errors_and_jitter_by_hand():
    from core.metrics import acceleration_error, jitter, velocity_error
    t = np.arange(5, dtype=np.float64)
    gt = np.stack([t, np.zeros(5)], -1)[:, None]                  # (T=5, K=1, 2): constant velocity 1
    pred = gt.copy()
    pred[2, 0, 1] = 2.0                                           # one frame off by 2 px in y
    vis = np.ones((5, 1), bool)
    # velocities: pred - gt differ by (0, 2) at t=1->2 and (0, -2) at 2->3: mean over 4 = 1
    assert velocity_error(pred, gt, vis) == pytest.approx(1.0)
    # accelerations differ by (0,2), (0,-4), (0,2): mean 8/3
    assert acceleration_error(pred, gt, vis) == pytest.approx(8 / 3)
    assert jitter(gt) == 0.0 and jitter(pred) == pytest.approx(8 / 3)
    # a difference spanning an invisible frame is not counted; windows lead the shape
    vis[0] = False                                                # the triples 1-3 and 2-4 remain: 4 and 2
    assert acceleration_error(pred, gt, vis) == pytest.approx(3.0)
    assert np.isnan(velocity_error(pred[None, :1], gt[None, :1], vis[None, :1]))
