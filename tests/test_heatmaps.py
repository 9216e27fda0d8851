"""core.heatmaps: preprocessing, Gaussian targets, box mapping, sub-pixel decoding."""
import numpy as np
import pytest
import torch

from core.heatmaps import (
    HEATMAP_SUM,
    bbox_norm,
    clamp_to_heatmap,
    decode_heatmaps,
    default_sigma,
    gaussian_heatmaps,
    heatmap_to_image,
    image_to_heatmap,
    normalize_heatmaps,
)


def test_normalize_hand_checked():
    hm = np.array([[[[-1.0, 1.0], [3.0, 0.0]],      # negatives -> 0, then 1:3 of 255
                    [[-2.0, -5.0], [-0.1, -3.0]],    # all negative -> all zero
                    [[0.0, 0.0], [0.0, 0.0]]]],      # zero stays zero, no NaN
                  dtype=np.float32)
    out = normalize_heatmaps(hm)
    np.testing.assert_allclose(out[0, 0], [[0.0, 63.75], [191.25, 0.0]])
    assert (out[0, 1] == 0).all() and (out[0, 2] == 0).all()
    assert np.isfinite(out).all()
    # torch path agrees, and float16 inputs are summed without overflow
    big = np.full((1, 1, 64, 64), 60000.0, dtype=np.float16)
    t = normalize_heatmaps(torch.from_numpy(big))
    assert t.dtype == torch.float32
    assert t.sum().item() == pytest.approx(HEATMAP_SUM, rel=1e-5)
    np.testing.assert_allclose(normalize_heatmaps(torch.from_numpy(hm)).numpy(), out, rtol=1e-6)


def test_box_mapping_round_trip_and_edges():
    box = np.array([[100.0, 50.0, 164.0, 178.0]])      # 64 x 128 px box -> 32 x 32 map
    pts = np.array([[[100.0, 50.0], [164.0, 178.0], [132.0, 114.0]]])
    uv = image_to_heatmap(pts, box, (32, 32))
    np.testing.assert_allclose(uv[0], [[-0.5, -0.5], [31.5, 31.5], [15.5, 15.5]])
    np.testing.assert_allclose(heatmap_to_image(uv, box, (32, 32)), pts)
    np.testing.assert_allclose(clamp_to_heatmap(np.array([[-3.0, 40.0]]), (32, 32)), [[0.0, 31.0]])


def test_gaussian_target_placement_and_border():
    pts = torch.tensor([[[10.0, 20.0], [-7.0, 12.0], [30.0, 99.0]]])  # 2nd and 3rd outside
    vis = torch.tensor([[True, True, False]])
    maps = gaussian_heatmaps(pts, (32, 32), sigma=1.0, visible=vis)
    assert maps.shape == (1, 3, 32, 32)
    assert maps[0, 0].sum().item() == pytest.approx(255.0, rel=1e-5)
    assert maps[0, 1].sum().item() == pytest.approx(255.0, rel=1e-5)   # truncated, renormalised
    assert (maps[0, 2] == 0).all()                                     # invisible -> zero map
    y, x = divmod(int(maps[0, 0].argmax()), 32)
    assert (x, y) == (10, 20)
    y, x = divmod(int(maps[0, 1].argmax()), 32)
    assert (x, y) == (0, 12)  # outside the box -> nearest border
    # symmetric around the peak: one sigma left equals one sigma right
    assert maps[0, 0, 20, 9].item() == pytest.approx(maps[0, 0, 20, 11].item())
    assert default_sigma(64) == 2.0


@pytest.mark.parametrize("x,y", [(10.3, 20.7), (5.5, 5.5), (17.81, 3.12), (12.0, 9.0)])
def test_decode_subpixel_on_gaussian(x, y):
    maps = gaussian_heatmaps(torch.tensor([[[x, y]]]), (32, 32), sigma=1.5)
    pts, val = decode_heatmaps(maps)
    assert pts.shape == (1, 1, 2) and val.shape == (1, 1)
    np.testing.assert_allclose(pts[0, 0].numpy(), [x, y], atol=1e-3)
    # the quarter-offset rule gets within a quarter pixel, plain argmax within half
    q, _ = decode_heatmaps(maps, method="quarter")
    assert (q[0, 0] - torch.tensor([x, y])).abs().max() <= 0.26
    n, _ = decode_heatmaps(maps, method="none")
    assert (n[0, 0] - torch.tensor([x, y])).abs().max() <= 0.5


def test_decode_batched_zero_edge_and_negative():
    maps = torch.zeros(2, 3, 2, 16, 16)           # (B, T, K, H, W)
    maps[0, 1, 0, 4, 0] = 5.0                      # peak on the left edge: no offset there
    maps[0, 1, 0, 4, 1] = 2.0
    maps[1, 2, 1] = -1.0                           # raw output, all negative ...
    maps[1, 2, 1, 7, 9] = 0.5                      # ... except one pixel
    pts, val = decode_heatmaps(maps)
    assert pts.shape == (2, 3, 2, 2) and val.shape == (2, 3, 2)
    np.testing.assert_allclose(pts[0, 1, 0].numpy(), [0.0, 4.0])
    np.testing.assert_allclose(pts[1, 2, 1].numpy(), [9.0, 7.0])
    assert val[0, 0, 0] == 0 and torch.isnan(pts[0, 0, 0]).all()   # an empty map is a missing keypoint
    found = torch.zeros(2, 3, 2, dtype=torch.bool)
    found[0, 1, 0] = found[1, 2, 1] = True
    assert torch.isfinite(pts[found]).all() and torch.isnan(pts[~found]).all()
    with pytest.raises(ValueError):
        decode_heatmaps(maps, method="soft")


def test_bbox_norm_numpy_and_torch():
    pts = np.array([[[0.0, 0.0], [4.0, 1.0], [100.0, 100.0]], [[1.0, 1.0], [2.0, 2.0], [3.0, 9.0]]])
    vis = np.array([[True, True, False], [False, False, False]])
    np.testing.assert_allclose(bbox_norm(pts, vis), [4.0, 0.0])
    np.testing.assert_allclose(bbox_norm(torch.from_numpy(pts), torch.from_numpy(vis)).numpy(), [4.0, 0.0])
