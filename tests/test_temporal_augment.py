"""The random window transforms DeciWatch trains on (core.temporal.models.augment)."""
import math

import torch

from core.heatmaps import decode_heatmaps, gaussian_heatmaps
from core.keypoints import TEMPORAL25, flip_permutation
from core.temporal.models import build_temporal, config_from_dict, config_to_dict, deciwatch_loss, make_config
from core.temporal.models.augment import ROTATE_DEG, SCALE, SHIFT, WindowTransform

B, T, K, S = 64, 5, 25, 12
FLIP = torch.as_tensor(flip_permutation(TEMPORAL25))
SMALL = dict(embed_dim=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1, interval=1)


def _points(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, K, 2, generator=g) * 2 - 1                   # normalised coords


def test_invert_undoes_the_transform_and_missing_points_stay_missing():
    torch.manual_seed(0)
    p = _points()
    p[0, 1, 3] = float("nan")
    move = WindowTransform.draw(B, FLIP)
    assert move.mirror.any() and (~move.mirror).any() and move.reverse.any() and (~move.reverse).any()
    moved = move.points(p)
    assert not torch.allclose(moved.nan_to_num(), p.nan_to_num())
    back = move.invert(moved)
    torch.testing.assert_close(back, p, equal_nan=True, rtol=0, atol=1e-5)
    # the missing point moved with its window: still exactly one NaN point, wherever it went
    assert moved.isnan().any(-1).sum() == 1 and moved[0].isnan().any()


def test_each_window_gets_a_bounded_similarity_transform():
    torch.manual_seed(1)
    move = WindowTransform.draw(B, FLIP)
    a = move.matrix
    scale = a.det().abs().sqrt()                                        # (B,)
    assert (scale >= 1 / SCALE - 1e-5).all() and (scale <= SCALE + 1e-5).all()
    # a rotation times a scale (times a mirror): orthogonal up to the scale
    eye = torch.eye(2).expand(B, 2, 2)
    torch.testing.assert_close(a @ a.transpose(1, 2) / scale[:, None, None] ** 2, eye, rtol=0, atol=1e-5)
    assert ((a.det() < 0) == move.mirror).all()                         # mirrored exactly when flagged
    angle = torch.atan2(a[:, 1, 0], a[:, 1, 1].abs())                   # the column mirroring does not touch
    assert (angle.abs() <= math.radians(ROTATE_DEG) + 1e-5).all()
    assert (move.shift.abs() <= SHIFT).all()
    # distances between any two keypoints of a frame change by the window's scale alone
    p = _points(2)
    moved = move.points(p)
    dist_in = (p[:, :, :, None] - p[:, :, None, :]).norm(dim=-1)       # (B, T, K, K)
    dist_out = (moved[:, :, :, None] - moved[:, :, None, :]).norm(dim=-1)
    torch.testing.assert_close(dist_out.sum((1, 2, 3)), dist_in.sum((1, 2, 3)) * scale, rtol=1e-4, atol=1e-4)


def test_mirror_exchanges_left_and_right_and_reverse_plays_backwards():
    p = _points(3)
    one = torch.ones(B, dtype=torch.bool)
    mirror_only = WindowTransform(torch.diag(torch.tensor([-1.0, 1.0])).expand(B, 2, 2), torch.zeros(B, 2),
                                  one, ~one, FLIP)
    out = mirror_only.points(p)
    lw, rw = TEMPORAL25.index("left_wrist"), TEMPORAL25.index("right_wrist")
    torch.testing.assert_close(out[..., lw, 0], -p[..., rw, 0])          # the right wrist, mirrored,
    torch.testing.assert_close(out[..., lw, 1], p[..., rw, 1])           # is the new left wrist
    nose = TEMPORAL25.index("nose")
    torch.testing.assert_close(out[..., nose, :], p[..., nose, :] * torch.tensor([-1.0, 1.0]))
    reverse_only = WindowTransform(torch.eye(2).expand(B, 2, 2), torch.zeros(B, 2), ~one, one, FLIP)
    torch.testing.assert_close(reverse_only.points(p), p.flip(1))
    m = torch.rand(B, T, K) < 0.5
    assert torch.equal(reverse_only.mask(m), m.flip(1)) and torch.equal(mirror_only.mask(m), m[:, :, FLIP])


