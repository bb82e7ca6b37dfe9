"""Viewshed: hand-checked shadow of a wall on a flat plain; earth curvature horizon; field of view."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from analysis.raster.rules import ViewshedRules
from analysis.raster.viewshed import EARTH_RADIUS, camera_coverage, viewshed
from layers.raster import ArrayRaster

CELL = 10.0
TR = Affine(CELL, 0, 0.0, 0, -CELL, 1000.0)  # 100 × 100 cells, x 0…1000, y 0…1000


def wall_plain():
    """Flat ground at 0 m; a wall 10 m high in column 30 (x 300–310 m), rows 45–55. Observer: cell (50, 20),
    25 m above the ground, i.e. at (205, 495) — 100 m west of the wall's centre line."""
    z = np.zeros((100, 100))
    z[45:56, 30] = 10.0
    return z


@pytest.mark.parametrize("algorithm", ["r3", "r2"])
def test_wall_casts_the_hand_computed_shadow(algorithm):
    vs = viewshed(wall_plain(), TR, 205.0, 495.0, 25.0, 600.0, algorithm=algorithm)
    # Along the observer's row the sight line to a cell d metres east passes the wall (at 100 m) at height
    # 25 − 25·100/d; it clears the 10 m wall when 25·(1 − 100/d) ≥ 10, i.e. d ≥ 166.67 m.
    # Cells 110 … 160 m east are hidden, 170 m and beyond are seen; the wall itself is seen.
    row = vs.visible[50]
    assert np.nonzero(vs.in_view[50] & ~row)[0].tolist() == [31, 32, 33, 34, 35, 36]
    assert not vs.in_view[50, 81:].any()  # beyond 600 m: out of range
    # Off the axis: a cell (dr, dc) whose line crosses the wall's column between two wall rows (both 10 m)
    # meets exactly 10 m there, so it is hidden iff its distance along x is below 166.67 m — whatever dr.
    for dr in range(-4, 5):
        for dc in range(11, 40):
            cross = dr * 10.0 / dc  # rows off the axis where the line crosses column 30
            if abs(cross) <= 4.0 and abs(dr) <= dc:  # between wall rows 46 … 54, x-major line
                hidden = dc * 10.0 < 100.0 * 25.0 / 15.0
                assert vs.visible[50 + dr, 20 + dc] == (not hidden), (dr, dc)
    # Outside the wall's angular shadow everything within range is seen (flat ground).
    seen_or_out = vs.visible | ~vs.in_view
    assert seen_or_out[20:40, :].all() and seen_or_out[60:80, :].all() and seen_or_out[:, :29].all()
    assert vs.in_view.sum() == np.count_nonzero(
        np.hypot(*(np.mgrid[0:100, 0:100] - np.array([50, 20])[:, None, None])) * CELL <= 600.0)


@pytest.mark.parametrize("algorithm", ["r3", "r2"])
def test_lower_observer_sees_a_longer_shadow_and_a_higher_one_none(algorithm):
    # shadow to 100·12/2 = 600 m → col 80
    low = viewshed(wall_plain(), TR, 205.0, 495.0, 12.0, 800.0, algorithm=algorithm)
    hidden = np.nonzero(low.in_view[50] & ~low.visible[50])[0]
    assert hidden.min() == 31 and hidden.max() == 79
    # clears: 200(1 − 100/d) ≥ 10 ⇔ d ≥ 105.3 m
    high = viewshed(wall_plain(), TR, 205.0, 495.0, 200.0, 800.0, algorithm=algorithm)
    assert high.visible[50][high.in_view[50]].all()


@pytest.mark.parametrize("algorithm", ["r3", "r2"])
def test_earth_curvature_hides_ground_beyond_the_horizon(algorithm):
    z = np.zeros((3, 620))
    tr = Affine(10.0, 0, 0.0, 0, -10.0, 30.0)
    h, k = 2.0, 0.13
    horizon = math.sqrt(2 * EARTH_RADIUS * h / (1 - k))  # ≈ 5413 m for an eye 2 m above the ground
    vs = viewshed(z, tr, 5.0, 15.0, h, 6000.0, curvature=True, refraction=k, algorithm=algorithm)
    d = np.arange(620) * 10.0
    assert vs.visible[1][d < 0.98 * horizon].all()
    assert not vs.visible[1][(d > 1.02 * horizon) & (d <= 6000)].any()
    flat = viewshed(z, tr, 5.0, 15.0, h, 6000.0, curvature=False)
    assert flat.visible[1][d <= 6000].all()


def test_r2_agrees_with_r3_on_hilly_ground():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:161, 0:161]
    z = 30 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 20 * np.sin((xx + yy) / 23.0) + rng.normal(0, 1, xx.shape)
    tr = Affine(10.0, 0, 0.0, 0, -10.0, 1610.0)
    a = viewshed(z, tr, 805.0, 805.0, 30.0, 800.0, algorithm="r3")
    b = viewshed(z, tr, 805.0, 805.0, 30.0, 800.0, algorithm="r2")
    assert np.array_equal(a.in_view, b.in_view)
    agree = (a.visible == b.visible)[a.in_view].mean()
    assert agree > 0.97, agree
    assert 0.2 < a.visible[a.in_view].mean() < 0.9  # a real mix of seen and hidden ground


def test_field_of_view_limits_the_sector():
    z = np.zeros((41, 41))
    tr = Affine(10.0, 0, 0.0, 0, -10.0, 410.0)
    vs = viewshed(z, tr, 205.0, 205.0, 10.0, 200.0, azimuth=90.0, fov=90.0)  # looking east, ±45°
    assert vs.visible[20, 21:].all() and not vs.visible[20, :20].any()  # east seen, west not
    assert not vs.visible[0:10, 20].any()  # due north not in view
    assert vs.visible[15, 30] and not vs.visible[5, 22]  # 26.6° off the axis in, 82.9° out


def test_camera_coverage_measures_visible_cultivated_land():
    z = wall_plain()
    dem = ArrayRaster(z, TR, 4547)
    cams = gpd.GeoDataFrame({"SXTBH": ["T1"], "GD": [25.0], "KSJL": [600.0]},
                            geometry=[shapely.Point(205.0, 495.0)], crs=4547)
    # field A lies wholly in the shadow (x 320–360 m, rows 48–52), field B in the open, field C out of range
    fa = shapely.box(320, 1000 - 530, 360, 1000 - 480)
    fb = shapely.box(100, 100, 200, 200)
    fc = shapely.box(900, 900, 1000, 1000)
    cult = gpd.GeoDataFrame({"net_area_m2": [2000.0, 10000.0, 10000.0]}, geometry=[fa, fb, fc], crs=4547)
    rules = ViewshedRules(earth_curvature=False)
    res = camera_coverage(dem, cams, cult, np.array(["130599100", "130599100", "130599101"]), rules, block=32)
    assert res.patches["visible_share"].tolist() == pytest.approx([0.0, 1.0, 0.0])
    by = res.by_township.set_index("XZQDM")
    assert by.loc["130599100", "visible_m2"] == pytest.approx(10000.0)
    assert by.loc["130599100", "visible_share"] == pytest.approx(10000.0 / 12000.0)
    assert by.loc["130599101", "visible_share"] == 0.0
    cam = res.by_camera.iloc[0]
    assert cam["ground"] == 0.0 and cam["eye"] == 25.0 and cam["visible_cultivated_m2"] == pytest.approx(10000.0)
