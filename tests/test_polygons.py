"""COCO polygons <-> masks (core.polygons): exact on shapes whose outline is known."""
from __future__ import annotations

import numpy as np

from core.polygons import mask_to_polygons, polygons_to_mask


def _round_trip(mask: np.ndarray, **kw) -> tuple[list, np.ndarray]:
    polys = mask_to_polygons(mask, **kw)
    return polys, polygons_to_mask(polys, mask.shape)


def test_a_rectangle_is_four_corners_and_comes_back_exactly():
    m = np.zeros((12, 16), bool)
    m[3:9, 4:13] = True                       # rows 3..8, columns 4..12
    polys, back = _round_trip(m)
    assert len(polys) == 1
    xy = np.array(polys[0]).reshape(-1, 2)
    # the outline runs half-way between person and background pixel centres, i.e. on
    # the pixel edges x = 4 and 13, y = 3 and 9, with its corners cut by half a pixel
    assert xy[:, 0].min() == 4 and xy[:, 0].max() == 13 and xy[:, 1].min() == 3 and xy[:, 1].max() == 9
    assert len(xy) <= 8
    assert (back == m).all()


def test_an_l_shape_keeps_its_concave_corner():
    m = np.zeros((20, 20), bool)
    m[2:18, 3:8] = True
    m[12:18, 3:16] = True
    polys, back = _round_trip(m)
    assert len(polys) == 1 and (back == m).all()
    hull_area = 15 * 13                        # what a convex hull would have claimed, about
    assert back.sum() == m.sum() < 0.7 * hull_area


def test_parts_are_separate_rings_largest_first_and_holes_are_filled():
    m = np.zeros((30, 30), bool)
    m[2:6, 2:6] = True                         # small square
    m[10:28, 10:28] = True                     # large square with a hole
    m[15:20, 15:20] = False
    polys, back = _round_trip(m)
    assert len(polys) == 2
    assert np.array(polys[0]).reshape(-1, 2)[:, 0].min() == 10          # the large one first
    filled = m.copy()
    filled[15:20, 15:20] = True
    assert (back == filled).all()


def test_pixels_touching_only_at_corners_come_back_as_their_own_rings():
    m = np.zeros((6, 6), bool)
    m[1, 1] = m[2, 2] = m[3, 3] = True
    polys, back = _round_trip(m)
    assert len(polys) == 3 and (back == m).all()


def test_a_circle_after_simplification_stays_within_its_band():
    yy, xx = np.mgrid[0:64, 0:64]
    m = (xx + 0.5 - 30.2) ** 2 + (yy + 0.5 - 33.7) ** 2 < 20.0 ** 2
    polys, back = _round_trip(m)
    assert len(np.array(polys[0])) // 2 < 80          # far fewer vertices than boundary pixels
    assert (back != m).sum() <= 0.03 * m.sum()


def test_empty_and_degenerate_inputs():
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    assert not polygons_to_mask([], (4, 4)).any()
    assert not polygons_to_mask([[1.0, 1.0, 3.0, 3.0]], (4, 4)).any()        # two points: no area


def test_polygons_map_into_a_resized_crop():
    # the square (20..30) x (30..40) seen through a crop at (10, 20), 40 px shown at 20 px
    mask = polygons_to_mask([[20, 30, 30, 30, 30, 40, 20, 40]], (20, 20), scale=0.5, origin=(10, 20))
    assert mask.sum() == 25 and mask[5:10, 5:10].all()