def test_no_mirror_without_named_sides():
    move = WindowTransform.draw(B, None)
    assert not move.mirror.any() and (move.matrix.det() > 0).all()


def test_deciwatch_loss_transforms_in_training_and_scores_in_the_original_frame():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    gt = torch.rand(4, T, K, 2, generator=g) * (S - 1)
    batch = {"heatmaps": gaussian_heatmaps(gt, (S, S)), "keypoints": gt,
             "visible": torch.ones(4, T, K, dtype=torch.bool)}
    model = build_temporal(make_config("deciwatch", **SMALL))              # untrained: the identity
    decoded, _ = decode_heatmaps(batch["heatmaps"])

    def loss_and_pred(m):
        terms, pred = deciwatch_loss(m, m, batch)
        return sum(w * t / c for w, t, c in terms), pred
    # a transformed window of a perfect input is still perfect: the identity's loss stays
    # at the decoding error, and its prediction comes back in the window's own frame
    for mode in (model.train(), model.eval()):
        loss, pred = loss_and_pred(mode)
        assert loss < 0.05
        torch.testing.assert_close(pred, decoded, rtol=0, atol=1e-4)
    # training draws a new transform each call: the same batch gives another loss, and a
    # model with augment off gives the same loss every time
    # (dropout off, so that the transform is the only randomness)
    trained = build_temporal(make_config("deciwatch", out_init_std=1e-2, dropout=0.0, **SMALL)).train()
    plain = build_temporal(make_config("deciwatch", out_init_std=1e-2, dropout=0.0, augment=False, **SMALL))
    plain.load_state_dict(trained.state_dict())
    plain.train()
    l1, l2 = loss_and_pred(trained)[0], loss_and_pred(trained)[0]
    assert not torch.isclose(l1, l2)
    torch.testing.assert_close(loss_and_pred(plain)[0], loss_and_pred(plain)[0])


def test_runs_written_before_the_transforms_load_without_them():
    old = config_to_dict(make_config("deciwatch", **SMALL))
    del old["augment"], old["keep_sides"]
    assert config_from_dict(old).augment is False and config_from_dict(old).keep_sides is False
    assert make_config("deciwatch").augment is True


def test_the_loss_keeps_the_estimators_sides_frame_by_frame():
    from core.temporal.models.deciwatch import estimator_sides
    g = torch.Generator().manual_seed(5)
    gt = torch.rand(2, T, K, 2, generator=g) * 2 - 1
    visible = torch.ones(2, T, K, dtype=torch.bool)
    points = gt + 0.01 * torch.randn(2, T, K, 2, generator=g)
    points[0, 2] = gt[0, 2][FLIP]                                  # the estimator swapped frame 2 of window 0
    points[1, 4, 5] = float("nan")                                 # and missed a joint elsewhere
    target, vis = estimator_sides(points, gt, visible, FLIP)
    torch.testing.assert_close(target[0, 2], gt[0, 2][FLIP])       # that frame's target is swapped too
    keep = torch.ones(2, T, dtype=torch.bool)
    keep[0, 2] = False
    torch.testing.assert_close(target[keep], gt[keep])             # every other frame keeps the truth
    assert torch.equal(vis, visible)


def test_deciwatch_loss_does_not_punish_the_estimators_sides():
    gt = torch.rand(4, T, K, 2, generator=torch.Generator().manual_seed(6)) * (S - 1)
    swapped = gt[:, :, FLIP]                                       # the estimator swapped every frame
    batch = {"heatmaps": gaussian_heatmaps(swapped, (S, S)), "keypoints": gt,
             "visible": torch.ones(4, T, K, dtype=torch.bool)}

    def loss(**kw):
        m = build_temporal(make_config("deciwatch", augment=False, **SMALL, **kw)).eval()   # the identity
        terms, _ = deciwatch_loss(m, m, batch)
        return sum(w * t / c for w, t, c in terms)
    assert loss() < 0.05 < loss(keep_sides=False)
